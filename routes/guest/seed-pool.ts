/**
 * Random bytes for OpenStack's random_seed without a syscall per request: a 64 KiB pool from
 * the CSPRNG, handed out once each (zeroed as taken) and refilled when used up.
 */
import { randomFillSync } from 'node:crypto';

export class SeedPool {
  private readonly pool: Buffer;
  private offset: number;
  constructor(size = 64 * 1024) {
    this.pool = Buffer.alloc(size);
    this.offset = size;
  }

  /** `n` fresh random bytes as base64; no byte is ever handed out twice. */
  takeBase64(n: number): string {
    if (n > this.pool.length) throw new RangeError('request larger than the pool');
    if (this.offset + n > this.pool.length) {
      randomFillSync(this.pool);
      this.offset = 0;
    }
    const out = this.pool.toString('base64', this.offset, this.offset + n);
    this.pool.fill(0, this.offset, this.offset + n);
    this.offset += n;
    return out;
  }
}
