/**
 * The Ganeti feed's mapping (daemon/feeds/ganeti-map.ts): every field of a push, the
 * communication NIC rules, what a re-push keeps, and refusals that name Ganeti's fields and
 * never a value. Pushes are shaped as Ganeti 3.0's `objects.Instance.ToDict()` (plus the
 * `osparams_*` UpdateMetadata adds); the integration test feeds real ones.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mapGanetiPush, pushedName, COMM_NIC_PREFIX } from '../../daemon/feeds/ganeti-map.js';
import { DaemonError } from '../../daemon/errors.js';
import type { InstanceInput, PublicDoc } from '../../daemon/registry/model.js';

const UUID = '6f1c0e9a-1b2c-4d3e-8f40-5a6b7c8d9e0f';

/** A push as Ganeti 3.0's node daemon sends it after `gnt-instance add` (UpdateMetadata). */
function push(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    name: 'web1.example.com',
    uuid: UUID,
    os: 'debootstrap+bookworm',
    hypervisor: 'kvm',
    hvparams: {},
    beparams: { maxmem: 1024, minmem: 512, vcpus: 2 },
    osparams: { image: 'debian-12' },
    osparams_private: { 'root-password': 'p' },
    osparams_secret: { 'ssh-key': 'k' },
    admin_state: 'up',
    nics: [
      { name: 'eth0', mac: '52:54:00:12:00:01', ip: '10.0.0.5', nicparams: { mode: 'bridged', link: 'br0' }, network: 'b7c1', uuid: 'n0' },
      {
        name: `${COMM_NIC_PREFIX}web1`,
        mac: '52:54:00:AB:CD:EF',
        ip: '169.254.10.2',
        nicparams: { mode: 'routed', link: 'communication_rt' },
        uuid: 'n1',
      },
    ],
    disks: ['d-uuid-0'],
    serial_no: 3,
    ...over,
  };
}

/** The DaemonError a refused push throws, as `{message, details}`. */
function refusal(fn: () => unknown): { message: string; details: { path: string; message: string }[] } {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof DaemonError, String(err));
    assert.equal(err.code, 'InvalidInput');
    return { message: err.message, details: err.details };
  }
  assert.fail('the push was accepted');
}
const paths = (fn: () => unknown): string[] => refusal(fn).details.map((d) => d.path);

/** The document a push stores (it must store one). */
function stored(arg: unknown, prev?: PublicDoc): InstanceInput {
  const r = mapGanetiPush(arg, prev);
  assert.ok(r.input, 'the push stores an instance');
  return r.input;
}

describe('a Ganeti push as an instance document', () => {
  it('maps every field Ganeti sends', () => {
    const r = mapGanetiPush(push());
    assert.equal(r.name, 'web1.example.com');
    assert.deepEqual(r.secret, { 'ssh-key': 'k' });
    assert.deepEqual(r.input, {
      name: 'web1.example.com',
      uuid: UUID,
      hostname: 'web1.example.com',
      origin: 'ganeti',
      comm: { mac: '52:54:00:ab:cd:ef', ipv4: '169.254.10.2' },
      nics: [{ mac: '52:54:00:12:00:01', network: 'b7c1' }],
      os: { name: 'debootstrap+bookworm', variant: 'bookworm' },
      hardware: { memoryMiB: 1024, vcpus: 2 },
      params: { public: { image: 'debian-12' }, private: { 'root-password': 'p' }, secret: { 'ssh-key': 'k' } },
    });
  });

  it('an OS without a variant has none; no OS, no beparams, no params: those parts are absent, private is emptied', () => {
    assert.deepEqual(mapGanetiPush(push({ os: 'noop' })).input?.os, { name: 'noop' });
    const bare = mapGanetiPush(push({ os: null, beparams: {}, osparams: {}, osparams_private: {}, osparams_secret: {} })).input;
    assert.equal(bare?.os, undefined);
    assert.equal(bare?.hardware, undefined);
    // private is always given: a push without private values clears the stored ones.
    assert.deepEqual(bare?.params, { private: {} });
  });

  it('memory comes from beparams.maxmem, or from the older beparams.memory', () => {
    assert.equal(mapGanetiPush(push({ beparams: { memory: 256 } })).input?.hardware?.memoryMiB, 256);
    assert.equal(mapGanetiPush(push({ beparams: { maxmem: 512, memory: 256 } })).input?.hardware?.memoryMiB, 512);
  });

  it('a NIC with its network (netinfo, as Ganeti RPCs carry it) gets its address and gateway; without it MAC and network only', () => {
    const nics = push().nics as Record<string, unknown>[];
    const withNet = [{ ...nics[0], netinfo: { name: 'lan', network: '10.0.0.0/24', gateway: '10.0.0.1' } }, nics[1]];
    assert.deepEqual(mapGanetiPush(push({ nics: withNet })).input?.nics, [
      { mac: '52:54:00:12:00:01', network: 'b7c1', addresses: ['10.0.0.5/24'], gateway4: '10.0.0.1' },
    ]);
  });

  it('disks: from disks_info when every disk has a host path, else none (Ganeti 3.0 pushes UUIDs)', () => {
    assert.equal(mapGanetiPush(push()).input?.hardware?.disks, undefined);
    const info = [
      { dev_type: 'plain', logical_id: ['xenvg', 'web1-disk0'], size: 10240 },
      { dev_type: 'file', logical_id: ['loop', '/srv/ganeti/file-storage/web1/disk1'], size: 512 },
    ];
    assert.deepEqual(mapGanetiPush(push({ disks_info: info })).input?.hardware?.disks, [
      { path: '/dev/xenvg/web1-disk0', format: 'raw', sizeGiB: 10 },
      { path: '/srv/ganeti/file-storage/web1/disk1', format: 'raw', sizeGiB: 0.5 },
    ]);
    const drbd = { dev_type: 'drbd', logical_id: ['node1', 'node2', 11000, 0, 0, 'secret'], size: 1024 };
    assert.equal(mapGanetiPush(push({ disks_info: [info[0], drbd] })).input?.hardware?.disks, undefined);
  });
});

