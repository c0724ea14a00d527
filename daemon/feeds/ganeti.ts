/**
 * The Ganeti feed: metad in ganeti-metad's place on a Ganeti 3.0 node (docs/ganeti.md). Ganeti's
 * node daemon pushes every instance it creates, reinstalls or modifies to the metadata daemon's
 * config socket (lib/backend.py `ModifyInstanceMetadata`, through `ganeti.metad.Client`); this
 * listens there and stores what it is fed through the same store methods and validation as the
 * admin door (the mapping: daemon/feeds/ganeti-map.ts).
 *
 * Protocol, as Ganeti's client speaks it (lib/rpc/client.py, lib/rpc/transport.py) and
 * ganeti-metad answers it (src/Ganeti/UDSServer.hs, src/Ganeti/Metad/ConfigCore.hs): each
 * message is UTF-8 JSON ended by ETX (0x03). A request is {"method", "args"}; the answer is
 * {"success": true, "result": R}, or {"success": false, "result": ["GenericError", [message]]}
 * (Ganeti's client raises errors.GenericError(message)), or for a request it cannot parse
 * {"success": false, "result": "Failed to parse request: …"} (the client raises RequestError).
 * Methods: `echo` [s] → s; `updateConfig` [instance] → [] (what ganeti-metad answers).
 * Requests on one connection are answered in order; pushes are applied one at a time.
 *
 * Semantics (Ganeti's, made safe): a push stores the instance under its name (created or
 * replaced); one with another name but the comm IPv4 of an instance Ganeti fed replaces that
 * instance (logged; one registered through the admin door is never replaced that way: the push
 * is refused); a push without a communication NIC removes the fed instance of that name.
 * Secret values go to the vault (memory only) through the Ganeti secret windows
 * (daemon/feeds/ganeti-secrets.ts: when they are served); each push replaces them, `{}` wipes them.
 *
 * While it listens, metad's pid is in Ganeti's pid file for ganeti-metad: the node daemon
 * checks it before each push (`utils.IsDaemonAlive`) and would otherwise start ganeti-metad.
 */
import net from 'node:net';
import { randomUUID } from 'node:crypto';
import { chmod, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Logger } from 'pino';
import type { Config } from '../config/config.js';
import { DaemonError } from '../errors.js';
import { EV } from '../log/events.js';
import { mkdirs } from '../mkdirs.js';
import { osDefinitionDir } from '../registry/os-definition.js';
import type { InstanceStore } from '../registry/store.js';
import type { SecretVault } from '../registry/vault.js';
import { incarnationOf } from '../registry/model.js';
import type { GanetiSecretWindows } from './ganeti-secrets.js';
import { listenUnixSocket } from '../unix-socket.js';
import { mapGanetiPush, pushedName } from './ganeti-map.js';
import type { FedPackages } from '../registry/os-package.js';

export type GanetiSettings = NonNullable<Config['ganeti']>;

export interface GanetiFeedDeps {
  store: InstanceStore;
  vault: SecretVault;
  /** Where a push's secret values go (the vault) and when they are served (daemon/feeds/ganeti-secrets.ts). */
  secrets: Pick<GanetiSecretWindows, 'pushed'>;
  log: Logger;
  /** Where fed instances' OS definitions are looked up (os.searchPath), for the log. */
  osSearchPath: readonly string[];
  /** Where the package parameters Ganeti pushed are recorded (the guest door serves only those). */
  packages?: FedPackages;
}

/** A protocol answer. */
interface Answer {
  success: boolean;
  result: unknown;
}

const ETX = 0x03;
/** An idle connection is closed after this long (ganeti-metad's own send/receive timeout). */
const IDLE_MS = 60_000;
/** Connections open at once; Ganeti's node daemon opens one per push. */
const MAX_CONNECTIONS = 64;

/** A request that is not one: answered as ganeti-metad answers what it cannot parse. */
class BadRequest extends Error {}

/** The gid of `group`: a number as it is, a name from /etc/group. */
async function gidOf(group: string): Promise<number> {
  if (/^[0-9]+$/.test(group)) return Number(group);
  const text = await readFile('/etc/group', 'utf8');
  for (const line of text.split('\n')) {
    const [name, , gid] = line.split(':');
    if (name === group && gid !== undefined && /^[0-9]+$/.test(gid)) return Number(gid);
  }
  throw new Error(`ganeti.socketGroup: no group ${group} in /etc/group`);
}

/**
 * A DaemonError as Ganeti's operator reads it: 'invalid instance document: nics[1].ip: must …; …',
 * or 'nics[0].ip: already used by instance web2' when the one detail is the message itself.
 */
function describe(err: DaemonError): string {
  const details = err.details.map((d) => `${d.path}: ${d.message}`);
  if (details.length === 0) return err.message;
  return err.details.length === 1 && err.details[0]?.message === err.message ? (details[0] ?? '') : `${err.message}: ${details.join('; ')}`;
}

export class GanetiFeed {
  private server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();
  /** Pushes, one at a time, in arrival order. */
  private chain: Promise<unknown> = Promise.resolve();
  private closing: Promise<void> | undefined;
  private pidWritten = false;

