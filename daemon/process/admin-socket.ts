/**
 * The admin door's unix socket: created with its final mode from the first instant, never
 * stealing a live daemon's socket (daemon/unix-socket.ts says how). Process edge
 * (daemon/process/main.ts calls it); no HTTP here.
 */
import type http from 'node:http';
import { listenUnixSocket } from '../unix-socket.js';

/** Listen on `path` with file mode `mode` (e.g. 0o660) from the moment the socket exists. */
export function listenAdminSocket(server: http.Server, path: string, mode: number): Promise<void> {
  return listenUnixSocket(server, path, mode);
}
