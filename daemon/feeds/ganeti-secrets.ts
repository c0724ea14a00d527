/**
 * Secrets in Ganeti's flow (docs/ganeti.md, "When a secret parameter is served"): Ganeti, not
 * metad, boots the helper VM that installs an instance (lib/cmdlib/instance_create.py
 * `RunOsScriptsVirtualized`: UpdateMetadata with `osparams_secret`, then RunWithHelperVM), so no
 * metad install job opens the secrets gate. A push that carries secret parameters opens a
 * "Ganeti secret window" for that instance instead: its secret values are served (in
 * os/parameters.json, to the instance's comm address only: the guest door identifies the caller)
 * from the push until the first of
 *   - the claim: the first GET of os/parameters.json that carries them (`ganeti.secrets.claim:
 *     once`, the default; with `ttl` the claim is recorded and the values stay until another end),
 *   - the TTL (`ganeti.secrets.ttlSec`, on the injected clock),
 *   - the next push without them (or with other values),
 *   - the comm tap going down after it came up (the composition root forwards the comm
 *     controller's 'nic' events: tapUp/tapDown),
 *   - the instance's removal, and the daemon's stop (the values are memory only: the next start
 *     reports the window `lost`).
 * A push that repeats the very values of the window before it (Ganeti's `gnt-instance add`
 * pushes them again once the helper VM has stopped, before it boots the instance itself) opens
 * no new window: an open one goes on as it was, an ended one stays ended.
 *
 * Each window has a record, the job-like line `metadctl jobs` shows (kind `ganeti-secrets`):
 * state `served` while open, then `claimed`, or for secrets nobody claimed `expired` (TTL),
 * `stuck` (the tap went down: the helper VM ran and stopped without reading them; seed 003's
 * "declare it stuck"), `withdrawn` (a later push) or `lost` (metad restarted). It holds names and
 * times, never a value; it is written to <stateDir>/ganeti-secrets/<instance>.json so that a
 * restart can report what it lost. An unclaimed end is logged (`ganeti: secret parameters not
 * claimed`) and counted (metad_ganeti_secret_windows_total).
 */
import { createHmac, randomBytes } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import type { SecretsGate } from '../services.js';
import { EV } from '../log/events.js';
import { mkdirs } from '../mkdirs.js';
import { isInstanceName } from '../registry/model.js';
import { removeFileDurable, writeFileDurable } from '../registry/persist.js';
import type { SecretVault } from '../registry/vault.js';

type GanetiSecretsState = 'served' | 'claimed' | 'expired' | 'stuck' | 'withdrawn' | 'lost';
const STATES: readonly GanetiSecretsState[] = ['served', 'claimed', 'expired', 'stuck', 'withdrawn', 'lost'];
type Outcome = Exclude<GanetiSecretsState, 'served'>;

/** One window as `metadctl jobs` shows it: names and times only. */
export interface GanetiSecretsRecord {
  v: 1;
  kind: 'ganeti-secrets';
  instance: string;
  /** The instance's incarnation (uuid@createdAt) the secrets were pushed for. */
  incarnation: string;
  state: GanetiSecretsState;
  claim: 'once' | 'ttl';
  /** The names of the secret parameters (never their values). */
  secrets: string[];
  pushedAt: string;
  expiresAt: string;
  /** The instance's comm tap came up (nic up) after the push. */
  tapUpAt?: string;
  claimedAt?: string;
  endedAt?: string;
  /** Why it ended (metad's words). */
  reason?: string;
}

interface GanetiSecretsSettings {
  claim: 'once' | 'ttl';
  ttlSec: number;
}

export interface GanetiSecretsDeps {
  vault: SecretVault;
  clock: Clock;
  log: Logger;
  /** Where the records are kept (<stateDir>/ganeti-secrets). */
  dir: string;
  settings: GanetiSecretsSettings;
  /** The current incarnation of `instance` (undefined: not registered). */
  incarnation: (instance: string) => string | undefined;
}

interface Window {
  rec: GanetiSecretsRecord;
  /** Keyed digest of the names and values of the push that opened it (memory only; none after a restart). */
  digest: string | undefined;
  /** Monotonic deadline (the TTL). */
  deadline: number;
  /** Cancels the TTL's timer. */
  timer?: AbortController;
}

const REASONS = {
  expired: 'not claimed within ganeti.secrets.ttlSec',
  stuck: 'the comm tap went down without a claim (the helper VM stopped without reading them)',
  withdrawnNone: 'a push without secret parameters',
  withdrawnOther: 'a push with other secret parameters',
  lost: 'metad restarted: secret values are kept in memory only',
  tapDown: 'the comm tap went down',
  ttl: 'ganeti.secrets.ttlSec passed',
} as const;

