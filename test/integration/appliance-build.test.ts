/**
 * The appliance build (appliance/build.sh) and the agent's JSON-to-environment parser
 * (appliance/agent/json.awk), run by the exact busybox the appliance boots with.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { open, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { skipOrFail } from '../support/env.js';
import { applianceMissing, testAppliance } from '../support/appliance.js';
import { applianceSourceDir, buildAppliance } from '../../appliance/image.js';

const run = promisify(execFile);
const fixtures = join(applianceSourceDir(), '..', 'test', 'fixtures', 'golden', 'ganeti', 'latest');
const awk = join(applianceSourceDir(), 'agent', 'json.awk');

/** Feeds `json` to json.awk in `mode`, evals the output in busybox sh, returns the environment. */
async function parse(
  busybox: string,
  mode: string,
  json: string,
): Promise<{ code: number | null; env: Record<string, string>; out: string }> {
  const script = `out=$(${busybox} awk -v mode=${mode} -f ${awk}) || exit 3; eval "$out" && exec ${process.execPath} -e 'process.stdout.write(JSON.stringify(process.env))'`;
  const child = spawn(busybox, ['sh', '-c', script], { env: { PATH: '/usr/bin:/bin' }, stdio: ['pipe', 'pipe', 'pipe'] });
  child.stdin.end(json);
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  const code = await new Promise<number | null>((r) => child.once('close', r));
  return { code, env: code === 0 ? (JSON.parse(out) as Record<string, string>) : {}, out };
}

function pick(env: Record<string, string>, re: RegExp): Record<string, string> {
  return Object.fromEntries(Object.entries(env).filter(([k]) => re.test(k)));
}

test('the build makes a read-only PVH kernel + initramfs with the agent as /init, and reuses it', async (t) => {
  if (skipOrFail(t, applianceMissing())) return;
  const img = await testAppliance();
  const m = img.manifest;
  assert.match(m.kernelPackage, /^linux-image-\d+\.\d+\.\d+-\d+-amd64$/);
  for (const mod of ['virtio_net', 'virtio_blk', 'ext4', 'virtio_pci']) assert.ok(m.modules.includes(mod), mod);
  // Dependencies come before their users.
  assert.ok(m.modules.indexOf('virtio_ring') < m.modules.indexOf('virtio_net'));
  assert.ok(m.modules.indexOf('jbd2') < m.modules.indexOf('ext4'));

  const fh = await open(img.kernel, 'r');
  const head = Buffer.alloc(4);
  await fh.read(head, 0, 4, 0);
  await fh.close();
  assert.deepEqual([...head], [0x7f, 0x45, 0x4c, 0x46], 'vmlinux is an ELF image');
  for (const f of [img.kernel, img.initrd, join(img.dir, 'manifest.json')]) {
    assert.equal((await stat(f)).mode & 0o222, 0, `${f} is read-only`);
  }
  assert.equal((await stat(img.dir)).mode & 0o222, 0, 'the build directory is read-only');

  const { stdout: list } = await run('cpio', ['-it', '--quiet', '-F', img.initrd]);
  const files = list.split('\n');
  for (const f of [
    'init',
    'bin/busybox',
    'agent/agent.sh',
    'agent/json.awk',
    'agent/package.sh',
    'lib/modules/load-order.net',
    'lib/modules/load-order.disk',
    'lib/modules/ext4.ko',
  ]) {
    assert.ok(files.includes(f), `initramfs has ${f}`);
  }
  const member = async (f: string): Promise<string> => (await run('cpio', ['-i', '--quiet', '--to-stdout', '-F', img.initrd, f])).stdout;
  // The comm NIC's modules (loaded before the agent starts), then the disks' (in the background).
  const net = (await member('lib/modules/load-order.net')).trim().split('\n');
  const disk = (await member('lib/modules/load-order.disk')).trim().split('\n');
  assert.deepEqual([...net, ...disk], m.modules);
  assert.ok(net.includes('virtio_net') && !net.includes('ext4') && !net.includes('virtio_blk'), net.join(' '));
  assert.ok(disk.includes('ext4') && disk.includes('virtio_blk') && disk.includes('crc32c_generic'), disk.join(' '));
  // Without the signature the .deb's modules carry (the kernel then skips the RSA check).
  const MAGIC = '~Module signature appended~\n';
  const debs = join(img.dir, '..', 'debs');
  const kdeb = (await run('sh', ['-c', `ls ${debs}/${m.kernelPackage}_*.deb`])).stdout.trim();
  const signed = (await run('sh', ['-c', `dpkg-deb --fsys-tarfile ${kdeb} | tar -xO --wildcards '*/ext4.ko' | tail -c 28`])).stdout;
  assert.equal(signed, MAGIC, "the .deb's ext4.ko is signed");
  const ext4 = async (cut: string): Promise<Buffer> =>
    Buffer.from(
      (await run('sh', ['-c', `cpio -i --quiet --to-stdout -F ${img.initrd} lib/modules/ext4.ko | ${cut} | base64 -w0`])).stdout,
      'base64',
    );
  assert.notEqual((await ext4('tail -c 28')).toString('latin1'), MAGIC, "the appliance's ext4.ko carries no signature");
  assert.deepEqual([...(await ext4('head -c 4'))], [0x7f, 0x45, 0x4c, 0x46], 'still an ELF object');
  assert.equal((await stat(img.vmlinuz)).mode & 0o222, 0, 'the bzImage is kept, read-only');

  // Idempotent: a second build finds the first one and leaves it untouched.
  const before = (await stat(img.kernel)).mtimeMs;
  const again = await buildAppliance(join(img.dir, '..'));
  assert.equal(again.dir, img.dir);
  assert.equal((await stat(again.kernel)).mtimeMs, before);
  t.diagnostic(`build ${m.buildMs} ms + download ${m.downloadMs} ms; vmlinux ${m.vmlinuxBytes} B, initrd ${m.initrdBytes} B`);
});

