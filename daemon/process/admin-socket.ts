/**
 * The admin door's unix socket: created with its final mode from the first instant, never
 * stealing a live daemon's socket. Process edge (daemon/process/main.ts calls it); no HTTP here.
 *
 * Why the umask: bind(2) creates the socket file with 0777 & ~umask, and a chmod after listen
 * leaves a window in which, under a loose umask, any local user can connect (and keep that
 * connection). So the umask is set to exactly the complement of the wanted mode around
 * `server.listen`, which binds synchronously on a unix path (no cluster): the umask is restored
 * before any other code of this process runs, and the file never exists with another mode.
 */
import type http from 'node:http';
import net from 'node:net';
import { chmod, lstat, unlink } from 'node:fs/promises';
import { mkdirs } from '../mkdirs.js';
import { dirname } from 'node:path';

/** Remove a stale socket file left by a crashed daemon; refuse to steal a live one. */
async function clearStaleSocket(path: string): Promise<void> {
  try {
    const st = await lstat(path);
    if (!st.isSocket()) throw new Error(`${path} exists and is not a socket`);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  const alive = await new Promise<boolean>((resolve) => {
    const c = net.connect(path);
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
  if (alive) throw new Error(`another daemon is listening on ${path}`);
  await unlink(path);
}

/** Listen on `path` with file mode `mode` (e.g. 0o660) from the moment the socket exists. */
export async function listenAdminSocket(server: http.Server, path: string, mode: number): Promise<void> {
  await mkdirs(dirname(path), 0o750);
  await clearStaleSocket(path);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    const done = (): void => {
      server.off('error', reject);
      resolve();
    };
    const old = process.umask(0o777 & ~mode);
    try {
      server.listen({ path, backlog: 4096 }, done);
    } finally {
      process.umask(old);
    }
  });
  // Already the mode; kept so the file's mode never depends on the umask trick alone.
  await chmod(path, mode);
}
