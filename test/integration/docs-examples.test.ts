/**
 * Every example in README.md and docs/*.md works as written. The fenced blocks are extracted
 * (annotations: test/support/doc-examples.ts) and run, page by page, inside a throwaway network
 * namespace with a tripwire (so the examples get metad's usual port 8169 to themselves, and no
 * example can reach 169.254.169.254 or anything else off loopback):
 *   - README.md runs against `metad serve --demo` (loopback guest door 127.0.0.1:8169, comm range
 *     127.0.0.0/8, the sample instance demo1), as its quick start says;
 *   - the other pages run against a daemon with the default configuration except the state dir,
 *     the admin socket and a loopback guest door on 127.0.0.1:8169 (comm range 169.254.0.0/16).
 * For docs/ pages `metad` and `metadctl` are on PATH (as after `npm install -g`); README.md runs as
 * in the checkout before any install (no metadctl on PATH: `node dist/cli/metadctl.js`). METAD_ADMIN_SOCKET
 * names the daemon's socket, and each page has a fresh working directory holding its `file=`
 * documents.
 * docs/ganeti.md's daemon also has the Ganeti feed on, in a node root of Ganeti's virtual-cluster
 * paths, and its examples run Ganeti's own Python package (test/support/ganeti.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { type ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { annotationProblem, commandsOf, isScript, parseExamples, type Example } from '../support/doc-examples.js';
import { canUseNetns, createNetns, skipOrFail, type Netns } from '../support/netns.js';
import { hasCommand } from '../support/env.js';
import { GANETI_PYTHONPATH, ganetiMissing, nodeRoot } from '../support/ganeti.js';
import { until } from '../support/wait.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const DIST = fileURLToPath(new URL('../../', import.meta.url));
const PAGES = [
  'README.md',
  ...readdirSync(join(ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`),
];
const examplesOf = (page: string): Example[] => parseExamples(readFileSync(join(ROOT, page), 'utf8'));

test('every fenced block of README.md and docs/ is annotated for the example runner', () => {
  const problems: string[] = [];
  for (const page of PAGES) {
    for (const ex of examplesOf(page)) {
      const why = annotationProblem(ex);
      if (why) problems.push(`${page}:${String(ex.line)}: ${why}`);
      // A reader runs these from the host: nothing aimed at the link-local metadata address there.
      if (isScript(ex) && ex.body.includes('169.254.169.254'))
        problems.push(`${page}:${String(ex.line)}: a run example aims at 169.254.169.254`);
    }
  }
  assert.deepEqual(problems, []);
});

test('the README quick start shows a second guest, and that example is run', () => {
  const run = examplesOf('README.md')
    .filter(isScript)
    .map((e) => e.body)
    .join('\n');
  assert.match(run, /^\$ node dist\/cli\/metadctl\.js register guest2\.yaml$/m);
  assert.match(run, /curl [^\n]*--interface 127\.0\.0\.5 /);
  const noRun = PAGES.flatMap((p) => examplesOf(p).filter((e) => e.flags.has('no-run')));
  // no-run: what no test runs. Host steps (sudo, systemctl) are `host=ID` instead: run by live tests.
  assert.ok(noRun.length <= 5, `only a few examples may be no-run (${String(noRun.length)})`);
});

test('every host=ID example is run by a live test that takes it by its id (hostExample)', () => {
  const tests = readdirSync(join(ROOT, 'test', 'integration'))
    .filter((f) => f.endsWith('.test.ts'))
    .map((f) => readFileSync(join(ROOT, 'test', 'integration', f), 'utf8'));
  const problems: string[] = [];
  let n = 0;
  for (const page of PAGES) {
    const ids = examplesOf(page).flatMap((e) => (e.host === undefined ? [] : [e.host]));
    n += ids.length;
    for (const id of new Set(ids)) {
      if (ids.filter((x) => x === id).length > 1) problems.push(`${page}: host=${id} twice`);
      // A test that takes host examples (hostExample) of this page, naming this id.
      if (!tests.some((t) => t.includes('hostExample(') && t.includes(`'${page}'`) && t.includes(`'${id}'`)))
        problems.push(`${page}: host=${id} is run by no test`);
    }
  }
  assert.deepEqual(problems, []);
  assert.ok(n >= 6, `the operator's host steps are host= examples (${String(n)})`);
});

/**
 * What a page needs besides the default daemon: docs/ganeti.md feeds metad with Ganeti's client,
 * whose socket and pid-file paths follow GANETI_ROOTDIR (never the machine's /var/run/ganeti).
 */
function pageSetup(page: string, dir: string): { config: Record<string, unknown>; env: Record<string, string>; missing?: string } {
  if (page !== 'docs/ganeti.md') return { config: {}, env: {} };
  const missing = ganetiMissing();
  if (missing !== undefined) return { config: {}, env: {}, missing };
  const node = nodeRoot(join(dir, 'ganeti'));
  return {
    config: { ganeti: { socket: node.metadSocket, pidFile: node.metadPidFile } },
    env: { ...node.env, PYTHONPATH: GANETI_PYTHONPATH },
  };
}

interface Running {
  child: ChildProcess;
  out: () => string;
  stop(): Promise<void>;
}

