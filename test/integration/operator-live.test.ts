/**
 * docs/operations.md on a real host, as printed: "Install" (from `sudo npm install -g` on; the
 * first line, `npm ci && npm pack` in a fresh clone, is npm-install.test.ts's), the shipped
 * systemd/config.yaml starting under the real unit, "Your first guest" (its five commands and the
 * clean-up), and "Upgrade and rollback". The host is test/support/operator-host.ts: a container
 * booted by a real systemd in a test network namespace, where `alice`, a sudo user, runs each
 * block's lines unchanged (each block in a new login, so her group metad counts from the first
 * guest on, as after logging in again). The upgrade goes from 0.1.0 to 0.2.0 and back: this
 * checkout packed under the versions the doc names.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chainedPhases, skipOrFail } from '../support/env.js';
import { commandsOf, hostExample, parseExamples, type Example } from '../support/doc-examples.js';
import { bootOperatorHost, operatorHostMissing, packTarballs, type OperatorHost, type Tarballs } from '../support/operator-host.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const PAGE = 'docs/operations.md';
const DOC = readFileSync(join(ROOT, PAGE), 'utf8');
const block = (id: string): Example => hostExample(DOC, id);

/** The versions the upgrade names: the new one in `upgrade`, the one rolled back to in `rollback`. */
function versions(): { from: string; to: string } {
  const v = (id: string): string => {
    const m = /\.\/metad-(\d+\.\d+\.\d+)\.tgz/.exec(block(id).body);
    assert.ok(m, `host=${id} installs a metad-X.Y.Z.tgz`);
    return m[1] ?? '';
  };
  return { from: v('rollback'), to: v('upgrade') };
}

/** Each `$ ` line of a transcript run by alice in `cwd`; its stdout must be the one printed. */
async function transcript(h: OperatorHost, id: string, cwd?: string): Promise<void> {
  for (const { command, expect } of commandsOf(block(id))) {
    const r = await h.asAdmin(command, cwd);
    assert.equal(r.code, 0, `${id}: ${command}\n${r.stderr}`);
    if (expect !== undefined) assert.equal(r.stdout.replace(/\n$/, ''), expect, `${id}: output of ${command}`);
  }
}

async function script(h: OperatorHost, id: string, body: string, cwd: string): Promise<string> {
  const r = await h.asAdmin(body, cwd);
  if (r.code !== 0) {
    const j = await h.asRoot('journalctl', '-u', 'metad', '-n', '30', '--no-pager', '-o', 'cat');
    assert.fail(`${id}: exit ${String(r.code)}:\n${body}\nstdout: ${r.stdout}\nstderr: ${r.stderr}\n--- metad's journal ---\n${j.stdout}`);
  }
  return r.stdout;
}

