/**
 * The host<->guest pipe: per instance two bounded byte queues, `toGuest` (host writes, guest
 * GET .../read consumes) and `toHost` (guest POST .../write appends, admin reads consume).
 * A write that does not fit is refused whole (nothing partial stored). Readers may wait for
 * data with a timeout driven by the injected clock. Taps observe guest writes without consuming.
 */
import type { Clock } from '../clock.js';
import { DaemonError } from '../errors.js';

/** Longest a pipe reader may wait for data, on either door. */
const MAX_WAIT_SEC = 60;

/**
 * `?wait=SECONDS` -> milliseconds: absent -> 0 (do not wait); not a number in 0..60 -> undefined.
 * '2.5' -> 2500, '' -> undefined, '61' -> undefined.
 */
export function parseWaitMs(q: unknown): number | undefined {
  if (q === undefined) return 0;
  const n = Number(q);
  if (typeof q !== 'string' || q === '' || !Number.isFinite(n) || n < 0 || n > MAX_WAIT_SEC) return undefined;
  return Math.round(n * 1000);
}

class ByteQueue {
  private chunks: Buffer[] = [];
  private bytes = 0;
  private waiters = new Set<() => void>();
  constructor(
    private readonly maxBytes: number,
    /** Sees every chunk stored (a copy of its bytes); consumes nothing. */
    private readonly observe?: (data: Buffer) => void,
  ) {}

  get size(): number {
    return this.bytes;
  }

  /** Append all of `data` or nothing (413 PayloadTooLarge). */
  push(data: Buffer): void {
    if (this.bytes + data.length > this.maxBytes) {
      throw new DaemonError('PayloadTooLarge', `pipe buffer full: ${this.maxBytes - this.bytes} of ${this.maxBytes} bytes free`);
    }
    if (data.length === 0) return;
    this.chunks.push(Buffer.from(data));
    this.bytes += data.length;
    this.observe?.(Buffer.from(data));
    for (const w of this.waiters) w();
    this.waiters.clear();
  }

  /** Take everything queued (consuming). */
  take(): Buffer {
    const out = Buffer.concat(this.chunks, this.bytes);
    this.chunks = [];
    this.bytes = 0;
    return out;
  }

  /** Resolve when data is queued, when `ms` pass, or when `signal` aborts. */
  async waitForData(ms: number, clock: Clock, signal?: AbortSignal): Promise<void> {
    if (this.bytes > 0 || ms <= 0) return;
    const ac = new AbortController();
    const onAbort = (): void => ac.abort();
    signal?.addEventListener('abort', onAbort, { once: true });
    const wake = (): void => ac.abort();
    this.waiters.add(wake);
    try {
      await clock.sleep(ms, ac.signal).catch(() => undefined);
    } finally {
      this.waiters.delete(wake);
      signal?.removeEventListener('abort', onAbort);
    }
  }

  /** Drop the contents and wake any waiter. */
  clear(): void {
    this.chunks = [];
    this.bytes = 0;
    for (const w of this.waiters) w();
    this.waiters.clear();
  }
}

export interface Pipe {
  toGuest: ByteQueue;
  toHost: ByteQueue;
}

export type PipeTap = (instance: string, data: Buffer) => void;

export class PipeRegistry {
  private readonly pipes = new Map<string, Pipe>();
  private readonly taps = new Set<PipeTap>();
  constructor(private readonly maxBytes: number) {}

  get(instance: string): Pipe {
    let p = this.pipes.get(instance);
    if (!p) {
      const observe = (data: Buffer): void => {
        for (const t of this.taps) t(instance, data);
      };
      this.pipes.set(instance, (p = { toGuest: new ByteQueue(this.maxBytes), toHost: new ByteQueue(this.maxBytes, observe) }));
    }
    return p;
  }

  /**
   * Observe what guests write (toHost), e.g. the install agent's progress lines for the job
   * record: the tap gets a copy of every stored chunk and takes nothing from the pipe, so
   * scripts and `metadctl pipe read` still read every byte. Returns the unsubscribe.
   */
  tap(fn: PipeTap): () => void {
    this.taps.add(fn);
    return () => this.taps.delete(fn);
  }

  sizes(instance: string): { toGuestBytes: number; toHostBytes: number } {
    const p = this.pipes.get(instance);
    return { toGuestBytes: p?.toGuest.size ?? 0, toHostBytes: p?.toHost.size ?? 0 };
  }

  /** Bytes queued in every pipe, each direction. */
  totals(): { toGuestBytes: number; toHostBytes: number } {
    let toGuestBytes = 0;
    let toHostBytes = 0;
    for (const p of this.pipes.values()) {
      toGuestBytes += p.toGuest.size;
      toHostBytes += p.toHost.size;
    }
    return { toGuestBytes, toHostBytes };
  }

  drop(instance: string): void {
    const p = this.pipes.get(instance);
    p?.toGuest.clear();
    p?.toHost.clear();
    this.pipes.delete(instance);
  }
}