describe('the communication NIC', () => {
  it('is the first NIC whose name starts ganeti:communication:, wherever it is; the others keep their order', () => {
    const nics = [
      { name: 'eth0', mac: '52:54:00:00:00:01' },
      { name: `${COMM_NIC_PREFIX}a`, mac: '52:54:00:00:00:02', ip: '169.254.0.2' },
      { name: 'ganeti:communication', mac: '52:54:00:00:00:03', ip: '169.254.0.3' },
      { name: `${COMM_NIC_PREFIX}b`, mac: '52:54:00:00:00:04', ip: '169.254.0.4' },
      { name: null, mac: '52:54:00:00:00:05' },
    ];
    const r = stored(push({ nics }));
    assert.deepEqual(r.comm, { mac: '52:54:00:00:00:02', ipv4: '169.254.0.2' });
    assert.deepEqual(
      r.nics?.map((n) => n.mac),
      ['52:54:00:00:00:01', '52:54:00:00:00:03', '52:54:00:00:00:04', '52:54:00:00:00:05'],
    );
  });

  it('no communication NIC (none named so, or no NICs at all): nothing to store', () => {
    for (const nics of [[{ name: 'eth0', mac: '52:54:00:00:00:01', ip: '10.0.0.1' }], [], undefined, null]) {
      const r = mapGanetiPush(push({ nics }));
      assert.equal(r.input, undefined, JSON.stringify(nics));
      assert.equal(r.name, 'web1.example.com');
      assert.deepEqual(r.secret, {});
    }
  });

  it('a communication NIC without an IP address is refused, naming it', () => {
    const nics = [{ name: `${COMM_NIC_PREFIX}x`, mac: '52:54:00:00:00:02', ip: null }];
    const r = refusal(() => mapGanetiPush(push({ nics })));
    assert.deepEqual(r.details, [
      { path: 'nics[0].ip', message: 'the communication NIC has no IP address (metad identifies the guest by it)' },
    ]);
  });

  it('its address obeys the admin door rules: an IPv4, never the metadata address', () => {
    const comm = (ip: string) => [{ name: `${COMM_NIC_PREFIX}x`, mac: '52:54:00:00:00:02', ip }];
    assert.deepEqual(
      paths(() => mapGanetiPush(push({ nics: comm('169.254.169.254') }))),
      ['nics[0].ip'],
    );
    assert.deepEqual(
      paths(() => mapGanetiPush(push({ nics: comm('fe80::1') }))),
      ['nics[0].ip'],
    );
  });

  it('a re-push of the same instance keeps the tap metad recorded while the comm MAC stays, and what an admin added', () => {
    const prev: PublicDoc = {
      ...(mapGanetiPush(push()).input as PublicDoc),
      comm: { mac: '52:54:00:ab:cd:ef', ipv4: '169.254.10.2', tap: 'gnt.com.0' },
      publicKeys: [{ name: 'ops', key: 'ssh-ed25519 AAAA ops' }],
      nameservers: ['10.0.0.53'],
    };
    const again = stored(push({ osparams: { image: 'debian-13' } }), prev);
    assert.equal(again.comm.tap, 'gnt.com.0');
    assert.deepEqual(again.publicKeys, prev.publicKeys);
    assert.deepEqual(again.nameservers, ['10.0.0.53']);
    assert.deepEqual(again.params?.public, { image: 'debian-13' });
    // A new comm MAC is another NIC: its tap is not known yet.
    const nics = [{ name: `${COMM_NIC_PREFIX}web1`, mac: '52:54:00:ab:cd:00', ip: '169.254.10.2' }];
    assert.equal(mapGanetiPush(push({ nics }), prev).input?.comm.tap, undefined);
    // Another uuid under the same name is another instance (removed and re-created in Ganeti): nothing carries over.
    const other = mapGanetiPush(push({ uuid: '0b6f4c2e-5d1a-4e8b-9c3f-2a7d6e5b4c30' }), prev).input;
    assert.equal(other?.comm.tap, undefined);
    assert.equal(other?.publicKeys, undefined);
  });
});

