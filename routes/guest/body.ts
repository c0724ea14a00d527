/** Guest request bodies: capped, and a body over the cap is refused whole (null = too large). */
import getRawBody from 'raw-body';
import type { Context } from 'koa';

export async function readGuestBody(ctx: Context, limit: number): Promise<Buffer | null> {
  try {
    return await getRawBody(ctx.req, { limit, length: ctx.get('content-length') || undefined });
  } catch (err) {
    if ((err as { type?: string }).type === 'entity.too.large') return null;
    throw err;
  }
}
