/** A pino destination that keeps every line in memory so tests can read (and search) the log. */
import { Writable } from 'node:stream';
import { createLogger } from '../../daemon/log/logger.js';

export class LogSink extends Writable {
  readonly lines: string[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    for (const l of chunk.toString('utf8').split('\n')) if (l) this.lines.push(l);
    cb();
  }
  get text(): string {
    return this.lines.join('\n');
  }
  records(): Record<string, unknown>[] {
    return this.lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  }
}

export function sinkLogger(level = 'debug') {
  const sink = new LogSink();
  return { sink, log: createLogger({ level, destination: sink }) };
}
