/**
 * Listening on a unix socket path (the admin door, the Ganeti feed): the socket has its final
 * mode from the first instant and a live daemon's socket is never stolen. Only node here.
 *
 * Why the umask: bind(2) creates the socket file with 0777 & ~umask, and a chmod after listen
 * leaves a window in which, under a loose umask, any local user can connect (and keep that
 * connection). So the umask is set to exactly the complement of the wanted mode around
 * `server.listen`, which binds synchronously on a unix path (no cluster): the umask is restored
 * before any other code of this process runs, and the file never exists with another mode. With
 * a group to give the socket, it is bound owner-only, given the group, then given its mode: no
 * member of the process's own group can connect in between.
 */
import net from 'node:net';
import { chmod, chown, lstat, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { mkdirs } from './mkdirs.js';

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

/**
 * Listen on `path` with file mode `mode` (e.g. 0o660) from the moment the socket exists, and
 * group `gid` when given. The directory is created (0750) when missing.
 */
export async function listenUnixSocket(server: net.Server, path: string, mode: number, gid?: number): Promise<void> {
  await mkdirs(dirname(path), 0o750);
  await clearStaleSocket(path);
  const first = gid === undefined ? mode : mode & 0o700;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    const done = (): void => {
      server.off('error', reject);
      resolve();
    };
    const old = process.umask(0o777 & ~first);
    try {
      server.listen({ path, backlog: 4096 }, done);
    } finally {
      process.umask(old);
    }
  });
  try {
    if (gid !== undefined) await chown(path, -1, gid);
    // Already the mode without a group; kept so the file's mode never depends on the umask trick alone.
    await chmod(path, mode);
  } catch (err) {
    server.close();
    await unlink(path).catch(() => undefined);
    throw err;
  }
}
