/** A configuration reload's plan (daemon/config/reload.ts): which changed keys apply live, which need a restart. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildConfig } from '../../daemon/config/config.js';
import { planReload } from '../../daemon/config/reload.js';

const base = { stateDir: '/tmp/x', guest: { listen: [{ host: '127.0.0.1', port: 8169 }], commRange: '127.0.0.0/8' } };

test('reload plan: live keys apply, the others are listed and keep their running value', () => {
  const running = buildConfig(base);
  const next = buildConfig({
    ...base,
    stateDir: '/tmp/y',
    log: { level: 'debug' },
    guest: {
      ...base.guest,
      listen: [{ host: '127.0.0.2', port: 8169 }],
      rateLimit: { burst: 5 },
      headersTimeoutMs: 1000,
      maxConnectionsPerSource: 8,
    },
    secrets: { defaultTtlSec: 9000 },
  });
  const plan = planReload(running, next);
  assert.deepEqual(plan.applied, ['guest.headersTimeoutMs', 'guest.maxConnectionsPerSource', 'guest.rateLimit.burst', 'log.level']);
  assert.deepEqual(plan.needsRestart, ['guest.listen', 'secrets.defaultTtlSec', 'stateDir']);
  assert.equal(plan.effective.log.level, 'debug');
  assert.equal(plan.effective.guest.rateLimit.burst, 5);
  assert.equal(plan.effective.stateDir, '/tmp/x', 'a key that needs a restart keeps its running value');
  assert.deepEqual(plan.effective.guest.listen, running.guest.listen);
  assert.ok(Object.isFrozen(plan.effective.guest));
  // Reloading the same file again: the live keys are in effect, the rest still waits for a restart.
  const again = planReload(plan.effective, next);
  assert.deepEqual(again.applied, []);
  assert.deepEqual(again.needsRestart, ['guest.listen', 'secrets.defaultTtlSec', 'stateDir']);
});

test('reload plan: a key that appears or disappears counts as changed', () => {
  const running = buildConfig(base);
  const plan = planReload(running, buildConfig({ ...base, keyFile: '/etc/metad/k' }));
  assert.deepEqual(plan.applied, []);
  assert.deepEqual(plan.needsRestart, ['keyFile']);
  assert.equal(planReload(buildConfig({ ...base, keyFile: '/k' }), running).needsRestart[0], 'keyFile');
});
