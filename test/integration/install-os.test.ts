/**
 * The personalization package and the OS image end to end: the real daemon in a test network
 * namespace, the real appliance under libvirt + QEMU (TCG), a package server on the namespace's
 * loopback (basic auth), four install jobs at once and one refused before it boots:
 *  - whole1: the OS script writes files onto the instance's ext4 disk; the package (fetched with
 *    the credentials from the secret parameters) lands over them: its /etc/hostname wins, the
 *    script's other file stays, the package's private key keeps its mode 0600 (read back with debugfs);
 *  - part1: the same on a disk with a partition table: the package goes into partition 1;
 *  - gone1: the package URL answers 404: the appliance is refused, reports it, and the job ends
 *    failed with the reason in its record; the script's files are still there, unchanged;
 *  - img1: a blank disk and a qcow2 OS image (an ext4 filesystem with a file in it): the image is
 *    written onto the disk before the appliance boots (the OS script mounts what it holds), then
 *    the script's files and the package land on it;
 *  - bad1: the image's sha256 does not match: the job fails before anything is created or
 *    written (the disk is still all zeros);
 *  - pair1: an OS definition with a trusted `create` (on the host) and an untrusted one (in the
 *    appliance) that exchange three messages each way through the pipe; the untrusted side
 *    fails unless every answer came, the trusted side unless every message did;
 *  - self1 (`install.mode: self_install`): its own disk holds metad's install image (`metad
 *    appliance install-image`): booted by the BIOS with the comm NIC, it gets its address by
 *    DHCP, reads its metadata, runs its create, reports and powers off: succeeded.
 * Afterwards nothing of the runs is left.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, type ChildProcess } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createHash } from 'node:crypto';
import { missingCommand, skipOrFail } from '../support/env.js';
import { installEnvMissing, startInstallEnv, type InstallEnv } from '../support/install-env.js';
import { tgz } from '../support/tgz.js';
import { applianceCacheDir } from '../support/appliance.js';
import { METAD_CLI } from '../support/ns-metad.js';
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

/** pair1's untrusted side (busybox sh in the appliance): three messages, each answered, then done. */
const UNTRUSTED_PAIR = `#!/bin/sh
B=http://169.254.169.254/ganeti/latest
for i in 1 2 3; do
  wget -q -O /dev/null --post-data "msg $i
" $B/write || exit 10
  got=
  for try in 1 2 3 4 5 6; do
    got="$got$(wget -q -O - "$B/read?wait=10")"
    case $got in *"ack $i"*) break ;; esac
  done
  case $got in *"ack $i"*) echo "untrusted: got ack $i" ;; *) echo "untrusted: no ack $i: $got"; exit 11 ;; esac
done
wget -q -O /dev/null --post-data "done
" $B/write
`;

/** pair1's trusted side (on the host): answers each message, exits 0 at "done" once it saw all three. */
const TRUSTED_PAIR = `#!/bin/sh
seen=0
while IFS= read -r line; do
  case $line in
    "msg "*) seen=$((seen + 1)); echo "ack \${line#msg }" ;;
    done) echo "trusted: saw $seen messages on $DISK_0_PATH" >&2; [ "$seen" -eq 3 ] && exit 0; exit 12 ;;
  esac
done
exit 13
`;

const USER = 'installer';
const PASSWORD = 'pkg-Pa55word';
const PART_OFFSET = 1024 * 1024;

async function debugfs(image: string, cmd: string): Promise<string> {
  return (await run('debugfs', ['-R', cmd, image])).stdout;
}