  constructor(
    private readonly settings: GanetiSettings,
    private readonly d: GanetiFeedDeps,
  ) {}

  /**
   * Listen on the socket (its mode and group from the first instant; a live socket there, such
   * as ganeti-metad's, is never taken) and write the pid file. Throws when either fails.
   */
  async listen(): Promise<void> {
    const s = this.settings;
    const gid = s.socketGroup === undefined ? undefined : await gidOf(s.socketGroup);
    const server = net.createServer((sock) => this.connection(sock));
    server.maxConnections = MAX_CONNECTIONS;
    await listenUnixSocket(server, s.socket, parseInt(s.socketMode, 8), gid);
    this.server = server;
    try {
      await this.writePidFile();
    } catch (err) {
      await this.close();
      const code = (err as NodeJS.ErrnoException).code ?? String(err);
      throw new Error(`ganeti feed: cannot write the pid file ${s.pidFile} (${code})`, { cause: err });
    }
    this.d.log.info({ socket: s.socket, mode: s.socketMode, group: s.socketGroup ?? null, pidFile: s.pidFile }, EV.ganetiListening);
  }

  /**
   * Stop: no new connection or request is taken, the push being applied finishes, every
   * connection is closed, the socket file and the pid file (while it still names this process)
   * are removed. Idempotent.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const server = this.server;
      if (!server) return;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      await this.chain;
      for (const sock of this.sockets) sock.destroy();
      await closed;
      await unlink(this.settings.socket).catch(() => undefined);
      if (this.pidWritten) {
        const text = await readFile(this.settings.pidFile, 'utf8').catch(() => '');
        if (text.trim() === String(process.pid)) await unlink(this.settings.pidFile).catch(() => undefined);
      }
    })();
    return this.closing;
  }

  /** `<pid>\n`, written to a temp file and renamed over the pid file (never a half-written pid). */
  private async writePidFile(): Promise<void> {
    const file = this.settings.pidFile;
    await mkdirs(dirname(file), 0o755);
    const tmp = join(dirname(file), `.${basename(file)}.${String(process.pid)}.tmp`);
    await writeFile(tmp, `${String(process.pid)}\n`, { mode: 0o644 });
    try {
      // 0644 whatever the umask (the unit's is 0077): metad's stand-in for ganeti-metad reads it as
      // gnt-metad (ganeti/ganeti-metad), as anything may read a pid file.
      await chmod(tmp, 0o644);
      await rename(tmp, file);
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      throw err;
    }
    this.pidWritten = true;
  }

  /** One connection: split messages at ETX, answer each in order. */
  private connection(sock: net.Socket): void {
    this.sockets.add(sock);
    sock.setTimeout(IDLE_MS, () => sock.destroy());
    sock.on('error', () => sock.destroy());
    sock.once('close', () => this.sockets.delete(sock));
    const max = this.settings.maxMessageBytes;
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    let answered: Promise<void> = Promise.resolve();
    const send = (a: Answer, end = false): void => {
      if (sock.destroyed) return;
      const text = JSON.stringify(a); // control characters are escaped: never a raw ETX inside
      if (end) sock.end(`${text}\u0003`);
      else sock.write(`${text}\u0003`);
    };
    sock.on('data', (chunk: Buffer) => {
      if (this.closing) return;
      let start = 0;
      for (let i = chunk.indexOf(ETX); i >= 0; i = chunk.indexOf(ETX, start)) {
        const msg = Buffer.concat([...pending, chunk.subarray(start, i)]);
        pending = [];
        pendingBytes = 0;
        start = i + 1;
        if (msg.length > max) {
          this.tooLarge(sock, msg.length, send);
          return;
        }
        answered = answered.then(async () => send(await this.answer(msg))).catch(() => void sock.destroy());
      }
      const rest = chunk.subarray(start);
      if (rest.length === 0) return;
      pending.push(rest);
      pendingBytes += rest.length;
      if (pendingBytes > max) this.tooLarge(sock, pendingBytes, send);
    });
  }

  private tooLarge(sock: net.Socket, bytes: number, send: (a: Answer, end?: boolean) => void): void {
    const reason = `request larger than ${String(this.settings.maxMessageBytes)} bytes (ganeti.maxMessageBytes)`;
    this.d.log.warn({ reason, bytes }, EV.ganetiBadRequest);
    sock.pause();
    send({ success: false, result: `Failed to parse request: ${reason}` }, true);
  }

