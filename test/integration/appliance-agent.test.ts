/**
 * The agent's HTTP client (appliance/agent/http.sh) run by the exact busybox the appliance boots
 * with, against the real guest door of a test daemon (loopback; the instance is 127.0.0.1), for
 * an instance with `ec2.imdsV2: required`: every request carries a session token PUT through
 * `nc` (busybox wget cannot PUT), Ganeti reads and the pipe included; the token is renewed
 * before it expires; a token the daemon no longer accepts (a restarted metad) is replaced;
 * refusals for good end at once, anything else is retried until the window closes; the outage
 * start (the agent's budget after the claim) is kept until a request succeeds.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { skipOrFail } from '../support/env.js';
import { applianceMissing, testAppliance } from '../support/appliance.js';
import { sampleInstance, startTestDaemon, type TestDaemon } from '../support/daemon.js';
import { applianceSourceDir } from '../../appliance/image.js';
import { EV } from '../../daemon/log/events.js';

const http = join(applianceSourceDir(), 'agent', 'http.sh');

/** Runs `script` in busybox sh after sourcing http.sh; stdout, stderr and the exit code. */
async function agentSh(
  busybox: string,
  vars: Record<string, string>,
  script: string,
): Promise<{ code: number | null; out: string; err: string }> {
  const set = Object.entries(vars)
    .map(([k, v]) => `${k}='${v}'`)
    .join('; ');
  // Only busybox's applets: a PATH of its applet links, as in the appliance.
  const child = spawn(busybox, ['sh', '-c', `${set}; . ${http}; ${script}`], {
    env: { PATH: vars['APPLETS'] ?? '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const code = await new Promise<number | null>((r) => child.once('close', r));
  return { code, out, err };
}

/** A directory of busybox applet links (`busybox --install -s DIR`), as the appliance's /bin. */
async function applets(busybox: string, dir: string): Promise<string> {
  const child = spawn(busybox, ['--install', '-s', dir], { stdio: 'ignore' });
  assert.equal(await new Promise((r) => child.once('close', r)), 0);
  return dir;
}

const refused401 = (d: TestDaemon): number =>
  d.sink.records().filter((r) => r['msg'] === EV.guestRefused && r['status'] === 401 && r['instance'] === 'vm1').length;

test('the agent with an IMDSv2-required instance: token on every request (Ganeti and the pipe too), renewed before expiry, replaced when refused; retries bounded', async (t) => {
  if (skipOrFail(t, applianceMissing())) return;
  const { busybox } = await testAppliance();
  const dir = await mkdtemp(join(tmpdir(), 'metad-agent-http-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const d = await startTestDaemon();
  t.after(() => d.close());
  const put = await d.admin(
    'PUT',
    '/v1/instances/vm1',
    sampleInstance(1, { comm: { mac: '52:54:00:00:00:01', ipv4: '127.0.0.1' }, ec2: { imdsV2: 'required' } }),
  );
  assert.equal(put.status, 201, put.text);
  const url = `http://127.0.0.1:${String(d.guestPort)}`;
  const vars = { URL: url, T: '5', TTL: '21600', ERRF: join(dir, 'err'), APPLETS: await applets(busybox, dir) };
  const base = `${url}/ganeti/latest`;

  // Refusals are logged sampled (one a second per instance), but the first one always is.
  const before = 0;

  // A Ganeti read and a pipe write, each with the token the agent PUT through nc.
  const r = await agentSh(
    busybox,
    vars,
    `request $(($(now) + 10)) -O - ${base}/meta_data.json || exit 4; printf '%s\\n' "$TOKEN"; printf '%s\\n' "$BODY"; ` +
      `request $(($(now) + 10)) -O /dev/null --post-data='metad-progress v1 step=net status=ok
' ${base}/write || exit 5; printf '%s\\n' "$TOKEN"`,
  );
  assert.equal(r.code, 0, r.err);
  const [token, meta, tokenAfter] = r.out.split('\n');
  assert.match(token ?? '', /^[A-Za-z0-9_-]{32}$/, 'a token was PUT');
  assert.equal(tokenAfter, token, 'one token for both requests');
  assert.equal((JSON.parse(meta ?? '') as { name: string }).name, 'vm1');
  const pipe = await d.admin('GET', '/v1/instances/vm1/pipe');
  assert.equal(pipe.text, 'metad-progress v1 step=net status=ok\n', 'the pipe write went through');
  assert.equal(refused401(d), before, 'no request went without a valid token');

  // Renewal: with a 6 s TTL the token is renewed 5 s after it was PUT, while the old one is still valid.
  const renew = await agentSh(
    busybox,
    { ...vars, TTL: '6' },
    `request $(($(now) + 10)) -O /dev/null ${base}/meta_data.json || exit 4; echo "$TOKEN"; sleep 5; ` +
      `request $(($(now) + 10)) -O /dev/null ${base}/meta_data.json || exit 5; echo "$TOKEN"`,
  );
  assert.equal(renew.code, 0, renew.err);
  const [t1, t2] = renew.out.split('\n');
  assert.match(t1 ?? '', /^[A-Za-z0-9_-]{32}$/);
  assert.match(t2 ?? '', /^[A-Za-z0-9_-]{32}$/);
  assert.notEqual(t2, t1, 'renewed');
  assert.equal(refused401(d), before, 'renewed before it expired: never refused');

  // A token the daemon does not accept (what a restarted metad answers for the old one): 401,
  // dropped, a new one PUT, the request retried and answered.
  const stale = 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'.slice(0, 32);
  const replaced = await agentSh(
    busybox,
    vars,
    `TOKEN=${stale}; TOKEN_RENEW_AT=$(($(now) + 3600)); request $(($(now) + 10)) -O - ${base}/meta_data.json || exit 4; echo "$TOKEN"`,
  );
  assert.equal(replaced.code, 0, replaced.err);
  assert.notEqual(replaced.out.trim(), stale);
  assert.match(replaced.out.trim(), /^[A-Za-z0-9_-]{32}$/);
  assert.ok(refused401(d) > before, 'the stale token was refused first');

  // The requirement is real: busybox wget without a token is refused on the Ganeti paths.
  const plain = await agentSh(busybox, vars, `wget -q -O - ${base}/meta_data.json`);
  assert.notEqual(plain.code, 0);
  assert.match(plain.err, /401 Unauthorized/);

  // A refusal for good (404) ends at once with 2, not at the end of a 60 s window; no answer at
  // all (nothing listens) is retried until the window closes, then 1.
  const gone = await agentSh(busybox, vars, `request $(($(now) + 60)) -O - ${base}/os/scripts/nope; echo "rc=$?"`);
  assert.equal(gone.out.trim(), 'rc=2');
  const down = await agentSh(
    busybox,
    { ...vars, URL: 'http://127.0.0.1:9' },
    `start=$(now); request $(($(now) + 2)) -O - http://127.0.0.1:9/x; echo "rc=$? tried=$(($(now) - start)) outage=\${OUTAGE_SINCE:+yes}"; ` +
      `URL=${url}; request $(($(now) + 10)) -O /dev/null ${base}/meta_data.json; echo "rc=$? outage=\${OUTAGE_SINCE:+yes}"`,
  );
  const m = /^rc=(\d) tried=(\d+) outage=yes\nrc=0 outage=$/.exec(down.out.trim());
  assert.ok(m, down.out);
  assert.equal(m[1], '1');
  assert.ok(Number(m[2]) >= 2, 'kept trying until the window closed');
});