export class GanetiSecretWindows implements SecretsGate {
  private readonly windows = new Map<string, Window>();
  /** Per process: a digest of secret values is worthless outside it. */
  private readonly key = randomBytes(32);
  private writes: Promise<void> = Promise.resolve();
  private readonly unsaved = new Map<string, GanetiSecretsRecord | null>();
  /** Windows ended since the start, by state (the metrics read it). */
  readonly ended: Record<Outcome | 'removed', number> = { claimed: 0, expired: 0, stuck: 0, withdrawn: 0, lost: 0, removed: 0 };

  constructor(private readonly d: GanetiSecretsDeps) {}

  /**
   * Loads the records of earlier runs: those of instances no longer registered (or registered
   * again since) are deleted; a window that was still open is reported `lost` (its values went
   * with the process).
   */
  async init(): Promise<void> {
    await mkdirs(this.d.dir, 0o700);
    for (const f of (await readdir(this.d.dir)).sort()) {
      if (!f.endsWith('.json')) continue;
      const r = await readFile(`${this.d.dir}/${f}`, 'utf8')
        .then((t) => JSON.parse(t) as unknown)
        .catch(() => undefined);
      if (!isRecord(r) || `${r.instance}.json` !== f || this.d.incarnation(r.instance) !== r.incarnation) {
        this.save(f.slice(0, -'.json'.length), null);
        continue;
      }
      const w: Window = { rec: r, digest: undefined, deadline: 0 };
      this.windows.set(r.instance, w);
      if (r.state === 'served') this.end(w, r.claimedAt === undefined ? 'lost' : 'claimed', REASONS.lost);
    }
    await this.idle();
  }

  private now(): string {
    return new Date(this.d.clock.now()).toISOString();
  }

  private digestOf(secret: Record<string, string>): string {
    const h = createHmac('sha256', this.key);
    for (const k of Object.keys(secret).sort()) h.update(JSON.stringify([k, secret[k]]));
    return h.digest('hex');
  }

  /**
   * A push of `instance` (incarnation `incarnation`) was stored, carrying `secret` (`{}`: none).
   * Called in the instance's write queue, right after the write.
   */
  pushed(instance: string, incarnation: string, secret: Record<string, string>): void {
    const w = this.windows.get(instance);
    const mine = w?.rec.incarnation === incarnation ? w : undefined;
    const names = Object.keys(secret).sort();
    if (names.length === 0) {
      if (mine?.rec.state === 'served') this.end(mine, mine.rec.claimedAt ? 'claimed' : 'withdrawn', REASONS.withdrawnNone);
      if (mine) mine.digest = undefined;
      this.d.vault.wipe(instance);
      return;
    }
    const digest = this.digestOf(secret);
    if (mine?.digest === digest) {
      // Ganeti pushes the same secrets again after the helper VM (gnt-instance add): no new window.
      if (mine.rec.state !== 'served') this.d.vault.wipe(instance);
      this.d.log.info({ instance, state: mine.rec.state, secrets: names.length }, EV.ganetiSecretsRepeated);
      return;
    }
    if (mine?.rec.state === 'served') this.end(mine, mine.rec.claimedAt ? 'claimed' : 'withdrawn', REASONS.withdrawnOther);
    if (w) w.timer?.abort();
    const { ttlSec, claim } = this.d.settings;
    this.d.vault.replace(instance, secret, { ttlSec, claimOnce: claim === 'once' });
    const now = this.d.clock.now();
    const next: Window = {
      rec: {
        v: 1,
        kind: 'ganeti-secrets',
        instance,
        incarnation,
        state: 'served',
        claim,
        secrets: names,
        pushedAt: new Date(now).toISOString(),
        expiresAt: new Date(now + ttlSec * 1000).toISOString(),
      },
      digest,
      deadline: this.d.clock.mono() + ttlSec * 1000,
      timer: new AbortController(),
    };
    this.windows.set(instance, next);
    this.save(instance, next.rec);
    this.d.clock.sleep(ttlSec * 1000, next.timer?.signal).then(
      () => this.expireIfDue(next),
      () => undefined,
    );
  }

  /** The window has reached its TTL: it ends (unless something else ended it first). */
  private expireIfDue(w: Window): boolean {
    if (w.rec.state !== 'served' || this.windows.get(w.rec.instance) !== w || this.d.clock.mono() < w.deadline) return false;
    this.end(w, w.rec.claimedAt ? 'claimed' : 'expired', w.rec.claimedAt ? REASONS.ttl : REASONS.expired);
    return true;
  }

  /** The open window of the instance as registered now (none when it ended, expired or belongs to an earlier incarnation). */
  private open(instance: string): Window | undefined {
    const w = this.windows.get(instance);
    if (w?.rec.state !== 'served' || w.rec.incarnation !== this.d.incarnation(instance)) return undefined;
    return this.expireIfDue(w) ? undefined : w;
  }

  /** The secrets gate: true while a Ganeti secret window of the instance is open. */
  secretsOpen(instance: string): boolean {
    return this.open(instance) !== undefined;
  }

