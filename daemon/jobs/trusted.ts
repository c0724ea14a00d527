/**
 * Trusted and untrusted scripts "executed at the same time" (the design): when the instance's OS
 * definition has both `<def>/create` (trusted: Ganeti's classic script, run on the host) and
 * `<def>/untrusted/create` (run in the appliance), metad runs the trusted one on the host for
 * the length of the job's run, talking to the untrusted one through the instance's pipe:
 *   - its stdin gets what the guest writes (`POST /ganeti/<v>/write`); while it runs it is the
 *     pipe's host-side reader (what it accepted is taken from the pipe), so `metadctl pipe read`
 *     sees nothing of it; when it does not read, its input backs up to the pipe's cap and the
 *     guest's writes get 413, as with any reader that stops;
 *   - its stdout is queued for the guest (`GET /ganeti/<v>/read`), held back while that
 *     direction is full;
 *   - its environment is minimal: PATH, Ganeti's OS API variables (`OS_API_VERSION`,
 *     `INSTANCE_NAME`, `INSTANCE_OS`, `OS_VARIANT`, `DISK_COUNT`, `DISK_<N>_PATH`: the host paths,
 *     resolved as the job checked them, `DISK_<N>_ACCESS`, `DEBUG_LEVEL`), the public and private
 *     parameters as `OSP_*`, and of the secret ones only those the definition names in its
 *     `metad_trusted_secrets` file (one name a line): nothing of metad's own environment;
 *   - its exit status is part of the outcome: a non-zero exit (or a signal) ends the job failed at
 *     once (`trusted create: exit N`), and a run that succeeded waits for it (at most the time
 *     left to the deadline); the job's end, whatever it is, kills it and whatever it started
 *     (its own process group);
 *   - its first 20 stderr lines are logged, each holding a private or secret value it was given
 *     replaced whole.
 */
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { spawnTool, killGroup } from '../comm/exec.js';
import { osDefinitionDir, readDefinitionSetting } from '../registry/os-definition.js';
import type { InstanceStore } from '../registry/store.js';
import type { SecretVault } from '../registry/vault.js';
import { EV } from '../log/events.js';
import { redactLines } from './record.js';

/** What the job manager drives: one trusted script for one run. */
export interface Companion {
  /** The guest wrote: the script takes what waits in the pipe when it has room for it. */
  poke(): void;
  /** Resolves when it exited: ok, or why not. */
  readonly done: Promise<{ ok: true } | { ok: false; reason: string }>;
  /** Ends it (SIGKILL to its process group); `done` resolves after. */
  kill(): void;
}

export interface CompanionIo {
  /** Queue bytes for the guest; false when that direction is full (retried later). */
  toGuest(data: Buffer): boolean;
  /** Take what the guest wrote and nobody read yet (consuming it from the pipe). */
  fromGuest(): Buffer;
}

/** The OS parameter name as Ganeti's environment spells it (`OSP_` + upper case, `-`/`.` as `_`). */
const ospName = (name: string): string => `OSP_${name.toUpperCase().replace(/[-.]/g, '_')}`;

/** The trusted script's environment. Pure. */
function trustedEnv(opts: {
  name: string;
  os: string | undefined;
  variant: string | undefined;
  disks: readonly string[];
  params: Readonly<Record<string, string>>;
}): Record<string, string> {
  const env: Record<string, string> = {
    PATH: '/usr/sbin:/usr/bin:/sbin:/bin',
    OS_API_VERSION: '20',
    INSTANCE_NAME: opts.name,
    INSTANCE_OS: opts.os ?? '',
    OS_VARIANT: opts.variant ?? '',
    DEBUG_LEVEL: '0',
    DISK_COUNT: String(opts.disks.length),
  };
  opts.disks.forEach((p, i) => {
    env[`DISK_${String(i)}_PATH`] = p;
    env[`DISK_${String(i)}_ACCESS`] = 'rw';
  });
  for (const [k, v] of Object.entries(opts.params)) env[ospName(k)] = v;
  return env;
}

/** A regular file (with an execute bit when `exec`). */
async function regular(path: string, exec: boolean): Promise<boolean> {
  const st = await stat(path).catch(() => undefined);
  return st !== undefined && st.isFile() && (!exec || (st.mode & 0o111) !== 0);
}

/** The grants file is a list of names: anything larger is not one (as large as a served script). */
const MAX_GRANTS_BYTES = 1024 * 1024;

/** The secret names the definition grants its trusted scripts (a FIFO or oversize file grants none). */
async function grants(def: string): Promise<Set<string>> {
  const read = await readDefinitionSetting(def, 'metad_trusted_secrets', MAX_GRANTS_BYTES).catch(() => undefined);
  const text = typeof read === 'string' ? read : '';
  return new Set(
    text
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '' && !l.startsWith('#')),
  );
}

