/**
 * Ganeti `os/scripts/` on the real guest door: `os/` lists `scripts/`, so `scripts/` must answer
 * 200 with exactly the scripts `os/scripts/<name>` serves (issue 6, item 17; it was a 404), and
 * nothing that cannot be served (escaping symlinks, directories, oversize files, names outside
 * SCRIPT_NAME) shows up in it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync, symlinkSync, truncateSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { startTestDaemon, sampleInstance } from '../support/daemon.js';
import { MAX_SCRIPT_BYTES } from '../../routes/guest/scripts.js';

const VM1 = '127.0.0.2';
const VM2 = '127.0.0.3';

test('ganeti os/scripts/ lists exactly the scripts the guest can fetch', async (t) => {
  const d = await startTestDaemon();
  t.after(() => d.close());
  const osdir = join(d.dir, 'os', 'debootstrap');
  mkdirSync(join(osdir, 'untrusted'), { recursive: true });
  mkdirSync(join(osdir, 'subdir'));
  writeFileSync(join(osdir, 'create'), '#!/bin/sh\necho trusted\n');
  writeFileSync(join(osdir, 'untrusted', 'create'), '#!/bin/sh\necho untrusted\n');
  writeFileSync(join(osdir, 'untrusted', 'verify'), '#!/bin/sh\necho verify\n');
  writeFileSync(join(osdir, 'export'), '#!/bin/sh\necho export\n');
  writeFileSync(join(osdir, 'variants.list'), 'default\n');
  writeFileSync(join(osdir, 'common.sh'), 'CLEANUP=( )\n');
  writeFileSync(join(osdir, 'metad_trusted_secrets'), 'api-token\n');
  writeFileSync(join(osdir, 'metad_appliance'), 'debian\n');
  writeFileSync(join(osdir, '.hidden'), 'x');
  writeFileSync(join(osdir, 'huge'), '');
  truncateSync(join(osdir, 'huge'), MAX_SCRIPT_BYTES + 1);
  writeFileSync(join(d.dir, 'outside'), 'host secret file');
  symlinkSync(join(d.dir, 'outside'), join(osdir, 'escape'));
  symlinkSync(join(osdir, 'export'), join(osdir, 'rename'));
  await d.admin('PUT', '/v1/instances/vm1', sampleInstance(1, { os: { name: 'debootstrap+default' } }));
  await d.admin('PUT', '/v1/instances/vm2', sampleInstance(2));

  assert.deepEqual((await d.guest(VM1, 'GET', '/ganeti/latest/os/')).text.split('\n'), ['parameters.json', 'scripts/']);
  const listed = await d.guest(VM1, 'GET', '/ganeti/latest/os/scripts/');
  assert.equal(listed.status, 200);
  // The definition's other files too (common.sh, variants.list: the scripts read them from their
  // directory), but never metad's own host-side settings (metad_*) or a hidden file.
  assert.equal(listed.text, 'common.sh\ncreate\nexport\nrename\nvariants.list\nverify');
  assert.equal((await d.guest(VM1, 'GET', '/ganeti/latest/os/scripts')).text, listed.text, 'with or without the slash');
  assert.equal((await d.guest(VM1, 'HEAD', '/ganeti/latest/os/scripts/')).status, 200);
  assert.equal((await d.guest(VM1, 'POST', '/ganeti/latest/os/scripts/')).status, 405);
  for (const name of listed.text.split('\n')) {
    assert.equal((await d.guest(VM1, 'GET', `/ganeti/latest/os/scripts/${name}`)).status, 200, name);
  }
  for (const name of ['escape', 'huge', 'subdir', 'untrusted', 'metad_trusted_secrets', 'metad_appliance', '.hidden', '..', '.']) {
    assert.equal((await d.guest(VM1, 'GET', `/ganeti/latest/os/scripts/${name}`)).status, 404, name);
  }

  // Not cached: a script added on the host shows up at once.
  writeFileSync(join(osdir, 'import'), '#!/bin/sh\n');
  assert.equal(
    (await d.guest(VM1, 'GET', '/ganeti/latest/os/scripts/')).text,
    'common.sh\ncreate\nexport\nimport\nrename\nvariants.list\nverify',
  );

  // No OS definition (or one that does not exist): an empty listing, still 200.
  const none = await d.guest(VM2, 'GET', '/ganeti/latest/os/scripts/');
  assert.equal(none.status, 200);
  assert.equal(none.text, '');
  await d.admin('PATCH', '/v1/instances/vm2', { os: { name: 'no-such-os' } });
  assert.equal((await d.guest(VM2, 'GET', '/ganeti/latest/os/scripts/')).text, '');
});

test('a FIFO in an OS definition never blocks the daemon: script GETs answer 404 at once, admin writes go on', async (t) => {
  const d = await startTestDaemon();
  t.after(() => d.close());
  const osdir = join(d.dir, 'os', 'fifo-os');
  mkdirSync(join(osdir, 'untrusted'), { recursive: true });
  execFileSync('mkfifo', [join(osdir, 'untrusted', 'create')]);
  execFileSync('mkfifo', [join(osdir, 'export')]);
  await d.admin('PUT', '/v1/instances/vm1', sampleInstance(1, { os: { name: 'fifo-os' } }));
  // Twice as many reads as node has file threads (4): on a blocking open every one would hang.
  const reads = await Promise.all(
    Array.from({ length: 8 }, (_, i) => d.guest(VM1, 'GET', `/ganeti/latest/os/scripts/${i % 2 === 0 ? 'create' : 'export'}`)),
  );
  assert.deepEqual(
    reads.map((r) => r.status),
    Array.from({ length: 8 }, () => 404),
  );
  assert.equal((await d.guest(VM1, 'GET', '/ganeti/latest/os/scripts/')).text, '', 'FIFOs are not listed');
  const put = await d.admin('PUT', '/v1/instances/vm2', sampleInstance(2));
  assert.equal(put.status, 201, 'admin writes still work');
});