  /**
   * A GET of os/parameters.json by the instance while its window is open: the claim, when it
   * carries secret values. With claim `once` the window ends here (the guest door hands the
   * claim-once values out this one time and wipes them right after this call).
   */
  noteClaim(instance: string): void {
    const w = this.open(instance);
    if (!w || w.rec.claimedAt !== undefined) return;
    if (!this.d.vault.info(instance).some((s) => s.state === 'live')) return;
    w.rec = { ...w.rec, claimedAt: this.now() };
    if (this.d.settings.claim === 'once') this.end(w, 'claimed', undefined, false);
    else {
      this.save(instance, w.rec);
      this.d.log.info({ instance, secrets: w.rec.secrets.length, claim: 'ttl' }, EV.ganetiSecretsClaimed);
    }
  }

  /** The instance's comm tap came up (nic up). */
  tapUp(instance: string): void {
    const w = this.open(instance);
    if (!w || w.rec.tapUpAt !== undefined) return;
    w.rec = { ...w.rec, tapUpAt: this.now() };
    this.save(instance, w.rec);
  }

  /** The instance's comm tap went down (nic down, or gone): ends a window whose tap came up since the push. */
  tapDown(instance: string): void {
    const w = this.open(instance);
    if (w?.rec.tapUpAt === undefined) return;
    this.end(w, w.rec.claimedAt ? 'claimed' : 'stuck', w.rec.claimedAt ? REASONS.tapDown : REASONS.stuck);
  }

  /** The instance was removed: its window and record go (an unclaimed window is reported first). */
  forget(instance: string): void {
    const w = this.windows.get(instance);
    if (!w) return;
    w.timer?.abort();
    if (w.rec.state === 'served' && w.rec.claimedAt === undefined) {
      this.ended.removed++;
      this.d.log.warn({ instance, secrets: w.rec.secrets.length, reason: 'instance removed' }, EV.ganetiSecretsUnclaimed);
    }
    this.windows.delete(instance);
    this.save(instance, null);
  }

  private end(w: Window, state: Outcome, reason: string | undefined, wipe = true): void {
    w.timer?.abort();
    const rec: GanetiSecretsRecord = { ...w.rec, state, endedAt: this.now() };
    if (reason !== undefined) rec.reason = reason;
    w.rec = rec;
    this.ended[state]++;
    const { instance } = rec;
    if (wipe && rec.incarnation === this.d.incarnation(instance)) this.d.vault.wipe(instance);
    if (state === 'claimed') this.d.log.info({ instance, secrets: rec.secrets.length, claim: rec.claim }, EV.ganetiSecretsClaimed);
    else this.d.log.warn({ instance, secrets: rec.secrets.length, state, reason: rec.reason ?? null }, EV.ganetiSecretsUnclaimed);
    this.save(instance, rec);
  }

  /** The latest window of every registered instance (the current incarnation's). */
  list(): GanetiSecretsRecord[] {
    return [...this.windows.values()]
      .map((w) => w.rec)
      .filter((r) => r.incarnation === this.d.incarnation(r.instance))
      .sort((a, b) => a.instance.localeCompare(b.instance));
  }

  /** Writes in order, in the background; per instance the newest record (null: delete) wins. */
  private save(instance: string, rec: GanetiSecretsRecord | null): void {
    const waiting = this.unsaved.has(instance);
    this.unsaved.set(instance, rec);
    if (waiting) return;
    this.writes = this.writes
      .then(() => {
        const newest = this.unsaved.get(instance) ?? null;
        this.unsaved.delete(instance);
        const file = `${instance}.json`;
        return newest === null
          ? removeFileDurable(this.d.dir, file)
          : writeFileDurable(this.d.dir, file, JSON.stringify(newest, null, 1) + '\n');
      })
      .catch((e: unknown) => {
        this.d.log.error({ instance, code: (e as NodeJS.ErrnoException).code ?? 'error' }, EV.ganetiSecretsRecordWriteFailed);
      });
  }

  /** Resolves once every write queued so far is done. */
  idle(): Promise<void> {
    return this.writes;
  }

  /** Timers cancelled, writes done. Open windows stay `served` on disk: the next start reports them lost. */
  async stop(): Promise<void> {
    for (const w of this.windows.values()) w.timer?.abort();
    await this.idle();
  }
}

function isRecord(r: unknown): r is GanetiSecretsRecord {
  if (typeof r !== 'object' || r === null) return false;
  const x = r as Partial<GanetiSecretsRecord>;
  return (
    x.v === 1 &&
    x.kind === 'ganeti-secrets' &&
    typeof x.instance === 'string' &&
    isInstanceName(x.instance) &&
    typeof x.incarnation === 'string' &&
    STATES.includes(x.state as GanetiSecretsState) &&
    (x.claim === 'once' || x.claim === 'ttl') &&
    Array.isArray(x.secrets) &&
    x.secrets.every((s) => typeof s === 'string') &&
    typeof x.pushedAt === 'string' &&
    typeof x.expiresAt === 'string'
  );
}
