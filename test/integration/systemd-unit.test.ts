/**
 * systemd/metad.service is a valid unit (systemd-analyze verify: no unknown keys, executables
 * exist) and keeps its hardening: a unit that silently lost CapabilityBoundingSet or
 * ProtectSystem would still "work".
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { hasCommand, skipOrFail } from '../support/env.js';

const UNIT = fileURLToPath(new URL('../../../systemd/metad.service', import.meta.url));
const CLI = fileURLToPath(new URL('../../daemon/cli.js', import.meta.url));

test('systemd unit: hardened as documented', () => {
  const unit = readFileSync(UNIT, 'utf8');
  for (const line of [
    'User=metad', 'Restart=on-failure', 'NoNewPrivileges=yes', 'ProtectSystem=strict', 'StateDirectory=metad', 'RuntimeDirectory=metad',
    'CapabilityBoundingSet=CAP_NET_BIND_SERVICE', 'AmbientCapabilities=CAP_NET_BIND_SERVICE', 'PrivateTmp=yes',
    'LimitCORE=0', 'MemorySwapMax=0',
  ]) assert.ok(unit.split('\n').includes(line), `missing ${line}`);
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
