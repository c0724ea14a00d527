/** Guest request bodies: capped, and a body over the cap is refused whole (null = too large). */
import getRawBody from 'raw-body';
import { invalid } from '../errors.js';
import type { IncomingMessage } from 'node:http';

export async function readGuestBody(req: IncomingMessage, limit: number): Promise<Buffer | null> {
  try {
    return await getRawBody(req, { limit, length: req.headers['content-length'] });
  } catch (err) {
    const type = (err as { type?: string }).type;
    if (type === 'entity.too.large') return null;
    // A client that hangs up mid-body (or lies about its length) is a bad request, not a bug.
    if (type === 'request.aborted' || type === 'request.size.invalid') throw invalid('incomplete request body');
    throw err;
  }
}
