/**
 * Shared by the conformance tests that run unmodified real clients (cloud-init, the AWS SDK for
 * JavaScript v3) against the real `metad serve` process. Everything runs inside a throwaway
 * network namespace with a tripwire (test/support/netns.ts): the daemon listens on 127.0.0.1
 * there, and every client is pointed at that address. The admin socket is a file in a temp dir,
 * so this process (in the host namespace) drives the daemon through it: the filesystem is shared.
 *
 * Also: an HTTP probe and an EC2/OpenStack listing walker in Python (Debian's /usr/bin/python3,
 * standard library only) that run inside the namespace, for checks no real client makes.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { adminRequest, type Reply } from '../support/daemon.js';
import type { Netns, RunResult } from '../support/netns.js';
import { LOOPBACK, writeConfig } from '../support/process.js';
import { until } from '../support/wait.js';

export const PY = '/usr/bin/python3';
const CLI = fileURLToPath(new URL('../../daemon/cli.js', import.meta.url));
/** The driver is not compiled: it lives next to the TypeScript sources. */
export const CRAWL_PY = fileURLToPath(new URL('../../../test/conformance/cloudinit_crawl.py', import.meta.url));

/** This process's environment without anything that could steer a child elsewhere. */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v === undefined) continue;
    // METAD_* would override the daemon's config; proxies and AWS_* would steer the clients;
    // NODE_TEST_CONTEXT is node:test's own marker for its child processes.
    if (/^(METAD_|AWS_|NODE_TEST_CONTEXT$|NODE_OPTIONS$)/.test(k) || /_proxy$/i.test(k)) continue;
    env[k] = v;
  }
  env['NO_PROXY'] = env['no_proxy'] = '*';
  return { ...env, ...extra };
}

export interface NsDaemon {
  dir: string;
  port: number;
  url: string;
  socket: string;
  child: ChildProcess;
  /** Everything the daemon wrote on stdout and stderr so far. */
  log(): string;
  admin(method: string, path: string, body?: unknown): Promise<Reply>;
  /** SIGTERM and wait (SIGKILL after 10 s); resolves to the exit code. Idempotent. */
  stop(): Promise<number | null>;
}

/**
 * `node dist/daemon/cli.js serve --config <tmp>/config.json` inside `ns`: guest door on
 * 127.0.0.1 (a free port: port 0, read back from the "metad started" log line), commRange
 * 127.0.0.0/8, state dir and admin socket in a fresh temp dir.
 */
export async function startDaemonInNetns(ns: Netns, opts: { logLevel?: string } = {}): Promise<NsDaemon> {
  const dir = mkdtempSync(join(tmpdir(), 'metad-conf-'));
  const socket = join(dir, 'admin.sock');
  const config = writeConfig(dir, { ...LOOPBACK, log: { level: opts.logLevel ?? 'debug' } });
  const child = ns.exec(process.execPath, [CLI, 'serve', '--config', config], { stdio: ['ignore', 'pipe', 'pipe'], env: cleanEnv() });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString('utf8')));
  child.stderr!.on('data', (c: Buffer) => (out += c.toString('utf8')));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

  let port: number;
  try {
    port = await until(
      `metad started inside netns ${ns.name}`,
      () => {
        if (child.exitCode !== null) throw new Error(`metad exited inside netns ${ns.name}: ${out}`);
        const started = out.split('\n').find((line) => line.includes('"metad started"'));
        return started === undefined ? undefined : (JSON.parse(started) as { guest?: { host: string; port: number }[] }).guest?.[0]?.port;
      },
      { detail: () => out },
    );
  } catch (e) {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }

  let stopping: Promise<number | null> | undefined;
  const stop = (): Promise<number | null> => {
    stopping ??= (async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        const code = await exited;
        clearTimeout(timer);
        return code;
      }
      return child.exitCode;
    })();
    return stopping;
  };
  return {
    dir,
    port,
    url: `http://127.0.0.1:${port}`,
    socket,
    child,
    log: () => out,
    admin(method, path, body) {
      return adminRequest(socket, method, path, body === undefined ? undefined : JSON.stringify(body));
    },
    stop,
  };
}

/** Stop the daemon, delete the namespace, remove the temp dir; never throws half-way. */
export async function teardown(ns: Netns | undefined, d: NsDaemon | undefined, others: ChildProcess[] = []): Promise<void> {
  for (const c of others) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  if (d) await d.stop().catch(() => d.child.kill('SIGKILL'));
  if (ns) await ns.destroy();
  if (d) rmSync(d.dir, { recursive: true, force: true });
}

/** Can this machine run cloud-init's datasources? */
export function cloudInitMissing(): string | undefined {
  if (!existsSync(PY)) return `${PY} not installed (.ci/install-deps.sh)`;
  if (!existsSync('/usr/lib/python3/dist-packages/cloudinit/sources/DataSourceEc2.py'))
    return 'cloud-init not installed (.ci/install-deps.sh)';
  return undefined;
}

// ------------------------------------------------------------------ Python probes

