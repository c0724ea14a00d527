/**
 * The personalization package end to end: the real daemon in a test network namespace, the real
 * appliance under libvirt + QEMU (TCG), a package server on the namespace's loopback (basic auth),
 * three install jobs at once:
 *  - whole1: the OS script writes files onto the instance's ext4 disk; the package (fetched with
 *    the credentials from the secret parameters) lands over them: its /etc/hostname wins, the
 *    script's other file stays, the package's private key keeps its mode 0600 (read back with debugfs);
 *  - part1: the same on a disk with a partition table: the package goes into partition 1;
 *  - gone1: the package URL answers 404: the appliance is refused, reports it, and the job ends
 *    failed with the reason in its record; the script's files are still there, unchanged.
 * Afterwards nothing of the runs is left.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, type ChildProcess } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { missingCommand, skipOrFail } from '../support/env.js';
import { installEnvMissing, startInstallEnv, type InstallEnv } from '../support/install-env.js';
import { tgz } from '../support/tgz.js';
import type { JobRecord } from '../../daemon/jobs/record.js';

const run = promisify(execFile);

const CREATE = `#!/bin/sh
# Test OS create script: writes two files onto the instance's filesystem (partition 1 if any).
set -e
dev=$DISK_0_PATH
[ -e "/sys/class/block/\${dev#/dev/}1" ] && dev=\${dev}1
mkdir -p /mnt/disk0
mount -t ext4 "$dev" /mnt/disk0
mkdir -p /mnt/disk0/etc
echo from-the-script >/mnt/disk0/etc/hostname
echo kept >/mnt/disk0/etc/keep
umount /mnt/disk0
echo "test create: done"
`;

/** A static file server with basic auth (node, run inside the namespace): argv dir user password; prints its port. */
const SERVER = `
const http = require('node:http'), fs = require('node:fs'), path = require('node:path');
const [dir, user, pass] = process.argv.slice(1);
const want = 'Basic ' + Buffer.from(user + ':' + pass).toString('base64');
const s = http.createServer((req, res) => {
  if (req.headers.authorization !== want) { res.writeHead(401, { 'www-authenticate': 'Basic' }); return res.end(); }
  const f = path.join(dir, path.basename(req.url || ''));
  if (!fs.existsSync(f)) { res.writeHead(404); return res.end(); }
  res.writeHead(200, { 'content-type': 'application/gzip', 'content-length': fs.statSync(f).size });
  fs.createReadStream(f).pipe(res);
});
s.listen(0, '127.0.0.1', () => console.log(s.address().port));
`;

const USER = 'installer';
const PASSWORD = 'pkg-Pa55word';
const PART_OFFSET = 1024 * 1024;

async function debugfs(image: string, cmd: string): Promise<string> {
  return (await run('debugfs', ['-R', cmd, image])).stdout;
}

