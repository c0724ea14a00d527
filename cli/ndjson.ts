/**
 * A streamed NDJSON answer from the admin socket (GET .../install/watch): each complete line is
 * parsed and handed over as it arrives; resolves when the daemon ends the stream.
 */
import http from 'node:http';
import { CliError, EXIT } from './errors.js';

export function streamNdjson(
  socketPath: string,
  path: string,
  onValue: (v: unknown) => void,
  opts: { userAgent: string; signal?: AbortSignal },
): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request({
      socketPath,
      method: 'GET',
      path,
      headers: { accept: 'application/x-ndjson', 'user-agent': opts.userAgent },
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    req.on('error', (e: NodeJS.ErrnoException) => {
      reject(opts.signal?.aborted ? e : new CliError(`request to ${socketPath} failed: ${e.code ?? 'connection error'}`, EXIT.API));
    });
    req.on('response', (res) => {
      let tail = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        const parts = (tail + chunk).split('\n');
        tail = parts.pop() ?? '';
        for (const p of parts) {
          if (p.trim() === '') continue;
          try {
            onValue(JSON.parse(p));
          } catch (e) {
            req.destroy(e instanceof Error ? e : new Error('bad line'));
          }
        }
      });
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.end();
  });
}