const HTTP_PY = `
import base64, http.client, json, sys
out = []
for spec in json.loads(sys.argv[1]):
    c = http.client.HTTPConnection(spec["host"], spec["port"], timeout=5,
                                   source_address=(spec.get("source", "127.0.0.1"), 0))
    body = spec.get("body")
    c.request(spec.get("method", "GET"), spec["path"], body=body, headers=spec.get("headers", {}))
    r = c.getresponse()
    data = r.read()
    out.append({"status": r.status, "headers": {k.lower(): v for k, v in r.getheaders()},
                "body": base64.b64encode(data).decode("ascii")})
    c.close()
print(json.dumps(out))
`;

export interface ProbeRequest {
  method?: string;
  path: string;
  headers?: Record<string, string>;
  body?: string;
  /** Source address (the guest's identity): 127.0.0.1 unless given. */
  source?: string;
}

export interface ProbeReply {
  status: number;
  headers: Record<string, string>;
  text: string;
  body: Buffer;
}

/** Plain HTTP requests from inside the namespace, one connection each, in order. */
export async function probe(ns: Netns, port: number, reqs: ProbeRequest[]): Promise<ProbeReply[]> {
  const specs = reqs.map((r) => ({ host: '127.0.0.1', port, ...r }));
  const res = await ns.run(PY, ['-c', HTTP_PY, JSON.stringify(specs)], { timeoutMs: 30_000, env: cleanEnv() });
  assert.equal(res.code, 0, `probe failed: ${res.stderr}`);
  const raw = JSON.parse(res.stdout) as { status: number; headers: Record<string, string>; body: string }[];
  return raw.map((r) => {
    const body = Buffer.from(r.body, 'base64');
    return { status: r.status, headers: r.headers, body, text: body.toString('utf8') };
  });
}

/**
 * Walks EC2 listings from each root (e.g. `/latest/`) the way the format is defined: a name
 * ending in `/` is a directory, `N=name` under `public-keys/` is the directory `N/`, anything
 * else is a leaf; a `301` to the slash form (a version root lists `meta-data` without its slash)
 * is followed. Then every name that `/openstack/<v>/` lists for the given OpenStack versions.
 * Prints `{"fetched": N, "bad": [[path, status], ...]}`. 429s are waited out (not what we test).
 */
const WALK_PY = `
import http.client, json, sys, time
port = int(sys.argv[1])
ec2_roots = json.loads(sys.argv[2])
os_versions = json.loads(sys.argv[3])
headers = json.loads(sys.argv[4])
fetched = 0
bad = []

def get(path):
    global fetched
    for _ in range(20):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.request("GET", path, headers=headers)
        r = c.getresponse()
        body = r.read()
        loc = r.getheader("Location")
        c.close()
        if r.status != 429:
            fetched += 1
            return r.status, body, loc
        time.sleep(float(r.getheader("Retry-After") or "1"))
    return 429, b"", None

def walk(path, depth=0):
    status, body, loc = get(path)
    if status == 301 and loc == path + "/":
        return walk(path + "/", depth)
    if status != 200:
        bad.append([path, status])
        return
    if not path.endswith("/") or depth > 12:
        return
    for line in body.decode("utf-8").split("\\n"):
        if line == "":
            continue
        if line.endswith("/"):
            walk(path + line, depth + 1)
        elif path.endswith("/public-keys/") and "=" in line and line.split("=", 1)[0].isdigit():
            walk(path + line.split("=", 1)[0] + "/", depth + 1)
        else:
            walk(path + line, depth + 1)

for root in ec2_roots:
    walk(root)
for v in os_versions:
    status, body, _ = get("/openstack/%s/" % v)
    if status != 200:
        bad.append(["/openstack/%s/" % v, status])
        continue
    for name in body.decode("utf-8").split("\\n"):
        if name:
            st, _, _ = get("/openstack/%s/%s" % (v, name))
            if st != 200:
                bad.append(["/openstack/%s/%s" % (v, name), st])
print(json.dumps({"fetched": fetched, "bad": bad}))
`;

export async function walkListings(
  ns: Netns,
  port: number,
  ec2Roots: string[],
  openstackVersions: string[],
  headers: Record<string, string> = {},
): Promise<{ fetched: number; bad: [string, number][] }> {
  const res = await ns.run(
    PY,
    ['-c', WALK_PY, String(port), JSON.stringify(ec2Roots), JSON.stringify(openstackVersions), JSON.stringify(headers)],
    {
      timeoutMs: 120_000,
      env: cleanEnv(),
    },
  );
  assert.equal(res.code, 0, `walker failed: ${res.stderr}`);
  return JSON.parse(res.stdout) as { fetched: number; bad: [string, number][] };
}

/** Fail with the client's own output when it did not exit 0. */
export function assertRan(r: RunResult, what: string): void {
  assert.equal(r.timedOut, false, `${what} timed out\nstdout: ${r.stdout}\nstderr: ${r.stderr.slice(-4000)}`);
  assert.equal(r.code, 0, `${what} exited ${r.code ?? r.signal}\nstdout: ${r.stdout}\nstderr: ${r.stderr.slice(-4000)}`);
}
