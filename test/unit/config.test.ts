/** Config: defaults filled, every problem listed, frozen, env overrides. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { applyEnv, buildConfig, ConfigError, loadConfig } from '../../daemon/config/config.js';

/** The problems buildConfig reports for `raw` (none: []). */
function problems(raw: unknown): string[] {
  try {
    buildConfig(raw);
    return [];
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    return err.problems;
  }
}

test('config: defaults', () => {
  const c = buildConfig({});
  assert.equal(c.stateDir, '/var/lib/metad');
  assert.equal(c.admin.socket, '/run/metad/admin.sock');
  assert.equal(c.admin.socketMode, '0660');
  assert.deepEqual(c.guest.listen, [{ host: '169.254.169.254', port: 80 }]);
  assert.deepEqual(c.guest.commRange, ['169.254.0.0/16']);
  assert.equal(c.secrets.defaultTtlSec, 7200);
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
    assert.match(err.message, /^ {2}\/bogus: unknown key \(known here: stateDir, keyFile, /m);
    assert.match(err.message, /\/guest\/commRange/);
    assert.match(err.message, /\/guest\/rateLimit\/burst/);
  }
});

test('config: environment overrides win over the file', () => {
  const c = buildConfig(
    applyEnv({ stateDir: '/a', admin: { socket: '/b' } }, { METAD_STATE_DIR: '/x', METAD_ADMIN_SOCKET: '/y', METAD_LOG_LEVEL: 'debug' }),
  );
  assert.equal(c.stateDir, '/x');
  assert.equal(c.admin.socket, '/y');
  assert.equal(c.log.level, 'debug');
});

test('config: what serve would refuse, check-config refuses too', () => {
  for (const commRange of ['10.0.0.0/33', '999.0.0.0/8', '10.0.0.0/']) {
    assert.throws(() => buildConfig({ guest: { commRange } }), /commRange/, commRange);
  }
  assert.throws(() => buildConfig({ guest: { headersTimeoutMs: 20000, requestTimeoutMs: 10000 } }), /headersTimeoutMs: must not exceed/);
  assert.doesNotThrow(() => buildConfig({ guest: { commRange: '127.0.0.0/8' } }));
});

test('config: network.ec2Ipv6 (fd00:ec2::254) needs routed mode', () => {
  assert.throws(() => buildConfig({ network: { mode: 'bridged', ec2Ipv6: true } }), /\/network\/ec2Ipv6: needs \/network\/mode routed/);
  assert.throws(() => buildConfig({ network: { ec2Ipv6: true } }), /\/network\/ec2Ipv6: needs \/network\/mode routed/);
  assert.equal(buildConfig({ network: { mode: 'routed', ec2Ipv6: true } }).network.ec2Ipv6, true);
  assert.equal(buildConfig({}).network.ec2Ipv6, false, 'off by default');
});

test('config: guest.listen[].host must be an IP address', () => {
  assert.deepEqual(problems({ guest: { listen: [{ host: '127.0.0.1' }, { host: 'not-an-ip', port: 8080 }] } }), [
    '/guest/listen/1/host: must be an IP address (IPv4 or IPv6)',
  ]);
  assert.deepEqual(problems({ guest: { listen: [{ host: '::1', port: 0 }, { host: 'fd00::1' }] } }), []);
});

test('config: an unknown key is named with its path, at any depth', () => {
  assert.deepEqual(problems({ guest: { rateLimit: { burts: 5 } }, admin: { sokcet: '/x' } }).sort(), [
    '/admin/sokcet: unknown key (known here: socket, socketMode, maxBodyBytes)',
    '/guest/rateLimit/burts: unknown key (known here: ratePerSec, burst)',
  ]);
  // A key that is not a plain name is quoted and cut, never printed raw.
  const [line] = problems({ ['x\n'.repeat(50)]: 1 });
  assert.match(line ?? '', /^\/"x\\nx\\n.*": unknown key/);
  assert.ok(!line?.includes('\n'));
});

