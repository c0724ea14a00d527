/**
 * Guest sockets never outlive their timeouts, whatever the client does (never reads, never
 * closes). node:http's own timeouts cover requests that arrive too slowly and idle keep-alive
 * connections; the guard covers the two ways a client that stops reading kept a socket (its fd,
 * its per-source slot and a `maxConnections` slot) forever:
 *  - the door is done writing (a 400 after a header/request timeout, `Connection: close`) and
 *    has half-closed, but the client never closes its side: destroyed `graceMs` later;
 *  - output is queued and none of it leaves (the client does not read its answers) for
 *    `stallMs`: destroyed. A long-poll waiting for pipe data queues nothing and is left alone.
 * Bookkeeping only: `check(now)` is driven by an interval in production and by a test directly.
 */

/** The parts of a net.Socket the guard looks at. */
export interface GuardedSocket {
  readonly writableEnded: boolean;
  readonly writableLength: number;
  readonly bytesWritten: number;
  readonly destroyed: boolean;
  destroy(): void;
}

interface Watch {
  /** When the door was first seen done writing (half-closed), or undefined. */
  endedAt: number | undefined;
  /** bytesWritten at the last check, and since when output has been stuck there. */
  written: number;
  stalledSince: number | undefined;
}

export class SocketGuard<S extends GuardedSocket = GuardedSocket> {
  private readonly watched = new Map<S, Watch>();
  constructor(
    private readonly graceMs: number,
    private stallMs: number,
  ) {}

  /** A new stall limit (configuration reload). */
  setStallMs(ms: number): void {
    this.stallMs = ms;
  }

  get size(): number {
    return this.watched.size;
  }

  add(sock: S): void {
    this.watched.set(sock, { endedAt: undefined, written: sock.bytesWritten, stalledSince: undefined });
  }

  /** The socket closed: forget it. */
  remove(sock: S): void {
    this.watched.delete(sock);
  }

  /** Destroy every socket past its grace or stalled too long; returns how many. */
  check(now: number): number {
    let n = 0;
    for (const [sock, w] of this.watched) {
      if (sock.destroyed) {
        this.watched.delete(sock);
        continue;
      }
      if (this.overdue(sock, w, now)) {
        this.watched.delete(sock);
        sock.destroy();
        n++;
      }
    }
    return n;
  }

  private overdue(sock: S, w: Watch, now: number): boolean {
    if (sock.writableEnded) {
      w.endedAt ??= now;
      if (now - w.endedAt >= this.graceMs) return true;
    }
    if (sock.writableLength === 0 || sock.bytesWritten !== w.written) {
      w.written = sock.bytesWritten;
      w.stalledSince = undefined;
      return false;
    }
    w.stalledSince ??= now;
    return now - w.stalledSince >= this.stallMs;
  }
}
