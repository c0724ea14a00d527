/**
 * Secret OS parameters: in memory only, never on disk, never logged, never read back.
 * Each value expires (default 120 min: no shorter than the default install deadline), may be
 * claim-once (the first guest read consumes it and records the claim time: the provisioner's
 * "it is alive" signal), and is wiped (buffer zeroed, reference dropped) when it is replaced or
 * removed, when its instance is removed, when its install job ends, and at shutdown. The guest
 * door serves them only while an install job of the instance is live (daemon/jobs/manager.ts,
 * `secretsOpen`); the vault itself does not know about jobs.
 */
import type { Clock } from '../clock.js';

interface Entry {
  value: Buffer | null;
  setAt: number;
  expiresAt: number;
  claimOnce: boolean;
  claimedAt: number | null;
}

/** The secret parameters that authenticate the personalization package's fetch (daemon/jobs/package.ts): metad's own, never served to a guest. */
export const PACKAGE_CREDENTIALS = { username: 'package-username', password: 'package-password' } as const;
export const PACKAGE_CREDENTIAL_NAMES: ReadonlySet<string> = new Set(Object.values(PACKAGE_CREDENTIALS));

export interface SecretOptions {
  ttlSec?: number;
  claimOnce?: boolean;
}

export interface SecretInfo {
  name: string;
  state: 'live' | 'claimed' | 'expired';
  expiresAt: string;
  claimOnce: boolean;
  claimedAt: string | null;
}

export class SecretVault {
  private readonly byInstance = new Map<string, Map<string, Entry>>();
  constructor(
    private readonly clock: Clock,
    private readonly defaultTtlSec: number,
  ) {}

  private entry(value: string, opts: SecretOptions): Entry {
    const now = this.clock.now();
    return {
      value: Buffer.from(value, 'utf8'),
      setAt: now,
      expiresAt: now + (opts.ttlSec ?? this.defaultTtlSec) * 1000,
      claimOnce: opts.claimOnce ?? false,
      claimedAt: null,
    };
  }

  /** Replace every secret of an instance. */
  replace(instance: string, values: Record<string, string>, opts: SecretOptions = {}): void {
    this.wipe(instance);
    this.merge(instance, values, opts);
  }

  /** Merge values; `null` removes (and wipes) one secret. */
  merge(instance: string, values: Record<string, string | null>, opts: SecretOptions = {}): void {
    let m = this.byInstance.get(instance);
    if (!m) this.byInstance.set(instance, (m = new Map<string, Entry>()));
    for (const [k, v] of Object.entries(values)) {
      zero(m.get(k));
      if (v === null) m.delete(k);
      else m.set(k, this.entry(v, opts));
    }
    if (m.size === 0) this.byInstance.delete(instance);
  }

  /** Remove one secret; false when it did not exist. */
  remove(instance: string, name: string): boolean {
    const m = this.byInstance.get(instance);
    const e = m?.get(name);
    if (!m || !e) return false;
    zero(e);
    m.delete(name);
    if (m.size === 0) this.byInstance.delete(instance);
    return true;
  }

  /** Zero and forget every secret of an instance (instance removal, replacement of all its secrets). */
  wipe(instance: string): number {
    const m = this.byInstance.get(instance);
    if (!m) return 0;
    for (const e of m.values()) zero(e);
    this.byInstance.delete(instance);
    return m.size;
  }

  /** Zero and forget every secret of every instance (shutdown). */
  wipeAll(): number {
    let n = 0;
    for (const name of [...this.byInstance.keys()]) n += this.wipe(name);
    return n;
  }

  /** Names and state, for admin read-back. Never values. */
  /** How many values are held (any state: live, claimed or expired but not yet swept). */
  get held(): number {
    let n = 0;
    for (const m of this.byInstance.values()) n += m.size;
    return n;
  }

  info(instance: string): SecretInfo[] {
    const now = this.clock.now();
    const out: SecretInfo[] = [];
    for (const [name, e] of this.byInstance.get(instance) ?? []) {
      // A wiped secret (removal, replacement) is forgotten, so it never shows here.
      const state = e.claimedAt !== null ? 'claimed' : e.expiresAt <= now ? 'expired' : 'live';
      out.push({
        name,
        state,
        expiresAt: new Date(e.expiresAt).toISOString(),
        claimOnce: e.claimOnce,
        claimedAt: e.claimedAt === null ? null : new Date(e.claimedAt).toISOString(),
      });
    }
    return out.sort((a, b) => a.name.localeCompare(b.name));
  }

  /**
   * The values a guest may see now: live ones only. With `consume`, claim-once values are
   * handed out this one time and wiped, and their claim time is recorded. `withhold`: names
   * neither returned nor consumed (values metad itself uses, never a guest).
   */
  liveValues(instance: string, consume: boolean, withhold?: ReadonlySet<string>): Record<string, string> {
    const now = this.clock.now();
    const out: Record<string, string> = {};
    for (const [name, e] of this.byInstance.get(instance) ?? []) {
      if (e.value === null || e.claimedAt !== null || withhold?.has(name)) continue;
      if (e.expiresAt <= now) {
        zero(e);
        continue;
      }
      out[name] = e.value.toString('utf8');
      if (consume && e.claimOnce) {
        e.claimedAt = now;
        zero(e);
      }
    }
    return out;
  }

  /** Wipe expired values everywhere; returns how many were wiped. Called on a timer. */
  sweep(): number {
    const now = this.clock.now();
    let n = 0;
    for (const m of this.byInstance.values()) {
      for (const e of m.values()) {
        if (e.value !== null && e.expiresAt <= now) {
          zero(e);
          n++;
        }
      }
    }
    return n;
  }
}

function zero(e: Entry | undefined): void {
  if (e?.value) {
    e.value.fill(0);
    e.value = null;
  }
}