test('json.awk exports the golden parameters.json as OSP_<NAME>, exactly', async (t) => {
  if (skipOrFail(t, applianceMissing())) return;
  const { busybox } = await testAppliance();
  for (const name of ['full', 'edge', 'minimal']) {
    const json = await readFile(join(fixtures, name, 'os', 'parameters.json'), 'utf8');
    const params = JSON.parse(json) as Record<string, [string, string]>;
    const expected = Object.fromEntries(Object.entries(params).map(([k, [v]]) => [`OSP_${k.toUpperCase().replace(/[.-]/g, '_')}`, v]));
    const r = await parse(busybox, 'params', json);
    assert.equal(r.code, 0, name);
    assert.deepEqual(pick(r.env, /^OSP_/), expected, name);
  }
});

test('json.awk exports meta_data.json with Ganeti OS API names', async (t) => {
  if (skipOrFail(t, applianceMissing())) return;
  const { busybox } = await testAppliance();
  const full = await parse(busybox, 'meta', await readFile(join(fixtures, 'full', 'meta_data.json'), 'utf8'));
  assert.deepEqual(pick(full.env, /^(OS_|INSTANCE_|DISK_|NIC_)/), {
    OS_API_VERSION: '20',
    INSTANCE_NAME: 'web1',
    INSTANCE_HOSTNAME: 'web1.example.org',
    INSTANCE_OS: 'debootstrap',
    OS_VARIANT: 'bookworm',
    DISK_COUNT: '2',
    DISK_0_PATH: '/dev/vda',
    DISK_0_ACCESS: 'rw',
    DISK_1_PATH: '/dev/vdb',
    DISK_1_ACCESS: 'rw',
    INSTANCE_BE_maxmem: '2048',
    INSTANCE_BE_vcpus: '2',
    NIC_COUNT: '0',
  });
  const minimal = await parse(busybox, 'meta', await readFile(join(fixtures, 'minimal', 'meta_data.json'), 'utf8'));
  assert.equal(minimal.env['DISK_COUNT'], '0');
  assert.equal(minimal.env['INSTANCE_NAME'], 'minimal');
  assert.equal(minimal.env['OS_VARIANT'], undefined);
});

test('json.awk keeps hostile values intact and refuses malformed input', async (t) => {
  if (skipOrFail(t, applianceMissing())) return;
  const { busybox } = await testAppliance();
  const nasty = `it's "q" \\ \n\t\r\b\f / é€😀 $(touch /tmp/pwned) \`id\` $HOME \u0001 \u007f\ud800x`;
  const params = { 'a.b-c': [nasty, 'secret'], plain: ['', 'public'], n: ['x'.repeat(20000), 'private'] };
  const r = await parse(busybox, 'params', JSON.stringify(params, null, 1));
  assert.equal(r.code, 0);
  assert.deepEqual(pick(r.env, /^OSP_/), { OSP_A_B_C: nasty.replace('\ud800', '\ufffd'), OSP_PLAIN: '', OSP_N: 'x'.repeat(20000) });

  for (const bad of [
    '{"a":["x"',
    '{"a":["\\u0000","public"]}',
    '{"a":["x","public"]} junk',
    '{"a":["\\q","public"]}',
    '{"a b":["x","public"]}',
    'nope',
  ]) {
    const b = await parse(busybox, 'params', bad);
    assert.equal(b.code, 3, `refused: ${bad}`);
  }
});
