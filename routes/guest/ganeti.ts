/**
 * Ganeti metadata on the guest door: `/ganeti` version list, `/ganeti/<v>/meta_data.json`,
 * `os/parameters.json` (never cached: secret values are live-only and claim-once values are
 * consumed by this read), `os/scripts/` (the scripts it would serve; read from disk on every
 * request, never cached) and `os/scripts/<name>`, and the pipe: `GET read` consumes what the host
 * queued (non-blocking, or `?wait=SECONDS` long-poll), `POST write` appends guest->host bytes
 * (413 and nothing stored when it does not fit). `os/os-install-package` and `os/package`
 * stream the OS package files Ganeti pushed for the instance, checked on the way out; for an
 * instance with `install.packageUrl`, `os/package` is its personalization package instead.
 */
import { GANETI_VERSIONS, isGanetiVersion, renderGanetiMetaData, renderOsParameters } from '../render/ganeti.js';
import {
  type Answer,
  type GuestRequest,
  bytes,
  cached,
  streamed,
  empty,
  fail,
  isRead,
  json,
  methodNotAllowed,
  notFound,
  queryParam,
  text,
} from './answer.js';
import { guestViewOf } from './view.js';
import { readBody } from '../body.js';
import { listOsScripts, readOsScript } from './scripts.js';
import { osDefinitionDir } from '../../daemon/registry/os-definition.js';
import { parseWaitMs } from '../../daemon/registry/pipes.js';
import { sameIncarnation } from '../../daemon/registry/model.js';
import { OS_PACKAGE_PARAMS, type OsPackageParam, openOsPackage } from '../../daemon/registry/os-package.js';
import { ArchiveRefused, archiveCheck } from '../../daemon/registry/archive-check.js';
import { pipeline } from 'node:stream';

const VERSION_LIST = GANETI_VERSIONS.join('\n');
const LISTING = ['meta_data.json', 'os/', 'read', 'write'].join('\n');
const OS_LISTING = ['parameters.json', 'scripts/'].join('\n');

/**
 * GET only: a HEAD would consume bytes it can never deliver. Bytes are taken only for a reader
 * that is still there and an instance that still exists; otherwise they stay queued.
 */
async function pipeRead(r: GuestRequest): Promise<Answer> {
  if (r.method !== 'GET') return methodNotAllowed('GET');
  const ms = parseWaitMs(queryParam(r, 'wait'));
  if (ms === undefined) return fail(400);
  const name = r.inst.doc.name;
  const q = r.d.pipes.get(name).toGuest;
  const ac = new AbortController();
  r.req.once('close', () => ac.abort());
  await q.waitForData(ms, r.d.clock, ac.signal);
  const current = r.d.store.get(name);
  if (ac.signal.aborted || current === undefined || !sameIncarnation(current, r.inst)) return bytes(Buffer.alloc(0));
  return bytes(q.take());
}

async function pipeWrite(r: GuestRequest): Promise<Answer> {
  if (r.method !== 'POST') return methodNotAllowed('POST');
  const name = r.inst.doc.name;
  const body = await readBody(r.req, r.d.config.pipe.maxBytes); // over the cap: 413, nothing stored
  // After the body arrived the instance may be gone, or be another registration of that name.
  const current = r.d.store.get(name);
  if (current === undefined || !sameIncarnation(current, r.inst)) return fail(404);
  const q = r.d.pipes.get(name).toHost;
  try {
    q.push(body);
  } catch {
    r.note('guestPipeFull', { bytes: body.length, queued: q.size });
    return fail(413);
  }
  return empty(204);
}

/** Snap's serveFile (ganeti-metad) types a file by its name: ExportOS's `.tgz` as this (measured). */
function packageType(path: string): string {
  return path.endsWith('.tgz') ? 'application/x-tgz' : 'application/octet-stream';
}

/**
 * `os/os-install-package` and `os/package`: the file the public parameter names, as Ganeti pushed
 * it for this instance (daemon/registry/os-package.ts), streamed through the archive check
 * (daemon/registry/archive-check.ts) and never cached. Whatever stops it is a 404 and a
 * (sampled) log line that never holds the path; a bad entry cuts the transfer before its bytes.
 */
