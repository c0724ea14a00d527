/**
 * One client process of the boot storm (bench/suites/storm.ts), forked with an IPC channel.
 *
 * Each guest is a client bound to its own source address (`localAddress`, 127.0.x.y) that does
 * cloud-init 22.4's EC2 IMDSv2 crawl (test/conformance/README.md, "ec2, IMDSv2"):
 *   PUT /latest/api/token → GET /<v>/meta-data/instance-id (version probe) → GET /<v>/user-data →
 *   GET /<v>/meta-data/ and the recursive walk (cloud-init's MetadataMaterializer: every listed
 *   sub-directory first, depth first, in listing order, then every leaf in listing order;
 *   `security-credentials` skipped; `N=name` fetched as `N/openssh-key`) →
 *   GET /<v>/dynamic/instance-identity (301 → the slash form, followed like requests does) and
 *   every leaf it lists (document, signature).
 * Every request is on a new TCP connection with the headers python-requests sends, like cloud-init.
 * The HTTP client is a minimal one over `net` (raw-http.ts: fixed request text, status line, Content-Length or
 * chunked body), so the client side spends as little CPU as possible.
 *
 * Protocol: parent → `{type:'init', port, version, guests:[{ip, instanceId}], requestTimeoutMs,
 * deadlineMs, checkInstanceId, capture?}`; worker → `{type:'ready'}`; parent → `{type:'go'}`;
 * the worker starts every guest at once and replies `{type:'result', …}` (WorkerResult), then exits. The worker stops by itself: when the IPC channel closes,
 * and after a hard deadline (every request also has a timeout).
 */
import { HttpError, request, type Resp } from './raw-http.js';

interface Init {
  type: 'init';
  port: number;
  version: string;
  guests: { ip: string; instanceId: string }[];
  requestTimeoutMs: number;
  deadlineMs: number;
  /** Check that instance-id is the guest's own (false against the bare baseline, which knows no guests). */
  checkInstanceId: boolean;
  /** Return every request and answer of the first guest (to build the bare baseline's routes). */
  capture?: boolean;
}

export interface Captured {
  method: string;
  path: string;
  status: number;
  type: string;
  location?: string;
  body: string; // base64
}

export interface GuestOutcome {
  ip: string;
  ok: boolean;
  requests: number;
  startMs: number; // epoch ms (performance.timeOrigin + now)
  endMs: number;
  error?: string;
}

export interface WorkerResult {
  type: 'result';
  latenciesMs: number[];
  guests: GuestOutcome[];
  status: Record<string, number>;
  errors: string[];
  errorCount: number;
  unexpected: number;
  tooMany: number;
  cpuUserMs: number;
  cpuSystemMs: number;
  captured?: Captured[];
}

const now = (): number => performance.timeOrigin + performance.now();

const UA_CI = 'Cloud-Init/22.4.2';
const UA_PR = 'python-requests/2.28.1';

function head(method: string, path: string, host: string, ua: string, extra: string[]): string {
  // http.client puts Host first; then requests' defaults (User-Agent, Accept-Encoding, Accept, Connection).
  return [
    `${method} ${path} HTTP/1.1`,
    `Host: ${host}`,
    `User-Agent: ${ua}`,
    'Accept-Encoding: gzip, deflate',
    'Accept: */*',
    'Connection: keep-alive',
    ...extra,
    '',
    '',
  ].join('\r\n');
}

/** cloud-init's MetadataMaterializer._parse: children (sub-directories) and leaves (name → resource). */
function parseListing(text: string): { children: string[]; leaves: string[] } {
  const children: string[] = [];
  const leaves = new Map<string, string>();
  for (const raw of text.split(/\r\n|\r|\n/)) {
    const field = raw.trim();
    const name = field.endsWith('/') ? field.replace(/\/+$/, '') : field;
    if (!field || !name || name === 'security-credentials') continue;
    if (field.endsWith('/')) {
      if (!children.includes(name)) children.push(name);
    } else {
      const eq = field.indexOf('=');
      let resource = name;
      let key = name;
      if (eq !== -1) {
        const ident = field.slice(0, eq);
        if (/^-?\d+$/.test(ident.trim())) {
          resource = `${Number(ident)}/openssh-key`;
          key = field.slice(eq + 1);
        }
      }
      leaves.set(key, resource);
    }
  }
  return { children, leaves: [...leaves.values()] };
}

/** url_helper.combine_url: join with exactly one slash. */
const combine = (base: string, add: string): string => `${base.replace(/\/+$/, '')}/${add.replace(/^\/+/, '')}`;

