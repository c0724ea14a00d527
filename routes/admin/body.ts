/**
 * Request body reading for the admin door: raw-body enforces the byte cap (413) before
 * anything is parsed; JSON parse failures are 400 without echoing the body.
 */
import getRawBody from 'raw-body';
import type { Context } from 'koa';
import { DaemonError, invalid } from '../errors.js';

export async function readRaw(ctx: Context, limit: number): Promise<Buffer> {
  try {
    return await getRawBody(ctx.req, { limit, length: ctx.get('content-length') || undefined });
  } catch (err) {
    const type = (err as { type?: string }).type;
    if (type === 'entity.too.large') throw new DaemonError('PayloadTooLarge', `body larger than ${limit} bytes`);
    if (type === 'request.size.invalid' || type === 'request.aborted') throw invalid('body shorter than its Content-Length');
    throw err;
  }
}

/** Read a JSON body (application/json or application/merge-patch+json). */
export async function readJson(ctx: Context, limit: number): Promise<unknown> {
  const type = ctx.request.type;
  if (type !== 'application/json' && type !== 'application/merge-patch+json') {
    throw new DaemonError('UnsupportedMediaType', 'send JSON (Content-Type: application/json)');
  }
  const raw = await readRaw(ctx, limit);
  try {
    return JSON.parse(raw.toString('utf8'));
  } catch {
    throw invalid('malformed JSON body');
  }
}
