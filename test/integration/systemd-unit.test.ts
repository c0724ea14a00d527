/**
 * systemd/metad.service is a valid unit (systemd-analyze verify: no unknown keys, executables
 * exist) and keeps its hardening: a unit that silently lost CapabilityBoundingSet or
 * ProtectSystem would still "work".
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { hasCommand, skipOrFail } from '../support/env.js';

const UNIT = fileURLToPath(new URL('../../../systemd/metad.service', import.meta.url));
const CLI = fileURLToPath(new URL('../../daemon/cli.js', import.meta.url));
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

test('systemd unit: hardened as documented', () => {
  const lines = readFileSync(UNIT, 'utf8').split('\n');
  for (const line of [
    'User=metad',
    'NoNewPrivileges=yes',
    'ProtectSystem=strict',
    'StateDirectory=metad',
    'RuntimeDirectory=metad',
    'CapabilityBoundingSet=CAP_NET_BIND_SERVICE CAP_NET_ADMIN',
    'AmbientCapabilities=CAP_NET_BIND_SERVICE CAP_NET_ADMIN',
    'PrivateTmp=yes',
    'LimitCORE=0',
    'MemorySwapMax=0',
    'ProtectProc=invisible',
    'ProcSubset=pid',
    'PrivateMounts=yes',
    'RemoveIPC=yes',
    'DevicePolicy=closed',
    'SocketBindDeny=tcp:9229',
    // Any unexpected exit restarts (SIGHUP used to end the daemon "cleanly" and stay down) but a bad config (exit 2).
    'Restart=always',
    'RestartPreventExitStatus=2',
    'ExecReload=/bin/kill -HUP $MAINPID',
    'Type=notify',
    'NotifyAccess=all',
    'EnvironmentFile=-/etc/default/metad',
  ])
    assert.ok(lines.includes(line), `missing ${line}`);
  // A bad config must end in exit 2 of the main process: RestartPreventExitStatus ignores ExecStartPre.
  assert.ok(!lines.some((l) => l.startsWith('ExecStartPre=')), 'no ExecStartPre (serve checks the config itself)');
  // A group that may not exist on the host stops the unit from starting; nothing needs libvirt yet.
  assert.ok(!lines.some((l) => l.startsWith('SupplementaryGroups=')), 'no SupplementaryGroups');
});

test('systemd unit: Documentation= names a file the install puts there', () => {
  const doc = /^Documentation=file:\/\/\/usr\/lib\/node_modules\/metad\/(\S+)$/m.exec(readFileSync(UNIT, 'utf8'));
  assert.ok(doc, 'Documentation= points into the npm -g install (/usr/lib/node_modules/metad/)');
  assert.ok(existsSync(join(ROOT, doc[1]!)), `${doc[1]!} is part of the package`);
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { name: string; files?: string[] };
  assert.equal(pkg.name, 'metad');
  assert.ok(pkg.files === undefined || pkg.files.some((f) => doc[1]!.startsWith(f)), 'npm packs the file');
});

test('systemd unit: systemd-analyze verify finds nothing to complain about', (t) => {
  if (skipOrFail(t, hasCommand('systemd-analyze') ? undefined : 'systemd-analyze not installed (package systemd)')) return;
  const dir = mkdtempSync(join(tmpdir(), 'metad-unit-'));
  try {
    chmodSync(CLI, 0o755);
    const copy = join(dir, 'metad.service');
    writeFileSync(copy, readFileSync(UNIT, 'utf8').replaceAll('/usr/bin/metad', CLI));
    const r = spawnSync('systemd-analyze', ['verify', copy], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr.trim(), '', 'no warnings (unknown keys, missing executables)');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