async function main(init: Init): Promise<WorkerResult> {
  const latencies: number[] = [];
  const status: Record<string, number> = {};
  const errors: string[] = [];
  let errorCount = 0;
  let unexpected = 0;
  let tooMany = 0;
  const host = `127.0.0.1:${init.port}`;
  const cpu0 = process.cpuUsage();
  const captured: Captured[] = [];

  const crawl = async (g: { ip: string; instanceId: string }, index: number): Promise<GuestOutcome> => {
    const startMs = now();
    let requests = 0;
    let token = '';
    /** One request; `expect` lists the statuses that are part of the crawl (anything else is an error). */
    const call = async (method: string, path: string, ua: string, expect: number[], extra: string[] = []): Promise<Resp> => {
      const hdrs = [...extra];
      if (token) hdrs.push(`X-aws-ec2-metadata-token: ${token}`);
      requests++;
      const { resp, ms } = await request({
        port: init.port,
        localAddress: g.ip,
        head: head(method, path, host, ua, hdrs),
        timeoutMs: init.requestTimeoutMs,
      });
      latencies.push(ms);
      if (init.capture && index === 0) {
        const location = resp.headers.get('location');
        captured.push({
          method,
          path,
          status: resp.status,
          type: resp.headers.get('content-type') ?? '',
          ...(location ? { location } : {}),
          body: resp.body.toString('base64'),
        });
      }
      status[resp.status] = (status[resp.status] ?? 0) + 1;
      if (resp.status === 429) tooMany++;
      if (!expect.includes(resp.status)) {
        unexpected++;
        throw new HttpError(`${method} ${path}: HTTP ${resp.status}`);
      }
      return resp;
    };
    const get = (path: string, ua = UA_PR, expect = [200]): Promise<Resp> => call('GET', path, ua, expect);
    const materialize = async (listingText: string, base: string): Promise<void> => {
      const { children, leaves } = parseListing(listingText);
      for (const c of children) {
        const url = combine(base, c).replace(/\/?$/, '/');
        await materialize((await get(url)).body.toString('utf8'), url);
      }
      for (const leaf of leaves) await get(combine(base, leaf));
    };

    try {
      const t = await call('PUT', '/latest/api/token', UA_CI, [200], ['X-aws-ec2-metadata-token-ttl-seconds: 21600', 'Content-Length: 0']);
      token = t.body.toString('utf8');
      if (!token) throw new HttpError('empty token');
      const v = `/${init.version}`;
      const id = (await get(`${v}/meta-data/instance-id`, UA_CI)).body.toString('utf8');
      if (init.checkInstanceId && id !== g.instanceId)
        throw new HttpError(`instance-id ${JSON.stringify(id)} from ${g.ip}, expected ${g.instanceId}`);
      await get(`${v}/user-data`, UA_PR, [200, 404]);
      const mdBase = `${v}/meta-data/`;
      await materialize((await get(mdBase)).body.toString('utf8'), mdBase);
      // _get_instance_metadata(tree='dynamic/instance-identity'): no trailing slash; requests follows the 301.
      const idBase = `${v}/dynamic/instance-identity`;
      let r = await get(idBase, UA_PR, [200, 301]);
      if (r.status === 301) {
        const loc = r.headers.get('location') ?? '';
        const path = loc.startsWith('/') ? loc : new URL(loc, `http://${host}${idBase}`).pathname;
        r = await get(path);
      }
      await materialize(r.body.toString('utf8'), idBase);
      return { ip: g.ip, ok: true, requests, startMs, endMs: now() };
    } catch (err) {
      errorCount++;
      const msg = `${g.ip}: ${(err as Error).message}`;
      if (errors.length < 20) errors.push(msg);
      return { ip: g.ip, ok: false, requests, startMs, endMs: now(), error: msg };
    }
  };

  const guests = await Promise.all(init.guests.map(crawl));
  const cpu = process.cpuUsage(cpu0);
  return {
    type: 'result',
    latenciesMs: latencies,
    guests,
    status,
    errors,
    errorCount,
    unexpected,
    tooMany,
    cpuUserMs: cpu.user / 1000,
    cpuSystemMs: cpu.system / 1000,
    ...(init.capture ? { captured } : {}),
  };
}

if (process.send) {
  let init: Init | undefined;
  process.on('disconnect', () => process.exit(0));
  process.on('message', (m: { type: string }) => {
    if (m.type === 'init') {
      init = m as Init;
      setTimeout(() => process.exit(3), init.deadlineMs).unref();
      process.send!({ type: 'ready' });
    } else if (m.type === 'go' && init) {
      main(init).then(
        (res) => process.send!(res, () => process.disconnect()),
        (err: unknown) => {
          process.send!({ type: 'failed', error: err instanceof Error ? (err.stack ?? err.message) : String(err) }, () =>
            process.disconnect(),
          );
        },
      );
    }
  });
}
