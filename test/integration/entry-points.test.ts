/**
 * The two entry points as an operator meets them: `metad --version` and `metadctl --version`
 * come from package.json; the quick start's banner prints a metadctl command that works from
 * any directory and cannot resolve to someone else's package; the demo logs the instance it
 * registers.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { until } from '../support/wait.js';
import { stopChild } from '../support/process.js';

const DIST = fileURLToPath(new URL('../../', import.meta.url));
const ROOT = join(DIST, '..');

test('metad --version and metadctl --version print the version in package.json', (t) => {
  // A copy of the built program next to a package.json of another version.
  const dir = mkdtempSync(join(tmpdir(), 'metad-version-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  for (const sub of ['daemon', 'routes', 'cli', 'appliance']) cpSync(join(DIST, sub), join(dir, 'dist', sub), { recursive: true });
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'metad', version: '9.8.7-test', type: 'module' }));
  for (const cli of ['dist/daemon/cli.js', 'dist/cli/metadctl.js']) {
    assert.equal(
      execFileSync(process.execPath, [join(dir, cli), '--version'], { cwd: dir })
        .toString()
        .trim(),
      '9.8.7-test',
      cli,
    );
  }
});

test('quick start: the banner prints a metadctl command that works from anywhere, and the demo logs its instance', async (t) => {
  const elsewhere = mkdtempSync(join(tmpdir(), 'metad-elsewhere-'));
  t.after(() => rmSync(elsewhere, { recursive: true, force: true }));
  const child = spawn(process.execPath, [join(DIST, 'daemon', 'cli.js'), 'serve', '--demo', '--port', '0'], {
    cwd: elsewhere,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.after(() => stopChild(child)); // SIGTERM: the demo removes its temp dir
  let out = '';
  let err = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString('utf8')));
  child.stderr.on('data', (c: Buffer) => (err += c.toString('utf8')));
  await until('the demo banner', () => child.exitCode !== null || err.includes('admin door:'));
  const line = /^ {4}(.+ --socket \S+ list)$/m.exec(err)?.[1];
  assert.ok(line !== undefined, `the banner has a metadctl line: ${err}`);
  assert.doesNotMatch(line, /\bnpx\b/, 'never npx: outside the checkout it fetches a stranger package');
  assert.ok(line.startsWith(`${process.execPath} /`), `absolute node and script paths: ${line}`);
  // Run exactly what was printed, from an unrelated directory, with a PATH that has no metadctl.
  const listed = execFileSync('/bin/sh', ['-c', line], { cwd: elsewhere, env: { PATH: '/usr/bin:/bin' } }).toString();
  assert.match(listed, /^demo1\s+6f0c2b8e/m);
  const registered = out
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .find((e) => e.msg === 'instance registered');
  assert.deepEqual(
    registered && { instance: registered.instance, created: registered.created },
    { instance: 'demo1', created: true },
    'the demo logs the instance it registers',
  );
  child.kill('SIGTERM');
  await new Promise((r) => child.once('exit', r));
});