describe('the three parameter visibilities', () => {
  it("a reinstall's osparams_public (SimpleFillOS: private and secret values merged in) never makes them public", () => {
    const r = mapGanetiPush(
      push({
        osparams: { image: 'old' },
        osparams_public: { image: 'new', mirror: 'm', 'root-password': 'p', 'ssh-key': 'k' },
        osparams_private: { 'root-password': 'p' },
        osparams_secret: { 'ssh-key': 'k' },
      }),
    ).input;
    assert.deepEqual(r?.params, {
      public: { image: 'new', mirror: 'm' },
      private: { 'root-password': 'p' },
      secret: { 'ssh-key': 'k' },
    });
  });

  it('on a clash the more private visibility keeps the name', () => {
    const r = mapGanetiPush(push({ osparams: { a: '1', b: '1' }, osparams_private: { a: '2', c: '2' }, osparams_secret: { c: '3' } }));
    assert.deepEqual(r.input?.params, { public: { b: '1' }, private: { a: '2' }, secret: { c: '3' } });
    assert.deepEqual(r.secret, { c: '3' });
  });
});

describe('refusals', () => {
  it('name the Ganeti field and the rule, never a value', () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ uuid: undefined }, 'uuid'],
      [{ uuid: 'not-a-uuid' }, 'uuid'],
      [{ name: 'Web1' }, 'name'],
      [{ os: '../../etc' }, 'os'],
      [{ beparams: { vcpus: 0 } }, 'beparams.vcpus'],
      [{ beparams: { maxmem: 'lots' } }, 'beparams.maxmem'],
      [{ osparams: { 'bad name': 'hunter2' } }, 'osparams'],
      [{ osparams_private: { pw: 7 } }, 'osparams_private.pw'],
      [{ osparams_secret: { key: 'x'.repeat(40_000) } }, 'osparams_secret.key'],
      [{ osparams_public: { 'a b': 'hunter2' } }, 'osparams_public'],
    ];
    for (const [over, field] of cases) {
      const r = refusal(() => mapGanetiPush(push(over)));
      assert.ok(
        r.details.some((d) => d.path === field),
        `${JSON.stringify(over).slice(0, 80)}: ${JSON.stringify(r.details)}`,
      );
      const text = JSON.stringify(r);
      for (const value of ['hunter2', 'Web1', 'lots', 'not-a-uuid', '../../etc', 'xxxxxxxx']) assert.ok(!text.includes(value), text);
    }
  });

  it('a push that is not an instance dict: what is wrong, by field', () => {
    assert.deepEqual(
      paths(() => mapGanetiPush('web1')),
      ['the argument'],
    );
    assert.deepEqual(
      paths(() => mapGanetiPush(push({ name: 7 }))),
      ['name'],
    );
    assert.deepEqual(
      paths(() => mapGanetiPush(push({ nics: 'eth0' }))),
      ['nics'],
    );
    assert.deepEqual(
      paths(() => mapGanetiPush(push({ nics: [{ name: `${COMM_NIC_PREFIX}x`, mac: '52:54:00:00:00:01', ip: '169.254.0.9' }, 'x'] }))),
      ['nics[1]'],
    );
    assert.deepEqual(
      paths(() => mapGanetiPush(push({ osparams_private: ['pw'] }))),
      ['osparams_private'],
    );
    assert.deepEqual(
      paths(() => mapGanetiPush(push({ beparams: 3 }))),
      ['beparams'],
    );
  });

  it('a duplicate MAC between NICs is refused at the NIC Ganeti sent', () => {
    const nics = [
      { name: `${COMM_NIC_PREFIX}x`, mac: '52:54:00:00:00:01', ip: '169.254.0.9' },
      { name: 'eth0', mac: '52:54:00:00:00:02' },
      { name: 'eth1', mac: '52:54:00:00:00:01' },
    ];
    assert.deepEqual(
      paths(() => mapGanetiPush(push({ nics }))),
      ['nics[2].mac'],
    );
  });

  it('pushedName shows a name only when it is a valid instance name', () => {
    assert.equal(pushedName(push()), 'web1.example.com');
    assert.equal(pushedName(push({ name: 'x'.repeat(300) })), undefined);
    assert.equal(pushedName(push({ name: 'a\nb' })), undefined);
    assert.equal(pushedName(null), undefined);
  });
});