async function osPackage(r: GuestRequest, param: OsPackageParam): Promise<Answer> {
  if (r.method !== 'GET') return methodNotAllowed('GET');
  const refuse = (reason: string): Answer => {
    r.note('guestPackageRefused', { param, reason });
    return notFound();
  };
  const value = r.inst.doc.params?.public?.[param];
  const g = r.d.config.ganeti;
  if (value === undefined) return refuse('not set');
  if (g === undefined || r.d.osPackages === undefined) return refuse('the Ganeti feed is off');
  if (!r.d.osPackages.isFed(r.inst.doc.name, r.inst.doc.uuid, param, value)) return refuse('not as Ganeti pushed it');
  const opened = await openOsPackage(value, g.packageRoots, g.packageMaxBytes);
  if ('problem' in opened) return refuse(opened.problem);
  const size = opened.st.size;
  // At most the size checked on the descriptor: a file that grows is not read past it.
  const file = opened.fh.createReadStream(size > 0 ? { start: 0, end: size - 1 } : { start: 0 });
  const limits = { maxEntries: g.packageMaxEntries, maxEntryBytes: g.packageMaxEntryBytes, maxUnpackedBytes: g.packageMaxUnpackedBytes };
  const source = pipeline(file, archiveCheck(limits), () => undefined);
  return streamed(packageType(value), {
    source,
    length: size,
    failStatus: 404,
    onError: (err, bytesSent) => {
      const refused = err instanceof ArchiveRefused;
      r.note('guestPackageCut', {
        param,
        entry: refused ? err.entry : null,
        reason: refused ? err.reason : 'read error',
        bytesSent,
      });
    },
  });
}

/**
 * `os/package` of an instance with `install.packageUrl`: the personalization package, fetched
 * while its install job runs and streamed through the checks (daemon/jobs/package.ts). Refused
 * (404) outside a job, after a failure in this job, or when the fetch fails (the job's record
 * says why); a failure after the first byte cuts the transfer.
 */
async function personalization(r: GuestRequest, packages: NonNullable<GuestRequest['d']['packages']>): Promise<Answer> {
  if (r.method !== 'GET') return methodNotAllowed('GET');
  const opened = await packages.open(r.inst);
  if ('problem' in opened) {
    r.note('guestPackageRefused', { param: 'install.packageUrl', reason: opened.problem });
    return notFound();
  }
  return streamed(opened.type, {
    source: opened.source,
    length: opened.length,
    failStatus: 404,
    onError: (err, bytesSent) => {
      const refused = err instanceof ArchiveRefused;
      r.note('guestPackageCut', {
        param: 'install.packageUrl',
        entry: refused ? err.entry : null,
        reason: refused ? err.reason : opened.why(err),
        bytesSent,
      });
    },
  });
}

async function osTree(r: GuestRequest, rest: string[]): Promise<Answer> {
  const leaf = rest.length === 1 ? (rest[0] as string) : '';
  if (leaf === 'package' && r.inst.doc.install?.packageUrl !== undefined && r.d.packages) return personalization(r, r.d.packages);
  if (Object.hasOwn(OS_PACKAGE_PARAMS, leaf)) return osPackage(r, OS_PACKAGE_PARAMS[leaf as keyof typeof OS_PACKAGE_PARAMS]);
  if (!isRead(r.method)) return methodNotAllowed('GET, HEAD');
  if (rest.length === 0) return cached(text(OS_LISTING));
  if (rest[0] === 'parameters.json' && rest.length === 1) {
    const params = renderOsParameters(guestViewOf(r.d, r.inst, true, r.method === 'GET'));
    return json(params);
  }
  const [what, name, ...more] = rest;
  if (what !== 'scripts' || more.length > 0) return notFound();
  const def = await osDefinitionDir(r.d.config.os.searchPath, r.inst.doc.os?.name);
  if (name === undefined) return text((def ? await listOsScripts(def) : []).join('\n'));
  const script = def ? await readOsScript(def, name) : undefined;
  if (!script) {
    r.note('guestScriptRefused', { script: name.slice(0, 64) });
    return notFound();
  }
  return bytes(script);
}

export async function ganeti(r: GuestRequest): Promise<Answer> {
  const [, version, first, ...rest] = r.segments;
  if (version === undefined) return isRead(r.method) ? cached(text(VERSION_LIST)) : methodNotAllowed('GET, HEAD');
  if (!isGanetiVersion(version)) return notFound();
  switch (first) {
    case undefined:
      return isRead(r.method) ? cached(text(LISTING)) : methodNotAllowed('GET, HEAD');
    case 'meta_data.json':
      if (rest.length > 0) return notFound();
      if (!isRead(r.method)) return methodNotAllowed('GET, HEAD');
      return cached(json(renderGanetiMetaData(guestViewOf(r.d, r.inst, false), version)));
    case 'read':
      return rest.length > 0 ? notFound() : pipeRead(r);
    case 'write':
      return rest.length > 0 ? notFound() : pipeWrite(r);
    case 'os':
      return osTree(r, rest);
    default:
      return notFound();
  }
}
