/**
 * The Ganeti renderer against golden files, plus: no host detail in meta_data.json, OS
 * parameters merged with their visibility (more private wins), secrets only when passed,
 * determinism and purity.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GANETI_VERSIONS, isGanetiVersion, renderGanetiMetaData, renderOsParameters } from '../../routes/render/ganeti.js';
import { assertGoldenDir, INSTANCES, jsonText, loadView, readFixture } from '../support/render-golden.js';

for (const name of INSTANCES) {
  test(`golden: ganeti latest ${name}`, () => {
    const view = loadView(name);
    assertGoldenDir(
      `ganeti/latest/${name}`,
      new Map([
        ['meta_data.json', jsonText(renderGanetiMetaData(view, 'latest'))],
        ['os/parameters.json', jsonText(renderOsParameters(view))],
      ]),
    );
  });
}

test('versions: one dated version and latest, rendering the same', () => {
  assert.deepEqual([...GANETI_VERSIONS], ['2014-07-01', 'latest']);
  assert.ok(isGanetiVersion('latest'));
  assert.equal(isGanetiVersion('2015-01-01'), false);
  const view = loadView('full');
  assert.deepEqual(renderGanetiMetaData(view, '2014-07-01'), renderGanetiMetaData(view, 'latest'));
});

test('meta_data.json carries no host detail: no disk path, no OS definition, no tap', () => {
  for (const name of INSTANCES) {
    const input = readFixture(name).instance;
    const body = JSON.stringify(renderGanetiMetaData(loadView(name), 'latest'));
    const hostDetails = [...(input.hardware?.disks ?? []).map((d) => d.path), input.comm.tap].filter((s): s is string => s !== undefined);
    for (const detail of hostDetails) assert.ok(!body.includes(detail), `${name}: ${detail} leaked`);
    assert.ok(!body.includes('"path"') && !body.includes('definition') && !body.includes('"tap"'), name);
  }
});

test('meta_data.json: identity, OS, hardware with disk index, comm NIC', () => {
  assert.deepEqual(renderGanetiMetaData(loadView('full'), 'latest'), {
    uuid: '6f1c2a9e-4b7d-4c2e-9a51-3d8e2f0b7c14',
    name: 'web1',
    hostname: 'web1.example.org',
    os: { name: 'debootstrap', variant: 'bookworm' },
    hardware: {
      memoryMiB: 2048,
      vcpus: 2,
      disks: [
        { index: 0, format: 'raw', sizeGiB: 20 },
        { index: 1, format: 'qcow2', sizeGiB: 100 },
      ],
    },
    comm: { mac: '52:54:00:12:34:56', ipv4: '169.254.10.7' },
  });
  assert.deepEqual(renderGanetiMetaData(loadView('minimal'), 'latest'), {
    uuid: '0b9e7c6d-5a43-4f21-8e0d-c1b2a3f4e5d6',
    name: 'minimal',
    hostname: 'minimal',
    comm: { mac: '52:54:00:00:00:01', ipv4: '169.254.0.2' },
  });
});

test('os/parameters.json: public, private and secret values with their visibility; more private wins', () => {
  assert.deepEqual(renderOsParameters(loadView('full')), {
    api_token: ['fixture-secret-api-token', 'secret'],
    image: ['debian-12-private', 'private'],
    mirror: ['http://user:fixture-secret-pw@mirror.example/', 'secret'],
    root_hash: ['fixture-private-root-hash', 'private'],
  });
});

test('os/parameters.json: no secret when the view carries none; private values are present', () => {
  const full = loadView('full');
  const params = renderOsParameters({ ...full, secretParams: {} });
  assert.deepEqual(params, {
    image: ['debian-12-private', 'private'],
    mirror: ['http://deb.debian.org/debian', 'public'],
    root_hash: ['fixture-private-root-hash', 'private'],
  });
  const body = JSON.stringify(params);
  for (const v of Object.values(full.secretParams)) assert.ok(!body.includes(v));
  assert.ok(!body.includes('"secret"'));
});

test('os/parameters.json: empty for an instance without parameters; a name like hasOwnProperty stays a name', () => {
  assert.deepEqual(renderOsParameters(loadView('minimal')), {});
  const edge = JSON.parse(JSON.stringify(renderOsParameters(loadView('edge')))) as Record<string, unknown>;
  assert.deepEqual(edge, JSON.parse('{"hasOwnProperty": ["proto-param", "public"], "image": ["private-image", "private"]}'));
});

test('deterministic and pure: same inputs, same output; the view is not modified', () => {
  for (const name of INSTANCES) {
    const view = loadView(name);
    const before = structuredClone(view);
    assert.equal(jsonText(renderGanetiMetaData(view, 'latest')), jsonText(renderGanetiMetaData(view, 'latest')));
    assert.equal(jsonText(renderOsParameters(view)), jsonText(renderOsParameters(view)));
    assert.deepEqual(view, before);
  }
});