test('the OS image and the personalization package land on the disk around the OS script (whole disk, partition 1, qcow2 image); a 404 or a wrong sha256 fails the job with its reason', async (t) => {
  const why =
    (await installEnvMissing()) ??
    missingCommand([
      ['debugfs', 'e2fsprogs'],
      ['mkfs.ext4', 'e2fsprogs'],
      ['sfdisk', 'fdisk'],
    ]);
  if (skipOrFail(t, why)) return;
  const env: InstallEnv = await startInstallEnv({ maxConcurrent: 7 });
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

  // img1: a blank disk and a qcow2 image of an ext4 filesystem holding /etc/from-image; bad1 the same image with a wrong sha256.
  const img = join(env.dir, 'img1.img');
  const bad = join(env.dir, 'bad1.img');
  for (const d of [img, bad]) await run('truncate', ['-s', '16M', d]);
  const tree = join(env.dir, 'image-tree');
  await mkdir(join(tree, 'etc'), { recursive: true });
  await writeFile(join(tree, 'etc', 'from-image'), 'written before the scripts\n');
  const rawImage = join(env.dir, 'image.raw');
  await run('truncate', ['-s', '12M', rawImage]);
  await run('mkfs.ext4', ['-q', '-F', '-d', tree, rawImage]);
  await mkdir(join(env.dir, 'images'));
  const qcow = join(env.dir, 'images', 'debian.qcow2');
  await run('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', rawImage, qcow]);
  const imageSha = createHash('sha256')
    .update(await readFile(qcow))
    .digest('hex');

  const url = (f: string): string => `http://127.0.0.1:${port}/${f}`;
  const instances: [string, string, string, string][] = [
    ['whole1', '169.254.40.11', '52:54:00:40:00:11', whole],
    ['part1', '169.254.40.12', '52:54:00:40:00:12', part],
    ['gone1', '169.254.40.13', '52:54:00:40:00:13', gone],
    ['img1', '169.254.40.14', '52:54:00:40:00:14', img],
  ];
  for (const [name, ip, mac, disk] of instances) {
    await env.register({
      name,
      ip,
      mac,
      create: CREATE,
      doc: {
        install: {
          packageUrl: url(name === 'gone1' ? 'missing.tgz' : 'site.tgz'),
          ...(name === 'img1' ? { image: { path: qcow, sha256: imageSha, format: 'qcow2' } } : {}),
        },
        hardware: { memoryMiB: 256, vcpus: 1, disks: [{ path: disk, format: 'raw' }] },
      },
    });
    const sec = await env.metad.admin('PUT', `/v1/instances/${name}/params/secret`, {
      values: { 'package-username': USER, 'package-password': PASSWORD },
    });
    assert.equal(sec.status, 200, sec.text);
  }
  await env.register({
    name: 'bad1',
    ip: '169.254.40.15',
    mac: '52:54:00:40:00:15',
    create: CREATE,
    doc: {
      install: { image: { path: qcow, sha256: '0'.repeat(64), format: 'qcow2' } },
      hardware: { memoryMiB: 256, vcpus: 1, disks: [{ path: bad, format: 'raw' }] },
    },
  });
  // pair1: its definition gets the trusted create beside the untrusted one register() wrote.
  const pairDisk = join(env.dir, 'pair1.img');
  await run('truncate', ['-s', '8M', pairDisk]);
  await env.register({
    name: 'pair1',
    ip: '169.254.40.16',
    mac: '52:54:00:40:00:16',
    create: UNTRUSTED_PAIR,
    doc: { hardware: { memoryMiB: 256, vcpus: 1, disks: [{ path: pairDisk, format: 'raw' }] } },
  });
  await writeFile(join(env.dir, 'os', 'testos-pair1', 'create'), TRUSTED_PAIR, { mode: 0o755 });
  // self1: install media on its disk (metad's own install image), booted as it is.
  await writeFile(join(env.dir, 'tool.json'), JSON.stringify({ appliance: { cacheDir: applianceCacheDir() } }));
  const media = join(env.dir, 'self1.img');
  await run(process.execPath, [METAD_CLI, 'appliance', 'install-image', '--out', media, '-c', join(env.dir, 'tool.json')]);
  await env.register({
    name: 'self1',
    ip: '169.254.40.17',
    mac: '52:54:00:40:00:17',
    create: '#!/bin/sh\necho "self1 installs itself"\n',
    doc: { install: { mode: 'self_install' }, hardware: { memoryMiB: 256, vcpus: 1, disks: [{ path: media, format: 'raw' }] } },
  });
  for (const [name] of [...instances, ['bad1'], ['pair1'], ['self1']]) assert.equal((await env.ctl('install', name ?? '')).code, 0);
  const selfEnd = env.watchEnd('self1');
  const badEnd = env.watchEnd('bad1');
  const pairEnd = env.watchEnd('pair1');
  const [w, p, g, i] = (await Promise.all(instances.map(([name]) => env.watchEnd(name)))) as [JobRecord, JobRecord, JobRecord, JobRecord];

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

  await t.test('img1: the OS image was on the disk before the script ran; the script and the package wrote over it', async () => {
    assert.equal(i.outcome, 'succeeded', JSON.stringify(i));
    assert.equal(await debugfs(img, 'cat /etc/from-image'), 'written before the scripts\n');
    assert.equal(await debugfs(img, 'cat /etc/keep'), 'kept\n');
    assert.equal(await debugfs(img, 'cat /etc/hostname'), 'from-the-package\n');
  });

  await t.test('bad1: a wrong sha256 fails the job before anything is created; not a byte written', async () => {
    const b = await badEnd;
    assert.equal(b.outcome, 'failed', JSON.stringify(b));
    assert.match(b.reason ?? '', /^image: sha256 mismatch: the file's is [0-9a-f]{64}, the document says 0{64}$/);
    assert.equal(b.createdAt, undefined, 'no domain was created');
    assert.ok((await readFile(bad)).equals(Buffer.alloc(16 * 1024 * 1024)), 'the disk is untouched');
  });

  await t.test('pair1: the trusted and untrusted sides exchanged three messages each way; succeeded', async () => {
    const r = await pairEnd;
    assert.equal(r.outcome, 'succeeded', JSON.stringify(r));
    assert.match(env.metad.out(), /trusted: saw 3 messages on \/[^"]*pair1\.img/);
  });

  await t.test('self1: its own disk booted, it read its metadata, ran its create, reported and powered off', async () => {
    const r = await selfEnd;
    assert.equal(r.outcome, 'succeeded', JSON.stringify(r));
    assert.ok(
      r.lines.some((l) => /step=net status=ok ip=dhcp/.test(l)),
      r.lines.join('\n'),
    );
    assert.ok(
      r.lines.some((l) => /step=metadata status=ok instance=self1/.test(l)),
      r.lines.join('\n'),
    );
    assert.ok(
      r.lines.some((l) => /step=create status=ok/.test(l)),
      r.lines.join('\n'),
    );
  });

  await t.test('the credentials never reached a record, the log or the disk image', async () => {
    for (const rec of [w, p, g]) assert.equal(JSON.stringify(rec).includes(PASSWORD), false);
    assert.ok(env.metad.out().includes('install job part failed'), 'the log says why gone1 failed');
    assert.equal(env.metad.out().includes(PASSWORD), false);
    assert.equal((await readFile(whole)).includes(PASSWORD), false);
    assert.deepEqual(await env.leftovers(), []);
  });
});