/** Start metad inside the namespace and wait for its "started" line. */
async function startDaemon(ns: Netns, args: string[], env: NodeJS.ProcessEnv): Promise<Running> {
  const child = ns.exec(process.execPath, [join(DIST, 'daemon', 'cli.js'), ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
  let out = '';
  child.stdout?.on('data', (c: Buffer) => (out += c.toString('utf8')));
  child.stderr?.on('data', (c: Buffer) => (out += c.toString('utf8')));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  // The demo registers demo1 right after the started line and then prints its banner.
  const ready = (): boolean => out.includes('"metad started"') && (!args.includes('--demo') || out.includes('admin door:'));
  try {
    await until(
      `metad started inside ${ns.name}`,
      () => {
        if (child.exitCode !== null) throw new Error(`metad exited inside ${ns.name}: ${out}`);
        return ready();
      },
      { detail: () => out },
    );
  } catch (e) {
    child.kill('SIGKILL');
    throw e;
  }
  return {
    child,
    out: () => out,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

test('every example of README.md and docs/ works as written', async (t) => {
  const can = canUseNetns();
  if (!can.ok) {
    skipOrFail(t, can.why ?? 'network namespaces unavailable');
    return;
  }
  const missing = ['bash', 'curl', 'jq', 'openssl', 'base64'].filter((c) => !hasCommand(c));
  if (skipOrFail(t, missing.length > 0 ? `missing commands: ${missing.join(', ')} (.ci/install-deps.sh)` : undefined)) return;
  const base = mkdtempSync(join(tmpdir(), 'metad-docs-'));
  t.after(() => rmSync(base, { recursive: true, force: true }));
  const bin = join(base, 'bin');
  mkdirSync(bin);
  for (const [name, js] of [
    ['metad', 'daemon/cli.js'],
    ['metadctl', 'cli/metadctl.js'],
  ] as const) {
    writeFileSync(join(bin, name), `#!/bin/sh\nexec '${process.execPath}' '${join(DIST, js)}' "$@"\n`);
    chmodSync(join(bin, name), 0o755);
  }
  const ns = await createNetns('metaddoc');
  t.after(() => ns.destroy());

  for (const page of PAGES) {
    const examples = examplesOf(page);
    if (!examples.some((e) => isScript(e) || e.file !== undefined || e.flags.has('config'))) continue;
    await t.test(page, async (pt) => {
      const dir = mkdtempSync(join(base, 'page-'));
      const setup = pageSetup(page, dir);
      if (skipOrFail(pt, setup.missing)) return;
      const work = join(dir, 'work');
      mkdirSync(work);
      const socket = join(dir, 'admin.sock');
      // README.md is followed in the checkout, before any install: `metadctl` is not on PATH and
      // the page runs `node dist/cli/metadctl.js` (the work dir stands in for the checkout).
      const readme = page === 'README.md';
      if (readme) symlinkSync(join(ROOT, 'dist'), join(work, 'dist'));
      const env = {
        PATH: `${readme ? '' : `${bin}:`}/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin`,
        HOME: dir,
        LANG: 'C.UTF-8',
        METAD_ADMIN_SOCKET: socket,
        METAD_SOCKET: socket, // metadctl's former name for it
        ...setup.env,
      };
      for (const ex of examples.filter((e) => e.file !== undefined)) writeFileSync(join(work, ex.file ?? ''), ex.body);
      let args = ['serve', '--demo'];
      if (page !== 'README.md') {
        const config = join(dir, 'config.json');
        writeFileSync(
          config,
          JSON.stringify({ stateDir: join(dir, 'state'), guest: { listen: [{ host: '127.0.0.1', port: 8169 }] }, ...setup.config }),
        );
        args = ['serve', '--config', config];
      }
      const daemon = await startDaemon(ns, args, env);
      try {
        for (const ex of examples) {
          const where = `${page}:${String(ex.line)}`;
          if (ex.flags.has('config') && !ex.flags.has('no-run')) {
            const file = join(dir, `config-${String(ex.line)}.${ex.lang === 'json' ? 'json' : 'yaml'}`);
            writeFileSync(file, ex.body);
            const r = await ns.run('metad', ['check-config', file], { env, cwd: work, timeoutMs: 60_000 });
            assert.equal(r.code, 0, `${where}: metad check-config refused the example:\n${r.stderr}`);
          }
          if (!isScript(ex)) continue;
          for (const { command, expect } of commandsOf(ex)) {
            const r = await ns.run('bash', ['-c', `set -eo pipefail\n${command}`], { env, cwd: work, timeoutMs: 60_000 });
            assert.equal(
              r.code,
              0,
              `${where}: exit ${String(r.code)} from\n${command}\nstdout: ${r.stdout}\nstderr: ${r.stderr}\ndaemon: ${daemon.out().slice(-2000)}`,
            );
            if (expect !== undefined) assert.equal(r.stdout.replace(/\n$/, ''), expect, `${where}: output of ${command}`);
          }
        }
      } finally {
        await daemon.stop();
      }
    });
  }
  assert.equal(await ns.tripCount(), 0, `an example sent packets off loopback: ${(await ns.tripDestinations()).join(', ')}`);
});
