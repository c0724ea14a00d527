/**
 * The documented production install (docs/operations.md, "Install") works as printed on a fresh
 * clone: `npm ci && npm pack` builds and packs the tarball (its `files` list: the compiled daemon,
 * CLI and appliance code, build.sh and the agent, the unit, the docs), and `npm install -g` of
 * that tarball gives working `metad` and `metadctl` commands (the block's other lines, from
 * `sudo npm install -g` on, run on a host booted by systemd: operator-live.test.ts). Installed into a temporary prefix
 * (npm_config_prefix) instead of /usr with sudo; the clone is of the committed tree.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { hasCommand, skipOrFail } from '../support/env.js';
import { hostExample } from '../support/doc-examples.js';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/** The first two lines of operations.md's install (the rest: operator-live.test.ts), without `sudo`. */
function documentedLines(): string[] {
  const lines = hostExample(readFileSync(join(ROOT, 'docs/operations.md'), 'utf8'), 'install')
    .body.split('\n')
    .slice(0, 2);
  assert.match(lines[0] ?? '', /^cd \/path\/to\/metad && npm ci && npm pack /);
  assert.match(lines[1] ?? '', /^sudo npm install -g \.\/metad-\*\.tgz /);
  return lines.map((l) => l.replace(/^sudo /, '').replace(/\s+#.*$/, ''));
}

test('the documented npm install works on a fresh clone: npm ci && npm pack, npm install -g of the tarball', async (t) => {
  if (skipOrFail(t, hasCommand('git') ? undefined : 'git missing')) return;
  const dir = mkdtempSync(join(tmpdir(), 'metad-npm-install-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const clone = join(dir, 'metad');
  await run('git', ['clone', '-q', ROOT, clone]);
  const prefix = join(dir, 'prefix');
  const env = { ...process.env, npm_config_prefix: prefix, npm_config_audit: 'false', npm_config_fund: 'false' };
  for (const line of documentedLines()) {
    const cmd = line.replace('/path/to/metad', clone);
    const r = await run('bash', ['-c', `set -euo pipefail\ncd '${clone}'\n${cmd}`], { env, maxBuffer: 64 << 20, timeout: 600_000 }).catch(
      (e: unknown) => e as { stdout: string; stderr: string; code: number },
    );
    assert.ok(!('code' in r) || r.code === 0, `${cmd}\n${'stderr' in r ? r.stderr.slice(-3000) : ''}`);
  }
  const bin = join(prefix, 'bin');
  const lib = join(prefix, 'lib', 'node_modules', 'metad');
  for (const f of [
    'dist/daemon/cli.js',
    'dist/cli/metadctl.js',
    'appliance/build.sh',
    'appliance/build-lib.sh',
    'appliance/build-debian.sh',
    'appliance/install-image.sh',
    'appliance/agent/agent.sh',
    'appliance/agent/osdef.sh',
    'systemd/metad.service',
    'systemd/config.yaml',
    'docs/operations.md',
  ])
    assert.ok(existsSync(join(lib, f)), `${f} installed`);
  for (const f of ['dist/test', 'dist/bench', 'test', 'node_modules/typescript'])
    assert.ok(!existsSync(join(lib, f)), `${f} not installed`);
  const help = await run(join(bin, 'metadctl'), ['--help'], { env });
  assert.match(help.stdout, /Usage: metadctl/);
  const schema = await run(join(bin, 'metad'), ['schema'], { env });
  assert.equal((JSON.parse(schema.stdout) as { title: string }).title, 'metad instance');
  const config = join(dir, 'config.yaml');
  await run('bash', ['-c', `printf 'guest:\\n  listen:\\n    - { host: 127.0.0.1, port: 8169 }\\n' > '${config}'`]);
  const check = await run(join(bin, 'metad'), ['check-config', config], { env });
  assert.equal(
    (JSON.parse(check.stdout) as { guest: { listen: { port: number }[] } }).guest.listen[0]?.port,
    8169,
    'the effective configuration',
  );
});