test('the personalization package lands over what the OS script wrote (whole disk and partition 1); a 404 fails the job with its reason', async (t) => {
  const why =
    (await installEnvMissing()) ??
    missingCommand([
      ['debugfs', 'e2fsprogs'],
      ['mkfs.ext4', 'e2fsprogs'],
      ['sfdisk', 'fdisk'],
    ]);
  if (skipOrFail(t, why)) return;
  const env: InstallEnv = await startInstallEnv({ maxConcurrent: 3 });
  const servers: ChildProcess[] = [];
  t.after(async () => {
    for (const s of servers) s.kill();
    await env.close();
  });
  const pkgDir = join(env.dir, 'packages');
  await mkdir(pkgDir);
  await writeFile(
    join(pkgDir, 'site.tgz'),
    await tgz([
      { name: 'etc/', type: 'directory', mode: 0o755 },
      { name: 'etc/hostname', body: 'from-the-package\n', mode: 0o644 },
      { name: 'root/', type: 'directory', mode: 0o700 },
      { name: 'root/.ssh/', type: 'directory', mode: 0o700 },
      { name: 'root/.ssh/id_ed25519', body: 'PRIVATE KEY\n', mode: 0o600 },
    ]),
  );
  const server = env.ns.exec(process.execPath, ['-e', SERVER, pkgDir, USER, PASSWORD], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<string>((resolve, reject) => {
    servers.push(server);
    server.stdout?.once('data', (b: Buffer) => resolve(b.toString().trim()));
    server.once('exit', (c) => reject(new Error(`package server exited ${String(c)}`)));
  });

  // Disks: whole1's a bare ext4 filesystem, part1's a partition table with ext4 in partition 1.
  const whole = join(env.dir, 'whole1.img');
  const part = join(env.dir, 'part1.img');
  const gone = join(env.dir, 'gone1.img');
  for (const d of [whole, gone]) {
    await run('truncate', ['-s', '16M', d]);
    await run('mkfs.ext4', ['-q', '-F', d]);
  }
  await run('truncate', ['-s', '16M', part]);
  await run('sh', ['-c', `echo 'start=2048, type=83' | sfdisk -q "${part}"`]);
  await run('mkfs.ext4', ['-q', '-F', '-E', `offset=${String(PART_OFFSET)}`, part, '15M']);

  const url = (f: string): string => `http://127.0.0.1:${port}/${f}`;
  const instances: [string, string, string, string][] = [
    ['whole1', '169.254.40.11', '52:54:00:40:00:11', whole],
    ['part1', '169.254.40.12', '52:54:00:40:00:12', part],
    ['gone1', '169.254.40.13', '52:54:00:40:00:13', gone],
  ];
  for (const [name, ip, mac, disk] of instances) {
    await env.register({
      name,
      ip,
      mac,
      create: CREATE,
      doc: {
        install: { packageUrl: url(name === 'gone1' ? 'missing.tgz' : 'site.tgz') },
        hardware: { memoryMiB: 256, vcpus: 1, disks: [{ path: disk, format: 'raw' }] },
      },
    });
    const sec = await env.metad.admin('PUT', `/v1/instances/${name}/params/secret`, {
      values: { 'package-username': USER, 'package-password': PASSWORD },
    });
    assert.equal(sec.status, 200, sec.text);
  }
  for (const [name] of instances) assert.equal((await env.ctl('install', name)).code, 0);
  const [w, p, g] = (await Promise.all(instances.map(([name]) => env.watchEnd(name)))) as [JobRecord, JobRecord, JobRecord];

  await t.test('the package landed over the whole disk: its file wins, the script’s other file stays, modes kept', async () => {
    assert.equal(w.outcome, 'succeeded', JSON.stringify(w));
    assert.ok(
      w.lines.some((l) => /step=package status=ok new=[1-9]/.test(l)),
      w.lines.join('\n'),
    );
    assert.equal(await debugfs(whole, 'cat /etc/hostname'), 'from-the-package\n');
    assert.equal(await debugfs(whole, 'cat /etc/keep'), 'kept\n');
    assert.equal(await debugfs(whole, 'cat /root/.ssh/id_ed25519'), 'PRIVATE KEY\n');
    assert.match(await debugfs(whole, 'stat /root/.ssh/id_ed25519'), /Mode:\s+0600/);
  });

  await t.test('on a partitioned disk the package went into partition 1', async () => {
    assert.equal(p.outcome, 'succeeded', JSON.stringify(p));
    const fs1 = join(env.dir, 'part1-p1.img');
    await run('dd', [`if=${part}`, `of=${fs1}`, 'bs=1M', 'skip=1', 'status=none']);
    assert.equal(await debugfs(fs1, 'cat /etc/hostname'), 'from-the-package\n');
    assert.equal(await debugfs(fs1, 'cat /etc/keep'), 'kept\n');
  });

  await t.test('a 404: the job failed with the reason in its record; the script’s files untouched', async () => {
    assert.equal(g.outcome, 'failed', JSON.stringify(g));
    assert.equal(g.reason, 'package: HTTP 404 from the package server');
    assert.ok(
      g.lines.some((l) => /step=package status=failed reason=refused/.test(l)),
      g.lines.join('\n'),
    );
    assert.equal(await debugfs(gone, 'cat /etc/hostname'), 'from-the-script\n');
  });

  await t.test('the credentials never reached a record, the log or the disk image', async () => {
    for (const rec of [w, p, g]) assert.equal(JSON.stringify(rec).includes(PASSWORD), false);
    assert.ok(env.metad.out().includes('install job part failed'), 'the log says why gone1 failed');
    assert.equal(env.metad.out().includes(PASSWORD), false);
    assert.equal((await readFile(whole)).includes(PASSWORD), false);
    assert.deepEqual(await env.leftovers(), []);
  });
});
