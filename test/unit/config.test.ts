/** Config: defaults filled, every problem listed, frozen, env overrides. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { applyEnv, buildConfig, ConfigError } from '../../daemon/config.js';

test('config: defaults', () => {
  const c = buildConfig({});
  assert.equal(c.stateDir, '/var/lib/metad');
  assert.equal(c.admin.socket, '/run/metad/admin.sock');
  assert.equal(c.admin.socketMode, '0660');
  assert.deepEqual(c.guest.listen, [{ host: '169.254.169.254', port: 80 }]);
  assert.equal(c.guest.commRange, '169.254.0.0/16');
  assert.equal(c.secrets.defaultTtlSec, 5400);
  assert.equal(c.pipe.maxBytes, 1048576);
  assert.ok(Object.isFrozen(c.guest.listen[0]));
});

test('config: every problem is listed', () => {
  try {
    buildConfig({ stateDir: 5, bogus: true, guest: { commRange: 'nope', rateLimit: { burst: 0 } } });
    assert.fail('should throw');
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    assert.ok(err.problems.length >= 4, err.message);
    assert.match(err.message, /\/stateDir/);
    assert.match(err.message, /additional properties/);
    assert.match(err.message, /\/guest\/commRange/);
    assert.match(err.message, /\/guest\/rateLimit\/burst/);
  }
});

test('config: environment overrides win over the file', () => {
  const c = buildConfig(applyEnv({ stateDir: '/a', admin: { socket: '/b' } }, { METAD_STATE_DIR: '/x', METAD_ADMIN_SOCKET: '/y', METAD_LOG_LEVEL: 'debug' }));
  assert.equal(c.stateDir, '/x');
  assert.equal(c.admin.socket, '/y');
  assert.equal(c.log.level, 'debug');
});

test('config: what serve would refuse, check-config refuses too', () => {
  for (const commRange of ['10.0.0.0/33', '999.0.0.0/8', '10.0.0.0/']) {
    assert.throws(() => buildConfig({ guest: { commRange } }), /commRange/, commRange);
  }
  assert.throws(() => buildConfig({ guest: { headersTimeoutMs: 20000, requestTimeoutMs: 10000 } }), /headersTimeoutMs must not exceed/);
  assert.doesNotThrow(() => buildConfig({ guest: { commRange: '127.0.0.0/8' } }));
});
