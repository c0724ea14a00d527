/** Closed-loop load generation for in-process clients (the admin socket, the durable write primitive). */
import { summarize, type Summary } from './stats.js';

export interface LoopStats {
  ops: number;
  errors: number;
  firstError?: string;
  elapsedMs: number;
  opsPerSec: number;
  /** Latency of successful ops, ms. */
  latency: Summary;
}

/**
 * Closed-loop load: `concurrency` workers each run `op(i)` back to back, `i` counting up from 0,
 * until `count` ops were started or `durationMs` passed. An op that throws counts as an error
 * (its latency is not kept); with `stopOnError`, the first error ends the loop and is rethrown.
 */
export async function closedLoop(
  opts: { concurrency: number; count?: number; durationMs?: number; stopOnError?: boolean },
  op: (i: number) => Promise<unknown>,
): Promise<LoopStats> {
  if (opts.count === undefined && opts.durationMs === undefined) throw new Error('closedLoop: give count or durationMs');
  const lat: number[] = [];
  let next = 0;
  let errors = 0;
  let firstError: Error | undefined;
  const t0 = performance.now();
  const deadline = opts.durationMs === undefined ? Infinity : t0 + opts.durationMs;
  const more = (): boolean =>
    (opts.count === undefined || next < opts.count) &&
    performance.now() < deadline &&
    !(opts.stopOnError === true && firstError !== undefined);
  const worker = async (): Promise<void> => {
    while (more()) {
      const i = next++;
      const s = performance.now();
      try {
        await op(i);
        lat.push(performance.now() - s);
      } catch (err) {
        errors++;
        firstError ??= err instanceof Error ? err : new Error(String(err));
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, opts.concurrency) }, worker));
  const elapsedMs = performance.now() - t0;
  if (opts.stopOnError === true && firstError !== undefined) throw firstError;
  return {
    ops: lat.length,
    errors,
    ...(firstError !== undefined ? { firstError: firstError.message } : {}),
    elapsedMs,
    opsPerSec: (lat.length / elapsedMs) * 1000,
    latency: summarize(lat),
  };
}