  /** The answer to one message. */
  private async answer(msg: Buffer): Promise<Answer> {
    let method: string;
    let args: unknown[];
    try {
      ({ method, args } = parseRequest(msg));
    } catch (err) {
      if (!(err instanceof BadRequest)) throw err;
      this.d.log.warn({ reason: err.message, bytes: msg.length }, EV.ganetiBadRequest);
      return { success: false, result: `Failed to parse request: ${err.message}` };
    }
    if (method === 'echo') return { success: true, result: args[0] };
    const run = this.chain.then(() => this.update(args[0]));
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** `updateConfig` pushes since the start, by result (the metrics read it). */
  readonly pushes = { applied: 0, refused: 0, failed: 0 };

  /** `updateConfig`: apply one push; refusals in the protocol's error form. */
  private async update(arg: unknown): Promise<Answer> {
    const named = pushedName(arg);
    try {
      await this.apply(arg);
      this.pushes.applied++;
      return { success: true, result: [] };
    } catch (err) {
      if (err instanceof DaemonError) {
        this.pushes.refused++;
        const text = describe(err);
        this.d.log.warn({ instance: named ?? null, err: text }, EV.ganetiRefused);
        return {
          success: false,
          result: ['GenericError', [`metad refused ${named ? `instance ${named}` : 'the pushed instance'}: ${text}`]],
        };
      }
      this.pushes.failed++;
      const incidentId = randomUUID();
      this.d.log.error({ incidentId, method: 'updateConfig', route: 'ganeti feed', err }, EV.internalError);
      return {
        success: false,
        result: ['GenericError', [`metad failed on this update: internal error (incident ${incidentId} in its log)`]],
      };
    }
  }

  private async apply(arg: unknown): Promise<void> {
    const { store, vault, log } = this.d;
    const rawName = typeof arg === 'object' && arg !== null ? (arg as { name?: unknown }).name : undefined;
    const push = mapGanetiPush(arg, typeof rawName === 'string' ? store.get(rawName)?.doc : undefined);
    const { name, input, secret } = push;
    if (input === undefined) {
      const cur = store.get(name);
      if (cur?.doc.origin !== 'ganeti') {
        const reason = cur ? 'registered through the admin door, left as it is' : 'not registered';
        log.info({ instance: pushedName(arg) ?? null, reason }, EV.ganetiIgnored);
        return;
      }
      const secrets = vault.info(name).length;
      await store.remove(name); // the 'removed' event wipes its secrets and drops its pipe
      log.info({ instance: name, secretsWiped: secrets }, EV.ganetiRemoved);
      return;
    }
    const holder = store.byAddress(input.comm.ipv4);
    if (holder && holder.doc.name !== name) {
      const other = holder.doc.name;
      if (holder.doc.origin !== 'ganeti') {
        const message = `already used by instance ${other}, registered through the admin door (the feed replaces only instances Ganeti fed: metadctl remove ${other})`;
        throw push.inGanetiTerms(new DaemonError('Conflict', 'comm address taken', [{ path: '/comm/ipv4', message }]));
      }
      // Nothing is removed for a push that could not be stored afterwards.
      const problem = store.problemOf(input, other);
      if (problem) throw push.inGanetiTerms(problem);
      await store.remove(other);
      log.info({ instance: name, replaced: other, commIpv4: input.comm.ipv4 }, EV.ganetiReplaced);
    }
    let stored;
    try {
      // Mapped again inside the instance's write queue, against the version stored then.
      stored = await store.putWith(
        name,
        (prev) => mapGanetiPush(arg, prev?.doc).input ?? input,
        true,
        (r) => this.d.secrets.pushed(name, incarnationOf(r.instance), secret),
      );
    } catch (err) {
      throw err instanceof DaemonError ? push.inGanetiTerms(err) : err;
    }
    const os = input.os?.name;
    const def = os === undefined ? undefined : await osDefinitionDir(this.d.osSearchPath, os);
    const { created, instance } = stored;
    // What this push itself said (never a value kept from before it).
    this.d.packages?.record(name, instance.doc.uuid, input.params?.public);
    log.info(
      {
        instance: name,
        created,
        generation: instance.generation,
        secrets: Object.keys(secret).length,
        os: os ?? null,
        osDefinition: def ?? null,
      },
      EV.ganetiFed,
    );
    if (os !== undefined && def === undefined) log.warn({ instance: name, os, searchPath: this.d.osSearchPath }, EV.ganetiOsMissing);
  }
}

/** A request's method and arguments; BadRequest says what is wrong, as ganeti-metad would. */
function parseRequest(msg: Buffer): { method: string; args: unknown[] } {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(msg);
  } catch {
    throw new BadRequest('not UTF-8');
  }
  let req: unknown;
  try {
    req = JSON.parse(text);
  } catch {
    throw new BadRequest('not JSON');
  }
  if (typeof req !== 'object' || req === null || Array.isArray(req)) throw new BadRequest('not a JSON object');
  const { method, args } = req as { method?: unknown; args?: unknown };
  if (typeof method !== 'string' || !Array.isArray(args)) throw new BadRequest('no method or arguments in the request');
  if (method === 'echo') {
    if (args.length !== 1 || typeof args[0] !== 'string') throw new BadRequest('echo takes one string');
  } else if (method === 'updateConfig') {
    if (args.length !== 1) throw new BadRequest('updateConfig takes one argument (the instance)');
  } else {
    throw new BadRequest(`unknown method ${JSON.stringify(method.slice(0, 64))} (metad answers echo and updateConfig)`);
  }
  return { method, args };
}
