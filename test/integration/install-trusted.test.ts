/**
 * Trusted and untrusted scripts at the same time (daemon/jobs/trusted.ts), through the real
 * daemon graph (install jobs on the fake hypervisor, the guest side played over the real guest
 * door): the OS definition's trusted `create` runs on the host for the run, reads what the guest
 * writes to the pipe and answers through it (several messages each way), gets a minimal
 * environment with only the secrets the definition grants, and its exit status is part of the
 * outcome: a failure ends the run at once, a run that succeeded waits for it, and the hard
 * deadline kills one that never exits. A definition without an untrusted side starts nothing.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { sampleInstance, startInstall, startTestDaemon, type TestDaemon } from '../support/daemon.js';
import { until } from '../support/wait.js';
import { pidAlive } from '../support/process.js';
import { REDACTED, type JobRecord } from '../../daemon/jobs/record.js';

const TRUSTED = `#!/bin/sh
# The trusted side: says hello, acknowledges each line the guest writes, says bye at "done".
env | sort >"./env-$INSTANCE_NAME.out"
# A careless trusted script prints what it was given: the log must not hold it.
echo "debug: pw=$OSP_PW granted=$OSP_GRANTED" >&2
echo "debug: plain line" >&2
echo "hello from the host"
n=0
while IFS= read -r line; do
  case $line in
    done) echo bye; exit "$OSP_EXIT_CODE" ;;
    metad-progress*) ;;
    *) n=$((n + 1)); echo "ack $n $line" ;;
  esac
done
sleep 1000
`;

describe('trusted and untrusted scripts', () => {
  let d: TestDaemon;
  let def: string;
  let n = 0;

  before(async () => {
    d = await startTestDaemon({ config: { appliance: { pollMs: 20 } } });
    def = join(d.dir, 'os', 'pair');
    mkdirSync(join(def, 'untrusted'), { recursive: true });
    for (const [p, body] of [
      [join(def, 'create'), TRUSTED],
      [join(def, 'untrusted', 'create'), '#!/bin/sh\necho the appliance side\n'],
    ] as const) {
      writeFileSync(p, body);
      chmodSync(p, 0o755);
    }
    writeFileSync(join(def, 'metad_trusted_secrets'), '# the trusted side may see this one\ngranted\n');
    const only = join(d.dir, 'os', 'hostonly');
    mkdirSync(only, { recursive: true });
    writeFileSync(join(only, 'create'), TRUSTED);
    chmodSync(join(only, 'create'), 0o755);
  });
  after(() => d.close());

  const job = async (name: string): Promise<JobRecord> => (await d.admin('GET', `/v1/instances/${name}/install`)).json as JobRecord;
  const start = async (exitCode: string, os = 'pair', timeoutSec?: number): Promise<{ name: string; ip: string; domain: string }> => {
    n++;
    const doc = sampleInstance(n, {
      os: { name: os },
      params: {
        public: { 'exit-code': exitCode, color: 'blue' },
        private: { pw: 'private-1' },
        secret: { granted: 'granted-1', other: 'other-1' },
      },
    });
    const name = String(doc.name);
    assert.equal((await d.admin('PUT', `/v1/instances/${name}`, doc)).status, 201);
    await startInstall(d, name, timeoutSec);
    await until(`${name} live`, async () => (await job(name)).state === 'booting');
    return { name, ip: (doc.comm as { ipv4: string }).ipv4, domain: (await job(name)).domain };
  };
  const write = async (ip: string, text: string): Promise<void> => {
    assert.equal((await d.guest(ip, 'POST', '/ganeti/latest/write', {}, text)).status, 204);
  };
  /** Reads until `want` lines came (long-polls). */
  const read = async (ip: string, want: number): Promise<string[]> => {
    const lines: string[] = [];
    while (lines.length < want) {
      const r = await d.guest(ip, 'GET', '/ganeti/latest/read?wait=5');
      assert.equal(r.status, 200);
      assert.ok(r.text !== '', `waited for line ${String(lines.length + 1)} of ${String(want)}`);
      lines.push(...r.text.split('\n').filter((l) => l !== ''));
    }
    return lines;
  };
  const ended = async (name: string): Promise<JobRecord> => {
    await until(`${name} ended`, async () => (await job(name)).outcome !== undefined);
    return job(name);
  };

  it('several messages each way through the pipe; a minimal environment with only the granted secret; succeeded', async () => {
    const { name, ip, domain } = await start('0');
    assert.deepEqual(await read(ip, 1), ['hello from the host']);
    await write(ip, 'one\n');
    assert.deepEqual(await read(ip, 1), ['ack 1 one']);
    await write(ip, 'two\nthree\n');
    assert.deepEqual(await read(ip, 2), ['ack 2 two', 'ack 3 three']);
    // What the trusted side took left the pipe: the admin door's reader finds nothing.
    const pipe = await d.admin('GET', `/v1/instances/${name}/pipe`);
    assert.equal(pipe.text, '', 'the trusted script is the reader');
    await write(ip, 'done\n');
    assert.deepEqual(await read(ip, 1), ['bye']);
    await write(ip, 'metad-progress v1 step=final status=succeeded\n');
    await until('the final line is recorded', async () => (await job(name)).lines.some((l) => l.includes('step=final')));
    d.hv.powerOff(domain);
    const rec = await ended(name);
    assert.equal(rec.outcome, 'succeeded', JSON.stringify(rec));
    const env = readFileSync(join(def, `env-${name}.out`), 'utf8');
    for (const want of [
      `INSTANCE_NAME=${name}`,
      'INSTANCE_OS=pair',
      'OS_API_VERSION=20',
      'DISK_COUNT=0',
      'OSP_COLOR=blue',
      'OSP_PW=private-1',
      'OSP_GRANTED=granted-1',
      'OSP_EXIT_CODE=0',
    ])
      assert.ok(env.split('\n').includes(want), `${want} in:\n${env}`);
    assert.doesNotMatch(env, /other-1|OSP_OTHER/, 'a secret the definition does not grant');
    // Its stderr is logged, but never a private or secret value it printed.
    const said = d.sink
      .records()
      .filter((r) => r.msg === 'install job trusted script said' && r.instance === name)
      .map((r) => String(r.line));
    assert.deepEqual(said, [REDACTED, 'debug: plain line']);
    assert.equal(d.sink.text.includes('private-1'), false);
    assert.equal(d.sink.text.includes('granted-1'), false);
    const names = env
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => l.split('=')[0]);
    // NODE_V8_COVERAGE: node itself passes it to every child while a coverage run measures metad.
    const extra = names.filter(
      (k) =>
        !/^(PATH|PWD|SHLVL|_|OLDPWD|NODE_V8_COVERAGE|OS_API_VERSION|INSTANCE_NAME|INSTANCE_OS|OS_VARIANT|DEBUG_LEVEL|DISK_COUNT|OSP_[A-Z0-9_]+)$/.test(
          k ?? '',
        ),
    );
    assert.deepEqual(extra, [], 'nothing of metad’s own environment');
  });

  it('a trusted script that fails ends the run at once, failed, with its exit code', async () => {
    const { name, ip, domain } = await start('3');
    await read(ip, 1);
    await write(ip, 'done\n');
    const rec = await ended(name);
    assert.equal(rec.outcome, 'failed');
    assert.equal(rec.reason, 'trusted create: exit 3');
    assert.equal(d.hv.running().includes(domain), false, 'the appliance was destroyed');
  });

  it('a run that succeeded waits for the trusted script; one still running at the deadline is killed: timed-out', async () => {
    const { name, ip, domain } = await start('0', 'pair', 3);
    await read(ip, 1);
    const pid = Number(
      d.sink
        .records()
        .filter((r) => r.msg === 'install job trusted script started' && r.instance === name)
        .at(-1)?.pid,
    );
    assert.ok(pid > 0);
    await write(ip, 'metad-progress v1 step=final status=succeeded\n');
    await until('the final line is recorded', async () => (await job(name)).lines.some((l) => l.includes('step=final')));
    d.hv.powerOff(domain); // the untrusted side is done; the trusted one never says "done"
    const rec = await ended(name);
    assert.equal(rec.outcome, 'timed-out', JSON.stringify(rec));
    assert.equal(rec.reason, 'trusted create: still running at the hard deadline');
    assert.equal(pidAlive(pid), false, 'the script was killed');
  });

  it('a parameter value no environment can hold (a NUL byte): the run fails at once, nothing is left running', async () => {
    n++;
    const doc = sampleInstance(n, { os: { name: 'pair' }, params: { public: { 'exit-code': '0', evil: 'a\u0000b' } } });
    const name = String(doc.name);
    assert.equal((await d.admin('PUT', `/v1/instances/${name}`, doc)).status, 201);
    await startInstall(d, name);
    const rec = await ended(name);
    assert.equal(rec.outcome, 'failed', JSON.stringify(rec));
    assert.equal(rec.reason, 'trusted create: cannot be started (a parameter value no environment can hold)');
    assert.deepEqual(
      d.hv.running().filter((x) => x === rec.domain),
      [],
      'no domain left',
    );
  });

  it('a definition without an untrusted create starts no trusted script', async () => {
    const before = d.sink.records().filter((r) => r.msg === 'install job trusted script started').length;
    const { name, domain } = await start('0', 'hostonly');
    d.hv.powerOff(domain);
    await ended(name);
    assert.equal(d.sink.records().filter((r) => r.msg === 'install job trusted script started').length, before);
  });
});