/** A trusted script that could not start: the run fails with `reason`. */
export function failedCompanion(reason: string): Companion {
  return { poke: () => undefined, done: Promise.resolve({ ok: false, reason }), kill: () => undefined };
}

/** At most this many bytes of the script's input wait for it to read them. */
const MAX_PENDING_INPUT = 64 * 1024;

export interface TrustedDeps {
  searchPath: readonly string[];
  store: Pick<InstanceStore, 'get'>;
  vault: Pick<SecretVault, 'liveValues'>;
  log: Logger;
}

/**
 * The job manager's companion hook: the trusted `create` of the instance's OS definition, started,
 * when the definition has both it and `untrusted/create`; undefined otherwise.
 */
export function trustedCompanions(
  d: TrustedDeps,
): (instance: string, io: CompanionIo, disks: readonly string[]) => Promise<Companion | undefined> {
  return async (instance, io, disks) => {
    const inst = d.store.get(instance);
    if (!inst) return undefined;
    const def = await osDefinitionDir(d.searchPath, inst.doc.os?.name);
    if (def === undefined) return undefined;
    const script = join(def, 'create');
    // The untrusted create is the appliance's (served, never run here): it need only exist.
    if (!(await regular(script, true)) || !(await regular(join(def, 'untrusted', 'create'), false))) return undefined;
    const granted = await grants(def);
    const secrets = Object.fromEntries(Object.entries(d.vault.liveValues(instance, false)).filter(([k]) => granted.has(k)));
    const env = trustedEnv({
      name: instance,
      os: inst.doc.os?.name,
      variant: inst.doc.os?.variant,
      disks,
      params: { ...inst.doc.params?.public, ...inst.sensitive.private, ...secrets },
    });
    let child: ReturnType<typeof spawnTool>;
    try {
      child = spawnTool(script, [], ['pipe', 'pipe', 'pipe'], { cwd: def, env, detached: true });
    } catch {
      // node refuses an environment it cannot pass (a value with a NUL byte): the run fails, nothing leaks.
      return failedCompanion('trusted create: cannot be started (a parameter value no environment can hold)');
    }
    d.log.info({ instance, pid: child.pid }, EV.jobTrustedStarted);
    // stdout -> the guest, held back while that direction is full.
    const held: Buffer[] = [];
    let timer: NodeJS.Timeout | undefined;
    const flush = (): void => {
      timer = undefined;
      while (held.length > 0) {
        if (!io.toGuest(held[0] as Buffer)) {
          child.stdout?.pause();
          timer = setTimeout(flush, 100);
          return;
        }
        held.shift();
      }
      child.stdout?.resume();
    };
    child.stdout?.on('data', (b: Buffer) => {
      held.push(b);
      if (timer === undefined) flush();
    });
    // stderr: the first lines to the log, a line holding a private or secret value it was given
    // replaced whole (checked before the line is cut), as in job records.
    const hidden = [...Object.values(inst.sensitive.private), ...Object.values(secrets)];
    let errLines = 0;
    child.stderr?.on('data', (b: Buffer) => {
      for (const line of b.toString('utf8').split('\n')) {
        if (line === '' || errLines >= 20) continue;
        errLines++;
        d.log.info({ instance, line: (redactLines([line], hidden)[0] ?? '').slice(0, 200) }, EV.jobTrustedOutput);
      }
    });
    child.stdin?.on('error', () => undefined); // it exited without reading
    // The guest's writes -> stdin, taken from the pipe only while fewer than MAX_PENDING_INPUT
    // bytes wait for the script to read: the rest waits in the pipe (and fills it).
    const poke = (): void => {
      const stdin = child.stdin;
      if (!stdin || stdin.destroyed || stdin.writableLength > MAX_PENDING_INPUT) return;
      const data = io.fromGuest();
      if (data.length > 0) stdin.write(data);
    };
    child.stdin?.on('drain', poke);
    let exited = false;
    const done = new Promise<{ ok: true } | { ok: false; reason: string }>((resolve) => {
      child.once('error', () => {
        exited = true;
        resolve({ ok: false, reason: 'trusted create: cannot be started' });
      });
      child.once('close', (code, signal) => {
        exited = true;
        if (timer !== undefined) clearTimeout(timer);
        d.log.info({ instance, code, signal }, EV.jobTrustedEnded);
        resolve(
          code === 0
            ? { ok: true }
            : { ok: false, reason: `trusted create: ${code === null ? `killed by ${String(signal)}` : `exit ${String(code)}`}` },
        );
      });
    });
    return {
      poke,
      done,
      kill: () => {
        if (!exited) killGroup(child.pid); // never after the exit: its pid may be another's by then
      },
    };
  };
}