test('config: type errors and cross-field errors come in one report', () => {
  const p = problems({
    stateDir: 5,
    log: { level: 'loud' },
    guest: {
      headersTimeoutMs: 20000,
      requestTimeoutMs: 10000,
      listen: [
        { host: '127.0.0.1', port: 81 },
        { host: '127.0.0.1', port: 81 },
      ],
    },
  });
  assert.deepEqual(p.sort(), [
    '/guest/headersTimeoutMs: must not exceed /guest/requestTimeoutMs',
    '/guest/listen/1: same host and port as /guest/listen/0',
    '/log/level: must be one of fatal, error, warn, info, debug, trace, silent',
    '/stateDir: must be string (quote it: "5"; unquoted, YAML reads a number)',
  ]);
  // Cross-field checks survive sections of the wrong type.
  assert.deepEqual(problems({ guest: 5 }), ['/guest: must be object']);
  assert.deepEqual(problems({ guest: { listen: [5, null] } }), ['/guest/listen/0: must be object', '/guest/listen/1: must be object']);
  assert.deepEqual(problems({ guest: { listen: [{ port: 80 }] } }), ['/guest/listen/0/host: is required']);
});

test('config: loadConfig reads the file, applies the environment, validates (serve and check-config alike)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'metad-cfg-'));
  try {
    const empty = join(dir, 'empty.yaml');
    writeFileSync(empty, '');
    assert.equal(loadConfig({ file: empty }, {}).stateDir, '/var/lib/metad');
    assert.equal(loadConfig({ file: empty }, { METAD_STATE_DIR: '/s' }).stateDir, '/s');
    const scalar = join(dir, 'scalar.yaml');
    writeFileSync(scalar, 'hello\n');
    assert.throws(
      () => loadConfig({ file: scalar }, { METAD_STATE_DIR: '/s' }),
      (e: unknown) => e instanceof ConfigError && e.problems.join() === '/: must be object',
    );
    assert.equal(loadConfig({ raw: { stateDir: '/r' } }, {}).stateDir, '/r');
    assert.equal(loadConfig({}, {}).stateDir, '/var/lib/metad');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('config: an environment override into a section of the wrong type is reported, not a crash', () => {
  assert.deepEqual(problems(applyEnv({ admin: 5 }, { METAD_ADMIN_SOCKET: '/y' })), ['/admin: must be object']);
  assert.deepEqual(problems(applyEnv([1], { METAD_STATE_DIR: '/x' })), ['/: must be object']);
});

test('config: a secret TTL shorter than the install deadline is refused; the deadline fits the maximum', () => {
  assert.ok(buildConfig({}).secrets.defaultTtlSec * 1000 >= buildConfig({}).appliance.installTimeoutMs, 'the defaults agree');
  assert.deepEqual(problems({ secrets: { defaultTtlSec: 5400 } }), [
    '/secrets/defaultTtlSec: must not be shorter than /appliance/installTimeoutMs (a secret would expire in the middle of an install)',
  ]);
  assert.deepEqual(problems({ secrets: { defaultTtlSec: 60 }, appliance: { installTimeoutMs: 60_000 } }), []);
  assert.deepEqual(problems({ appliance: { installTimeoutMs: 20_000_000 }, secrets: { defaultTtlSec: 20_000 } }), [
    '/appliance/installTimeoutMs: must not exceed /appliance/maxTimeoutMs',
  ]);
});

test('config: YAML 1.2 traps are named: yes/no are strings, an unquoted mode is a number', () => {
  const dir = mkdtempSync(join(tmpdir(), 'metad-cfg-'));
  try {
    const file = join(dir, 'c.yaml');
    writeFileSync(file, 'network:\n  hopLimit: yes\nadmin:\n  socketMode: 660\n');
    assert.throws(
      () => loadConfig({ file }, {}),
      (e: unknown) => {
        assert.ok(e instanceof ConfigError);
        assert.ok(
          e.problems.some((p) => p.startsWith('/network/hopLimit: must be boolean (YAML 1.2: write true or false; "yes" is a string)')),
          e.problems.join('\n'),
        );
        assert.ok(
          e.problems.some((p) => p.startsWith('/admin/socketMode: must be string (quote it: "660"')),
          e.problems.join('\n'),
        );
        return true;
      },
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('config: a file that does not parse says where, without a dangling colon (check-config and SIGHUP alike)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'metad-cfg-'));
  try {
    const file = join(dir, 'broken.yaml');
    writeFileSync(file, 'guest: [\n');
    assert.throws(
      () => loadConfig({ file }, {}),
      (e: unknown) => {
        assert.ok(e instanceof ConfigError);
        assert.match(e.problems[0] ?? '', /^cannot parse .*broken\.yaml: .*at line \d+, column \d+$/);
        return true;
      },
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
