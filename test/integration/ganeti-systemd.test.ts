/**
 * metad in ganeti-metad's place under the REAL unit: docs/ganeti.md's two drop-ins
 * (ganeti.conf: group gnt-daemons and /run/ganeti writable; ganeti-packages.conf: the node's /tmp
 * and root's 0600 files readable), on a host booted by a real systemd (test/support/operator-host.ts)
 * with the Debian package installed (scripts/package.mjs; the machine's dpkg database under an
 * overlay) and Ganeti's directories as its ensure-dirs makes them. Ganeti's own code, run on that
 * host as the node daemon runs it (root), asks what the node daemon asks before a push (is the
 * pid file's process alive? echo), builds an OS install package with backend.ExportOS in /tmp
 * and pushes the instance (UpdateMetadata); a guest behind `gnt.com.0` then reads its parameters
 * and the package, byte for byte. Without the packages drop-in the package is not served (the
 * unit's private /tmp), and nothing else changes. With Ganeti's daemon-util, ensure-dirs and
 * ganeti-metad where Debian's packages put them and docs/ganeti.md's dpkg-divert step as printed,
 * a push while metad is stopped waits in metad's stand-in and goes to metad once it is back;
 * Ganeti's binary never runs; a push while metad stays stopped, or right after it was killed,
 * fails and starts nothing; the step back restores Ganeti's program.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { chmodSync, copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { hasCommand, skipOrFail } from '../support/env.js';
import { runFile } from '../support/netns.js';
import { GANETI_DIR, ganetiMissing, GANETI_PYTHONPATH } from '../support/ganeti.js';
import { hostExample } from '../support/doc-examples.js';
import { until } from '../support/wait.js';
import { bootOperatorHost, operatorHostMissing, type OperatorHost } from '../support/operator-host.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const DOC = readFileSync(join(ROOT, 'docs/ganeti.md'), 'utf8');
const FEED_PY = join(ROOT, 'test/support/ganeti_feed.py');

/** The ```ini block of docs/ganeti.md whose first line names `path`. */
function dropIn(path: string): string {
  const blocks = [...DOC.matchAll(/```ini\n([\s\S]*?)```/g)].map((m) => m[1] ?? '');
  const found = blocks.filter((b) => b.startsWith(`# ${path}\n`));
  assert.equal(found.length, 1, `docs/ganeti.md shows ${path} once`);
  return found[0] ?? '';
}

/** Ganeti's groups and users (each user with its own group), as its package creates them. */
const GANETI_GROUPS = ['gnt-daemons', 'gnt-admin'];
const GANETI_USERS = ['gnt-masterd', 'gnt-metad', 'gnt-rapi', 'gnt-confd', 'gnt-luxid'];
const WEB1 = {
  name: 'web1.example.com',
  uuid: '6f1c0e9a-1b2c-4d3e-8f40-5a6b7c8d9e0f',
  os: 'noop',
  hypervisor: 'kvm',
  beparams: { maxmem: 512, vcpus: 1 },
  osparams: { image: 'debian-12' },
  osparams_private: { 'root-password': 's3cret' },
  nics: [
    {
      name: 'ganeti:communication:web1',
      mac: '52:54:00:0a:00:05',
      ip: '169.254.10.5',
      nicparams: { mode: 'routed', link: 'communication_rt' },
      uuid: '6f1c0e9a-1b2c-4d3e-8f40-5a6b7c8d9ea2',
    },
  ],
};

