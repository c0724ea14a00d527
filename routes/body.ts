/**
 * Request bodies on both doors: raw-body enforces the byte cap before anything is kept, so a
 * body over the cap is refused whole (413), and a client that hangs up mid-body (or lies about
 * its length) is a 400, not a bug. Each door turns the DaemonError into its own error shape.
 */
import getRawBody from 'raw-body';
import type { IncomingMessage } from 'node:http';
import { DaemonError, invalid } from '../daemon/errors.js';

export async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  try {
    return await getRawBody(req, { limit, length: req.headers['content-length'] });
  } catch (err) {
    const type = (err as { type?: string }).type;
    if (type === 'entity.too.large') throw new DaemonError('PayloadTooLarge', `body larger than ${limit} bytes`);
    if (type === 'request.size.invalid' || type === 'request.aborted') throw invalid('body shorter than its Content-Length');
    throw err;
  }
}
