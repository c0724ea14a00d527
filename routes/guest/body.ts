/** Guest request bodies: capped, and a body over the cap is refused whole (null = too large). */
import getRawBody from 'raw-body';
import type { IncomingMessage } from 'node:http';

export async function readGuestBody(req: IncomingMessage, limit: number): Promise<Buffer | null> {
  try {
    return await getRawBody(req, { limit, length: req.headers['content-length'] });
  } catch (err) {
    if ((err as { type?: string }).type === 'entity.too.large') return null;
    throw err;
  }
}
