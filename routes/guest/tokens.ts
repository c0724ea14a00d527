/**
 * IMDSv2 session tokens, stateless: token = base64url(expiry ms, 8 bytes | HMAC-SHA256 truncated
 * to 16 bytes over instance uuid + name + expiry). Bound to one instance and one expiry; the key
 * is random per daemon start, so a restart invalidates tokens and clients re-PUT on 401 (as
 * cloud-init and the AWS SDKs do). Tokens are never logged. The expiry is on the clock's
 * monotonic reading (`Clock.mono`): a token never outlives the process that issued it, and a
 * step of the wall clock neither expires live tokens nor revives expired ones.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

const MIN_TOKEN_TTL_SECONDS = 1;
const MAX_TOKEN_TTL_SECONDS = 21600;
export const TTL_HEADER = 'x-aws-ec2-metadata-token-ttl-seconds';
export const TOKEN_HEADER = 'x-aws-ec2-metadata-token';
const MAC_BYTES = 16;
const TOKEN_CHARS = Math.ceil(((8 + MAC_BYTES) * 4) / 3);

/** Parse the TTL header: an integer 1..21600, else undefined (the caller answers 400). */
export function parseTtl(value: string | string[] | undefined): number | undefined {
  if (typeof value !== 'string' || !/^\d{1,6}$/.test(value.trim())) return undefined;
  const n = Number(value.trim());
  return n >= MIN_TOKEN_TTL_SECONDS && n <= MAX_TOKEN_TTL_SECONDS ? n : undefined;
}

/** Instances whose last token is remembered; past it the memory starts over (a bound, not a policy). */
const MAX_REMEMBERED = 100_000;

export class TokenIssuer {
  /** Tokens issued since the start (the metrics read it). */
  issued = 0;
  /**
   * Per instance, the last token issued or verified and its expiry: cloud-init reuses one token
   * for a whole crawl, and the AWS SDK sends the token it has just been issued with its next GET,
   * so either verifies without a second HMAC.
   */
  private readonly recent = new Map<string, { token: string; expiresAt: number }>();
  constructor(private readonly key: Buffer = randomBytes(32)) {}

  private remember(instanceKey: string, token: string, expiresAt: number): void {
    if (this.recent.size >= MAX_REMEMBERED && !this.recent.has(instanceKey)) this.recent.clear();
    this.recent.set(instanceKey, { token, expiresAt });
  }

  /** Forget an instance's remembered token (it was removed; its tokens fail the HMAC anyway once its uuid or name differs). */
  forget(instanceKey: string): void {
    this.recent.delete(instanceKey);
  }

  private mac(instanceKey: string, expiry: Buffer): Buffer {
    return createHmac('sha256', this.key).update(instanceKey).update('\0').update(expiry).digest().subarray(0, MAC_BYTES);
  }

  /** `instanceKey` identifies the instance (uuid + name): a token is useless to any other. `nowMs`: monotonic. */
  issue(instanceKey: string, nowMs: number, ttlSec: number): string {
    const expiry = Buffer.alloc(8);
    const expiresAt = Math.floor(nowMs) + ttlSec * 1000;
    expiry.writeBigUInt64BE(BigInt(expiresAt));
    this.issued++;
    const token = Buffer.concat([expiry, this.mac(instanceKey, expiry)]).toString('base64url');
    this.remember(instanceKey, token, expiresAt);
    return token;
  }

  /** The token's expiry (ms) when it was issued for this instance and has not expired, else 0. */
  verify(instanceKey: string, token: string, nowMs: number): number {
    const last = this.recent.get(instanceKey);
    if (last !== undefined && last.token === token) return last.expiresAt > nowMs ? last.expiresAt : 0;
    // Exactly the canonical form: base64url of 24 bytes is 32 characters (node would otherwise
    // ignore a trailing partial character and accept a 33-character spelling of the same token).
    if (token.length !== TOKEN_CHARS) return 0;
    const raw = Buffer.from(token, 'base64url');
    if (raw.length !== 8 + MAC_BYTES) return 0;
    const expiry = raw.subarray(0, 8);
    const expiresAt = Number(expiry.readBigUInt64BE());
    if (expiresAt <= nowMs) return 0;
    if (!timingSafeEqual(raw.subarray(8), this.mac(instanceKey, expiry))) return 0;
    this.remember(instanceKey, token, expiresAt);
    return expiresAt;
  }
}
