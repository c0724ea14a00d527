/**
 * The agent's HTTP client (appliance/agent/http.sh) run by the exact busybox the appliance boots
 * with, against the real guest door of a test daemon (loopback; the instance is 127.0.0.1), for
 * an instance with `ec2.imdsV2: required`: every request carries a session token PUT through
 * `nc` (busybox wget cannot PUT), Ganeti reads and the pipe included; the token is renewed
 * before it expires; a token the daemon no longer accepts (a restarted metad) is replaced;
 * refusals for good end at once, anything else is retried until the window closes; the outage
 * start (the agent's budget after the claim) is kept until a request succeeds. And Ganeti's OS
 * install package (appliance/agent/package.sh): Ganeti's own ExportOS builds it with a hostile
 * environment file, Ganeti's own code pushes the instance with a secret parameter, the agent's
 * functions fetch, unpack and run `os/$OS_SCRIPT` with the package's environment plus the secret,
 * and nothing in the file is executed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { skipOrFail } from '../support/env.js';
import { applianceMissing, testAppliance } from '../support/appliance.js';
import { sampleInstance, startTestDaemon, type TestDaemon } from '../support/daemon.js';
import { applianceSourceDir } from '../../appliance/image.js';
import { EV } from '../../daemon/log/events.js';
import { NOOP_OS, ganetiFeed, ganetiMissing, nodeRoot } from '../support/ganeti.js';
import { COMM_NIC_PREFIX } from '../../daemon/feeds/ganeti-map.js';

const http = join(applianceSourceDir(), 'agent', 'http.sh');
const packageSh = join(applianceSourceDir(), 'agent', 'package.sh');
const jsonAwk = join(applianceSourceDir(), 'agent', 'json.awk');
const osdefSh = join(applianceSourceDir(), 'agent', 'osdef.sh');

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
  const child = spawn(busybox, ['sh', '-c', `${set}; . ${http}; . ${packageSh}; . ${osdefSh}; ${script}`], {
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

test("Ganeti's OS install package: unpacked, its environment exported without evaluating anything, the secret parameters merged, os/$OS_SCRIPT run", async (t) => {
  if (skipOrFail(t, applianceMissing() ?? ganetiMissing())) return;
  const { busybox } = await testAppliance();
  const dir = await mkdtemp(join(tmpdir(), 'metad-agent-pkg-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const SECRET = 'sEcr3t-only-in-the-script-env';
  // An untrusted OS (Ganeti runs an OS in a helper VM only when it has create_untrusted): Debian's
  // ganeti-os-noop plus a create_untrusted that records its environment.
  const osDir = join(dir, 'os', 'noop');
  mkdirSync(osDir, { recursive: true });
  for (const f of readdirSync(NOOP_OS)) copyFileSync(join(NOOP_OS, f), join(osDir, f));
  const envOut = join(dir, 'env.out');
  writeFileSync(join(osDir, 'create_untrusted'), `#!/bin/sh\nenv > '${envOut}'\necho "cwd=$(pwd)" >> '${envOut}'\n`);
  chmodSync(join(osDir, 'create_untrusted'), 0o755);
  chmodSync(osDir, 0o755);

  const node = nodeRoot(join(dir, 'node'));
  const d = await startTestDaemon({ config: { ganeti: { socket: node.metadSocket, pidFile: node.metadPidFile } } });
  t.after(() => d.close());
  await d.daemon.ganeti?.listen();
  const inst = {
    name: 'web1',
    uuid: '6f1c0e9a-1b2c-4d3e-8f40-5a6b7c8d9e01',
    os: 'noop',
    hypervisor: 'kvm',
    beparams: { maxmem: 256, vcpus: 1 },
    osparams: { image: 'debian-12' },
    osparams_private: { 'root-password': 'pr1v' },
    nics: [
      {
        name: `${COMM_NIC_PREFIX}web1`,
        mac: '52:54:00:00:00:01',
        ip: '127.0.0.1',
        nicparams: { mode: 'routed', link: 'communication_rt' },
        uuid: '6f1c0e9a-1b2c-4d3e-8f40-5a6b7c8d9ea2',
      },
    ],
    disks: [],
  };
  // Ganeti's ExportOS, with the master's helper-VM environment and hostile entries on top (what
  // a broken or hostile node would write: ExportOS writes `name=value` lines as they are).
  const pwned = join(dir, 'pwned');
  const [exported] = await ganetiFeed(node, [
    {
      op: 'export-os',
      instance: inst,
      helper: { script: 'create_untrusted', disks: 1 },
      os_search_path: [join(dir, 'os')],
      env: {
        EVIL: `$(touch ${pwned}-1)`,
        QUOTES: `it's "q" \`touch ${pwned}-2\` $HOME a  b`,
        [`A;touch ${pwned}-3;B`]: '1',
        lower: '1',
        OSP_MULTI: `x\nOSP_INJECTED=$(touch ${pwned}-4)`,
      },
    },
  ]);
  const pkg = exported?.result as string;
  t.after(() => rmSync(pkg, { force: true }));
  const [pushed] = await ganetiFeed(node, [
    {
      op: 'update',
      instance: { ...inst, osparams: { ...inst.osparams, 'os-install-package': pkg } },
      osparams_secret: { 'ssh-host-key': SECRET },
    },
  ]);
  assert.deepEqual(pushed, { warnings: [] });

  const url = `http://127.0.0.1:${String(d.guestPort)}`;
  const base = `${url}/ganeti/latest`;
  const vars = { URL: url, T: '5', TTL: '300', ERRF: join(dir, 'err'), APPLETS: await applets(busybox, await mkdtemp(join(dir, 'bin-'))) };
  const r = await agentSh(
    busybox,
    vars,
    `request $(($(now) + 20)) -O - ${base}/os/parameters.json || exit 4; ` +
      `env_secret=$(printf '%s' "$BODY" | awk -v mode=params -v only=secret -f ${jsonAwk}) || exit 5; ` +
      `request $(($(now) + 20)) -O ${dir}/p.tgz ${base}/os/os-install-package || exit 6; ` +
      `package_unpack ${dir}/p.tgz ${dir}/pkg || exit 7; s=$(package_script ${dir}/pkg) || exit 8; echo "script=$s"; ` +
      `echo "osp=$(package_osp_count ${dir}/pkg "$env_secret")"; export AGENT_ONLY=1; ` +
      `package_run ${dir}/pkg "$env_secret"; echo "rc=$?"; echo "agent=$AGENT_ONLY path=$PATH"`,
  );
  assert.equal(r.code, 0, r.err + r.out);
  const lines = r.out.trim().split('\n');
  assert.equal(lines[0], 'script=create_untrusted');
  // image, root-password (private: in the package's environment), os-install-package, MULTI,
  // and the secret from parameters.json.
  assert.equal(lines[1], 'osp=5');
  assert.equal(lines[2], 'rc=0');
  assert.equal(lines[3], `agent=1 path=${vars.APPLETS}`, "the agent's own shell is untouched");
  const env = readFileSync(envOut, 'utf8');
  const has = (l: string): boolean => env.split('\n').includes(l);
  for (const l of [
    `OSP_SSH_HOST_KEY=${SECRET}`,
    'OSP_ROOT_PASSWORD=pr1v',
    'OSP_IMAGE=debian-12',
    'OS_SCRIPT=create_untrusted',
    'DISK_0_PATH=/dev/vdb',
    'INSTANCE_NAME=web1',
    'HYPERVISOR=kvm',
    `EVIL=$(touch ${pwned}-1)`,
    `QUOTES=it's "q" \`touch ${pwned}-2\` $HOME a  b`,
    'OSP_MULTI=x',
    `OSP_INJECTED=$(touch ${pwned}-4)`,
    `cwd=${dir}/pkg/os`,
  ])
    assert.ok(has(l), `${l} in the script's environment:\n${env}`);
  assert.ok(!/^AGENT_ONLY=/m.test(env), "the agent's exported variables are dropped");
  assert.ok(!/^lower=|^A;/m.test(env), 'names that are not shell names are skipped');
  assert.deepEqual(
    readdirSync(dir).filter((f) => f.startsWith('pwned')),
    [],
    'nothing in the environment file ran',
  );
  // The secret was served once, to this read: the window is claimed.
  const jobs = (await d.admin('GET', '/v1/jobs')).json as { jobs: { kind?: string; instance: string; state: string }[] };
  assert.equal(jobs.jobs.find((j) => j.kind === 'ganeti-secrets' && j.instance === 'web1')?.state, 'claimed');

  // What the agent refuses: no OS_SCRIPT, a script outside os/, a script the package lacks
  // (Debian's noop has only `create`: Ganeti treats it as trusted and never boots a helper VM).
  for (const [name, environment] of [
    ['none', 'OSP_A=1\n'],
    ['escape', 'OS_SCRIPT=../environment\n'],
    ['dot', 'OS_SCRIPT=.hidden\n'],
    ['missing', 'OS_SCRIPT=create_untrusted\n'],
  ] as const) {
    const p = join(dir, `bad-${name}`);
    mkdirSync(join(p, 'os'), { recursive: true });
    copyFileSync(join(NOOP_OS, 'create'), join(p, 'os', 'create'));
    writeFileSync(join(p, 'os', '.hidden'), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
    writeFileSync(join(p, 'environment'), environment);
    const bad = await agentSh(busybox, vars, `package_script ${p}; echo " rc=$?"; package_run ${p} ''; echo "run=$?"`);
    assert.equal(bad.out.trim(), 'rc=1\nrun=127', `${name}: ${bad.out}`);
  }
  assert.ok(!existsSync(`${pwned}-1`));
});

test('the OS definition in the appliance: fetched whole (the last name too), its API version and default variant worked out as Ganeti does, its scripts run in their directory', async (t) => {
  if (skipOrFail(t, applianceMissing())) return;
  const { busybox } = await testAppliance();
  const d = await startTestDaemon();
  const dir = await mkdtemp(join(tmpdir(), 'metad-agent-osdef-'));
  t.after(async () => {
    await d.close();
    await rm(dir, { recursive: true, force: true });
  });
  const osDir = join(d.dir, 'os', 'multi');
  mkdirSync(osDir, { recursive: true });
  writeFileSync(join(osDir, 'ganeti_api_version'), '5\n10\n 15\n');
  writeFileSync(join(osDir, 'variants.list'), '\nbuster\nbullseye\n');
  writeFileSync(join(osDir, 'common.sh'), 'greet() { echo "common says hi"; }\n');
  // The last name in the listing (sorted): a listing without a final newline still yields it.
  writeFileSync(
    join(osDir, 'zz-create'),
    '#!/bin/sh\n. ./common.sh\ngreet\necho "api=$OS_API_VERSION os=$OS_NAME variant=$OS_VARIANT hv=$HYPERVISOR debug=$DEBUG_LEVEL"\n',
  );
  const put = await d.admin(
    'PUT',
    '/v1/instances/vm1',
    sampleInstance(1, { comm: { mac: '52:54:00:00:00:01', ipv4: '127.0.0.1' }, os: { name: 'multi' } }),
  );
  assert.equal(put.status, 201, put.text);
  const url = `http://127.0.0.1:${String(d.guestPort)}`;
  const work = join(dir, 'work');
  mkdirSync(work);
  const vars = {
    URL: url,
    T: '5',
    TTL: '300',
    ERRF: join(dir, 'err'),
    APPLETS: await applets(busybox, await mkdtemp(join(dir, 'bin-'))),
    BASE: `${url}/ganeti/latest`,
    WORK: work,
  };
  const r = await agentSh(
    busybox,
    vars,
    'window() { echo $(($(now) + 20)); }; osdef_fetch || exit 3; echo "files=$OSDEF_FILES"; INSTANCE_OS=multi+; ' +
      'osdef_env "$WORK" || exit 4; osdef_run zz-create; echo "rc=$?"; ' +
      'for n in create common.sh variants.list a-b_c.d ../x .x Create "" x/y; do osdef_name_ok "$n" && echo "ok:$n"; done; ' +
      'printf "20\\n" >"$WORK/ganeti_api_version"; unset OS_VARIANT; osdef_env "$WORK"; echo "api=$OS_API_VERSION variant=$OS_VARIANT"; ' +
      'printf "10\\n" >"$WORK/ganeti_api_version"; OS_VARIANT=keep; osdef_env "$WORK"; echo "api=$OS_API_VERSION variant=${OS_VARIANT-unset}"; ' +
      'printf "4\\n30\\n" >"$WORK/ganeti_api_version"; osdef_env "$WORK"; echo "refused=$?"; ' +
      'printf "#! /bin/no-such-shell -e\\necho\\n" >"$WORK/b"; m=$(osdef_interpreter b); echo "missing=$m rc=$?"; ' +
      'printf "#!/bin/sh\\n" >"$WORK/c"; m=$(osdef_interpreter c); echo "missing=$m rc=$?"; osdef_interpreter common.sh; echo "plain=$?"',
  );
  assert.equal(r.code, 0, r.err + r.out);
  assert.deepEqual(r.out.trim().split('\n'), [
    'files=4',
    'common says hi',
    'api=15 os=multi variant=buster hv=kvm debug=0',
    'rc=0',
    'ok:create',
    'ok:common.sh',
    'ok:variants.list',
    'ok:a-b_c.d',
    'api=20 variant=buster',
    'api=10 variant=unset',
    'refused=1',
    'missing=/bin/no-such-shell rc=1',
    'missing= rc=0',
    'plain=0',
  ]);
});
