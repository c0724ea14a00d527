/**
 * Every example in README.md and docs/*.md works as written. The fenced blocks are extracted
 * (annotations: test/support/doc-examples.ts) and run, page by page, inside a throwaway network
 * namespace with a tripwire (so the examples get metad's usual port 8169 to themselves, and no
 * example can reach 169.254.169.254 or anything else off loopback):
 *   - README.md runs against `metad serve --demo` (loopback guest door 127.0.0.1:8169, comm range
 *     127.0.0.0/8, the sample instance demo1), as its quick start says;
 *   - the other pages run against a daemon with the default configuration except the state dir,
 *     the admin socket and a loopback guest door on 127.0.0.1:8169 (comm range 169.254.0.0/16).
 * `metad` and `metadctl` are on PATH (as after `npm install -g`), METAD_ADMIN_SOCKET names the
 * daemon's socket, and each page has a fresh working directory holding its `file=` documents.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { type ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { annotationProblem, commandsOf, isScript, parseExamples, type Example } from '../support/doc-examples.js';
import { canUseNetns, createNetns, skipOrFail, type Netns } from '../support/netns.js';
import { hasCommand } from '../support/env.js';
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
  assert.match(run, /metadctl register guest2\.yaml/);
  assert.match(run, /curl [^\n]*--interface 127\.0\.0\.5 /);
  const noRun = PAGES.flatMap((p) => examplesOf(p).filter((e) => e.flags.has('no-run')));
  // no-run: root-only host steps (sudo, systemctl). Two of them are run by tests of their own with
  // temporary paths: operations.md's install (npm-install.test.ts) and backup/restore (backup-restore.test.ts).
  assert.ok(noRun.length <= 7, `only a few examples may be no-run (${String(noRun.length)})`);
});

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
    await t.test(page, async () => {
      const dir = mkdtempSync(join(base, 'page-'));
      const work = join(dir, 'work');
      mkdirSync(work);
      const socket = join(dir, 'admin.sock');
      const env = {
        PATH: `${bin}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin`,
        HOME: dir,
        LANG: 'C.UTF-8',
        METAD_ADMIN_SOCKET: socket,
        METAD_SOCKET: socket, // metadctl's former name for it
      };
      for (const ex of examples.filter((e) => e.file !== undefined)) writeFileSync(join(work, ex.file ?? ''), ex.body);
      let args = ['serve', '--demo'];
      if (page !== 'README.md') {
        const config = join(dir, 'config.json');
        writeFileSync(config, JSON.stringify({ stateDir: join(dir, 'state'), guest: { listen: [{ host: '127.0.0.1', port: 8169 }] } }));
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