test('operations.md as printed on a host booted by systemd: install, first guest, upgrade, rollback', async (t) => {
  if (skipOrFail(t, operatorHostMissing())) return;
  const { from, to } = versions();
  const undo: (() => Promise<void> | void)[] = [];
  t.after(async () => {
    for (const step of undo.reverse()) await step();
  });
  let tarballs: Tarballs | undefined;
  await t.test(`pack this checkout as ${from} and ${to}, fill an npm cache`, async (st) => {
    const began = Date.now();
    tarballs = await packTarballs([from, to]);
    st.diagnostic(`packed and cached in ${String(Date.now() - began)} ms`);
  });
  const tb = tarballs;
  if (tb === undefined) return;
  undo.push(() => rmSync(tb.dir, { recursive: true, force: true }));
  const releases = join(tb.dir, 'releases'); // both tarballs, where the upgrade and rollback run
  mkdirSync(releases, { mode: 0o755 });
  for (const f of tb.files.values()) copyFileSync(f, join(releases, f.slice(tb.dir.length + 1)));
  const h = await bootOperatorHost({ binds: [tb.clone, releases], npmCache: tb.cache, allowOut: ['md-*'] });
  undo.push(() => h.destroy());
  const served = async (): Promise<string> =>
    (await h.asRoot('ip', 'netns', 'exec', 'guest1', 'curl', '-s', '--max-time', '10', 'http://169.254.169.254/latest/meta-data/hostname'))
      .stdout;
  const show = async (prop: string): Promise<string> => (await h.asRoot('systemctl', 'show', '-P', prop, 'metad')).stdout.trim();
  // Each phase builds on the one before: after a failure the rest fail at once, naming it (never a skip).
  const phase = chainedPhases(t);

  await t.test('the shipped config is the one operations.md shows', () => {
    const shown = parseExamples(DOC).filter(
      (e) => e.flags.has('config') && e.body.includes('/etc/metad/config.yaml: metad on a hypervisor'),
    );
    assert.equal(shown.length, 1);
    assert.equal(shown[0]?.body, readFileSync(join(ROOT, 'systemd/config.yaml'), 'utf8'));
  });

  await phase('Install: the lines after npm pack, in the clone; the unit starts with the shipped config and stays up', async () => {
    const lines = block('install').body.split('\n');
    assert.match(lines[0] ?? '', /^cd \/path\/to\/metad && npm ci && npm pack /, "the first line is npm-install.test.ts's");
    const began = Date.now();
    await script(h, 'install', lines.slice(1).join('\n'), tb.clone);
    t.diagnostic(`install block: ${String(Date.now() - began)} ms`);
    assert.equal((await h.asRoot('readlink', '-f', '/usr/bin/metad')).stdout.trim(), '/usr/lib/node_modules/metad/dist/daemon/cli.js');
    assert.equal(await show('ActiveState'), 'active');
    assert.equal(await show('NRestarts'), '0', 'started the first time: no EADDRNOTAVAIL restart loop');
    // Routed mode put the metadata address on metad's own anchor.
    assert.match((await h.hv.run('ip', ['-4', 'addr', 'show', 'dev', 'metad0'])).stdout, /inet 169\.254\.169\.254\/32/);
    const started = (await h.journal()).find((e) => e.msg === 'metad started');
    assert.equal(started?.['version'], from);
    assert.ok(!(await h.journal()).some((e) => e.msg === 'installs unavailable'), 'a host that never installs hears nothing about it');
    assert.match((await h.asRoot('id', '-nG', 'alice')).stdout, /\bmetad\b/);
  });

  await phase('Your first guest: the five commands as printed; the guest reads its own metadata', async () => {
    const doc = parseExamples(DOC).find((e) => e.file === 'guest1.yaml');
    assert.ok(doc);
    const wrote = await h.asAdmin(`cat > guest1.yaml <<'EOF'\n${doc.body}EOF`);
    assert.equal(wrote.code, 0, wrote.stderr);
    assert.equal(commandsOf(block('first-guest')).length, 5, 'five commands');
    await transcript(h, 'first-guest');
    // metad's own view of it: the tap, its route and its DHCP host.
    assert.match((await h.hv.run('ip', ['route', 'show', 'proto', '171'])).stdout, /^169\.254\.1\.10 dev md-guest1 /m);
    assert.match((await h.asRoot('cat', '/run/metad/comm/dhcp-hosts')).stdout, /52:54:00:00:01:0a,169\.254\.1\.10/);
  });

  const stateFile = async (): Promise<{ version: unknown }> =>
    JSON.parse((await h.asRoot('cat', '/var/lib/metad/instances/guest1.json')).stdout) as { version: unknown };
  const quarantined = async (): Promise<string> => (await h.asRoot('ls', '-A', '/var/lib/metad/quarantine')).stdout.trim();

  await phase(`Upgrade to ${to}: as printed; the new version runs, with its instance, and the guest is served`, async () => {
    const restarts = Number(await show('NRestarts'));
    const pid = await show('MainPID');
    const began = Date.now();
    await script(h, 'upgrade', block('upgrade').body, releases);
    t.diagnostic(`upgrade (npm install -g + restart): ${String(Date.now() - began)} ms`);
    assert.notEqual(await show('MainPID'), pid, 'a new process');
    assert.equal(await show('NRestarts'), String(restarts), 'restarted by the operator, not by a failure');
    await transcript(h, 'upgrade-check', releases);
    assert.equal(await served(), 'guest1');
    assert.equal((await stateFile()).version, 1, 'the state file is still format 1: a rollback can read it');
    assert.equal(await quarantined(), '');
  });

  await phase(`Rollback to ${from}: as printed; the older version runs with the same state, the guest is served`, async () => {
    await script(h, 'rollback', block('rollback').body, releases);
    await transcript(h, 'rollback-check', releases);
    assert.equal(await served(), 'guest1');
    assert.equal(await quarantined(), '');
    assert.equal((await h.journal()).filter((e) => e.msg === 'metad started').at(-1)?.['version'], from);
  });

  await phase('a state file of a format this version does not know is quarantined at start, never read', async () => {
    const file = '/var/lib/metad/instances/guest1.json';
    const text = (await h.asRoot('cat', file)).stdout;
    writeFileSync(join(h.share, 'guest1.json'), JSON.stringify({ ...(JSON.parse(text) as Record<string, unknown>), version: 2 }));
    assert.equal((await h.asRoot('systemctl', 'stop', 'metad')).code, 0);
    assert.equal((await h.asRoot('cp', '-p', file, '/root/guest1.json')).code, 0);
    assert.equal((await h.asRoot('install', '-m', '0600', '-o', 'metad', '-g', 'metad', join(h.share, 'guest1.json'), file)).code, 0);
    assert.equal((await h.asRoot('systemctl', 'start', 'metad')).code, 0);
    const moved = await quarantined();
    assert.match(moved, /^guest1\.json\.\d+\.[0-9a-f]+$/, 'moved to quarantine/, under a name of its own');
    const q = (await h.journal()).filter((e) => e.msg === 'state file quarantined').at(-1);
    assert.match(String(q?.['reason']), /unsupported format version 2/);
    assert.equal((await h.asAdmin('metadctl health')).stdout.split('\n')[0], `ok (0 instances), metad ${from}`);
    // Back as it was: the file moved home (what "upgrade again, and move the file back" means,
    // here with the version this daemon reads), so that the guest's clean-up below runs as printed.
    assert.equal((await h.asRoot('systemctl', 'stop', 'metad')).code, 0);
    assert.equal((await h.asRoot('mv', '/root/guest1.json', file)).code, 0);
    assert.equal((await h.asRoot('rm', `/var/lib/metad/quarantine/${moved}`)).code, 0);
    assert.equal((await h.asRoot('systemctl', 'start', 'metad')).code, 0);
    assert.equal(await served(), 'guest1');
  });

  await phase('the stand-in guest goes as printed: its tap, route and instance with it', async () => {
    await transcript(h, 'first-guest-done');
    assert.doesNotMatch((await h.hv.run('ip', ['-o', 'link', 'show'])).stdout, /md-guest1/);
    assert.equal((await h.hv.run('ip', ['route', 'show', 'proto', '171'])).stdout.trim(), '');
    assert.equal(await h.hv.tripCount(), 0, `packets off the host: ${(await h.hv.tripDestinations()).join(', ')}`);
  });
});