test("Ganeti's drop-ins under the real unit: the feed socket, the pid file and the OS install package", async (t) => {
  if (skipOrFail(t, ganetiMissing() ?? (hasCommand('dpkg-shlibdeps') ? operatorHostMissing() : 'dpkg-dev not installed'))) return;
  const dir = mkdtempSync(join(tmpdir(), 'metad-gnt-systemd-'));
  chmodSync(dir, 0o755);
  const undo: (() => Promise<void> | void)[] = [() => rmSync(dir, { recursive: true, force: true })];
  t.after(async () => {
    for (const step of undo.reverse()) await step();
  });
  const deb = (await runFile('node', [join(ROOT, 'scripts/package.mjs'), '--out', dir], { timeoutMs: 300_000 })).stdout.trim();
  assert.match(deb, /\.deb$/);
  copyFileSync(FEED_PY, join(dir, 'ganeti_feed.py'));
  const h: OperatorHost = await bootOperatorHost({
    binds: [dir],
    dpkg: true,
    allowOut: ['gnt.com.*'],
    sysusers: GANETI_GROUPS.map((g) => `g ${g} -\n`).join('') + GANETI_USERS.map((u) => `u ${u} -\n`).join(''),
  });
  undo.push(() => h.destroy());
  const must = async (cmd: string, ...args: string[]): Promise<string> => {
    const r = await h.asRoot(cmd, ...args);
    assert.equal(r.code, 0, `${cmd} ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  const sh = (script: string): Promise<string> => must('sh', '-c', script);
  const ganeti = (script: string): Promise<string> => must('env', `PYTHONPATH=${GANETI_PYTHONPATH}`, '/usr/bin/python3', '-c', script);
  const feed = async (ops: unknown[], env = ''): Promise<{ result?: unknown; warnings?: string[]; error?: string }[]> =>
    (
      await must(
        'sh',
        '-c',
        `${env} PYTHONPATH=${GANETI_PYTHONPATH} /usr/bin/python3 ${join(dir, 'ganeti_feed.py')} <<'EOF'\n${JSON.stringify(ops)}\nEOF`,
      )
    )
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { result?: unknown; warnings?: string[]; error?: string });
  const journal = async (): Promise<string> => must('journalctl', '-u', 'metad', '-o', 'cat', '--no-pager');
  /** curl `args` from the guest's namespace (behind gnt.com.0) to metad's guest door. */
  const fromGuest = (path: string, ...args: string[]): ReturnType<OperatorHost['asRoot']> =>
    h.asRoot('ip', 'netns', 'exec', 'guest', 'curl', '--max-time', '10', ...args, `http://169.254.169.254${path}`);
  /** Ganeti's push of web1 naming `pkg` as its OS install package: it works (no warning in the Ganeti job). */
  const pushWithPackage = async (pkg: string): Promise<void> => {
    const [pushed] = await feed([{ op: 'update', instance: { ...WEB1, osparams: { ...WEB1.osparams, 'os-install-package': pkg } } }]);
    assert.deepEqual(pushed?.warnings ?? [], [], 'the push worked (no warning in the Ganeti job)');
  };

  // The package, the node's Ganeti directories (ensure-dirs), the config and the doc's drop-ins.
  await must('apt-get', 'install', '-y', '-q', deb);
  await sh(
    'install -d -m 0775 -o root -g gnt-daemons /run/ganeti && install -d -m 0770 -o gnt-masterd -g gnt-daemons /run/ganeti/socket && ' +
      'install -d /var/log/ganeti /var/lib/ganeti',
  );
  const packaged = await must('cat', '/etc/metad/config.yaml');
  await sh(`cat > /etc/metad/config.yaml <<'EOF'\n${packaged}ganeti:\n  socketGroup: gnt-daemons\nEOF`);
  await must('metad', 'check-config', '/etc/metad/config.yaml');
  await must('install', '-d', '/etc/systemd/system/metad.service.d');
  for (const file of ['ganeti.conf', 'ganeti-packages.conf']) {
    const path = `/etc/systemd/system/metad.service.d/${file}`;
    await sh(`cat > ${path} <<'EOF'\n${dropIn(path)}EOF`);
  }
  await must('systemctl', 'daemon-reload');
  const started = await h.asRoot('systemctl', 'enable', '--now', 'metad');
  assert.equal(started.code, 0, `${started.stderr}\n${(await h.asRoot('journalctl', '-u', 'metad', '-o', 'cat', '--no-pager')).stdout}`);
  assert.equal((await must('systemctl', 'show', '-P', 'ActiveState', 'metad')).trim(), 'active', await journal());

  await t.test("the node daemon's questions: the pid file names a live process, echo answers", async () => {
    assert.equal(
      (await ganeti('from ganeti import metad, utils; print(utils.IsDaemonAlive("ganeti-metad"), metad.Client().Echo("ping"))')).trim(),
      'True ping',
    );
    const mainPid = (await must('systemctl', 'show', '-P', 'MainPID', 'metad')).trim();
    assert.equal((await must('cat', '/run/ganeti/ganeti-metad.pid')).trim(), mainPid);
    assert.equal(
      (await must('stat', '-c', '%a %U', '/run/ganeti/ganeti-metad.pid')).trim(),
      '644 metad',
      'readable by all, despite the umask',
    );
    assert.equal((await must('stat', '-c', '%a %U %G', '/run/ganeti/socket/ganeti-metad')).trim(), '600 metad gnt-daemons');
  });

  let pkg = '';
  await t.test("ExportOS's package in /tmp (root's, 0600) and the push; the guest behind gnt.com.0 reads both", async () => {
    const [exported] = await feed([{ op: 'export-os', instance: WEB1 }]);
    pkg = String(exported?.result);
    assert.match(pkg, /^\/tmp\/tmp\w+\.tgz$/);
    assert.equal((await must('stat', '-c', '%a %U', pkg)).trim(), '600 root');
    await pushWithPackage(pkg);
    await sh(
      'ip netns add guest && ip link add gnt.com.0 type veth peer name eth0 address 52:54:00:0a:00:05 netns guest && ' +
        'metadctl nic up --instance web1.example.com --tap gnt.com.0 >/dev/null && ' +
        'ip -n guest link set eth0 up && ip -n guest addr add 169.254.10.5/16 dev eth0',
    );
    const params = await fromGuest('/ganeti/latest/os/parameters.json', '-sf');
    assert.equal(params.code, 0, params.stderr);
    assert.deepEqual(JSON.parse(params.stdout), {
      image: ['debian-12', 'public'],
      'os-install-package': [pkg, 'public'],
      'root-password': ['s3cret', 'private'],
    });
    const sum = (await must('sha256sum', pkg)).split(' ')[0];
    const served = await sh(
      "ip netns exec guest curl -sf --max-time 10 http://169.254.169.254/ganeti/latest/os/os-install-package | sha256sum | cut -d' ' -f1",
    );
    assert.equal(served.trim(), sum, 'the package, byte for byte');
  });

  await t.test('without the packages drop-in the package is not served (private /tmp); the rest is', async () => {
    await must('rm', '/etc/systemd/system/metad.service.d/ganeti-packages.conf');
    await must('systemctl', 'daemon-reload');
    await must('systemctl', 'restart', 'metad');
    // A restart keeps the instance but not what Ganeti pushed as its package path: push again.
    await pushWithPackage(pkg);
    await must('metadctl', 'nic', 'up', '--instance', 'web1.example.com', '--tap', 'gnt.com.0');
    const code = await fromGuest('/ganeti/latest/os/os-install-package', '-s', '-o', '/dev/null', '-w', '%{http_code}');
    assert.equal(code.stdout, '404');
    assert.match(await journal(), /guest OS package not served/);
    const hostname = await fromGuest('/latest/meta-data/hostname', '-sf');
    assert.equal(hostname.code, 0, hostname.stderr);
    assert.equal(hostname.stdout, 'web1.example.com');
  });

  await t.test("docs/ganeti.md's stand-in: a push while metad is stopped waits for metad; Ganeti's ganeti-metad never runs", async () => {
    // Ganeti's files where Debian's ganeti and ganeti-3.0 packages put them.
    await sh(
      `install -d /usr/lib/ganeti /usr/share/ganeti && ln -sfn ${GANETI_DIR}/usr/lib/ganeti/3.0 /usr/lib/ganeti/default && ` +
        `ln -sfn ${GANETI_DIR}/usr/share/ganeti/3.0 /usr/share/ganeti/default && ` +
        'ln -sfn default/usr/lib/ganeti/daemon-util /usr/lib/ganeti/daemon-util && ' +
        'ln -sfn ../../share/ganeti/default/ensure-dirs /usr/lib/ganeti/ensure-dirs && ' +
        'ln -sfn ../lib/ganeti/default/usr/sbin/ganeti-metad /usr/sbin/ganeti-metad',
    );
    const original = (await must('readlink', '/usr/sbin/ganeti-metad')).trim();
    await sh(`set -e\n${hostExample(DOC, 'ganeti-divert').body}`);
    assert.equal((await must('readlink', '/usr/sbin/ganeti-metad')).trim(), '/usr/lib/metad/ganeti/ganeti-metad');
    assert.equal((await must('readlink', '/usr/sbin/ganeti-metad.ganeti')).trim(), original);
    const realRuns = async (): Promise<boolean> =>
      (
        await h.asRoot(
          'sh',
          '-c',
          `for p in /proc/[0-9]*; do readlink $p/exe; done | grep -qx '${GANETI_DIR}/usr/lib/ganeti/3.0/usr/sbin/ganeti-metad'`,
        )
      ).code === 0;
    const standIn = (): Promise<string> => must('journalctl', '-t', 'metad-ganeti-metad', '-o', 'cat', '--no-pager');

    // Stopped: the pid file goes; a push (a new value of a public parameter) waits in the stand-in.
    await must('systemctl', 'stop', 'metad');
    assert.equal((await h.asRoot('test', '-e', '/run/ganeti/ganeti-metad.pid')).code, 1, 'the pid file is removed');
    let settled = false;
    const pushed = feed([{ op: 'update', instance: { ...WEB1, osparams: { image: 'debian-13' } } }]).finally(() => (settled = true));
    await until('the stand-in waits, as gnt-metad', async () =>
      (await must('ps', '-eo', 'user:20,args')).split('\n').some((l) => /^gnt-metad\s+\S*sh \/usr\/sbin\/ganeti-metad/.test(l)),
    );
    assert.equal(settled, false, 'the push waits');
    assert.equal(await realRuns(), false, "Ganeti's ganeti-metad runs");
    await must('systemctl', 'start', 'metad');
    const [result] = await pushed;
    assert.deepEqual(
      result?.warnings ?? [],
      [],
      `the push went to metad\n${(await must('journalctl', '-o', 'short-precise', '--no-pager', '-n', '60')).slice(-6000)}`,
    );
    const mainPid = (await must('systemctl', 'show', '-P', 'MainPID', 'metad')).trim();
    assert.match(await standIn(), new RegExp(`metad is running \\(pid ${mainPid}\\): Ganeti's push goes to it`));
    await must('metadctl', 'nic', 'up', '--instance', 'web1.example.com', '--tap', 'gnt.com.0');
    const params = await fromGuest('/ganeti/latest/os/parameters.json', '-sf');
    assert.equal(params.code, 0, params.stderr);
    assert.deepEqual((JSON.parse(params.stdout) as Record<string, unknown>)['image'], ['debian-13', 'public']);

    // Stopped for good: the push fails after the wait (METAD_GANETI_WAIT=2), nothing listens.
    await must('systemctl', 'stop', 'metad');
    const [failed] = await feed([{ op: 'update', instance: WEB1 }], 'METAD_GANETI_WAIT=2');
    assert.match((failed?.warnings ?? []).join('\n'), /Failed to start metadata daemon/);
    assert.match(await standIn(), /metad did not come back within 2 s/);
    assert.equal(await realRuns(), false, "Ganeti's ganeti-metad runs");
    assert.equal((await h.asRoot('test', '-S', '/run/ganeti/socket/ganeti-metad')).code, 1, 'a socket on the path');

    // Killed: its pid file stays (metad's, not root's); start-stop-daemon refuses it, nothing runs.
    await must('systemctl', 'start', 'metad');
    const killedPid = (await must('systemctl', 'show', '-P', 'MainPID', 'metad')).trim();
    await must('systemctl', 'kill', '-s', 'KILL', 'metad');
    await until('metad gone', async () => (await h.asRoot('test', '-d', `/proc/${killedPid}`)).code !== 0);
    const [refused] = await feed([{ op: 'update', instance: WEB1 }]);
    assert.match((refused?.warnings ?? []).join('\n'), /Failed to start metadata daemon/);
    assert.equal(await realRuns(), false, "Ganeti's ganeti-metad runs");
    // systemd restarts metad (Restart=always), which takes its pid file back.
    await until('metad restarted', async () => {
      const pid = (await must('systemctl', 'show', '-P', 'MainPID', 'metad')).trim();
      return pid !== '0' && pid !== killedPid && (await h.asRoot('grep', '-qx', pid, '/run/ganeti/ganeti-metad.pid')).code === 0;
    });

    // The step back puts Ganeti's program back.
    await sh(`set -e\n${hostExample(DOC, 'ganeti-divert-back').body}`);
    assert.equal((await must('readlink', '/usr/sbin/ganeti-metad')).trim(), original);
    assert.equal((await h.asRoot('test', '-e', '/usr/sbin/ganeti-metad.ganeti')).code, 1);
    assert.doesNotMatch(await must('dpkg-divert', '--list'), /ganeti-metad/);
  });
});
