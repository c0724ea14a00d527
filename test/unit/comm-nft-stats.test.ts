/**
 * The nftables counters, set sizes and rule counts metrics read (daemon/comm/nft-stats.ts): the
 * parsing of `nft -j` output as nftables 1.0.6 prints it, the counters carried across a replace,
 * and the one-second cache a burst of scrapes shares. The kernel side (a spoofed packet moving
 * the counter, the count surviving a reconcile) is test/integration/comm-nft-counters.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { counterDecl, parseCounters, parseTables } from '../../daemon/comm/nft-stats.js';
import { buildRuleset, type CommNic } from '../../daemon/comm/plan.js';
import { buildBridgedRuleset } from '../../daemon/comm/bridge-plan.js';
import { LinuxCommNetwork } from '../../daemon/comm/linux.js';
import { BridgedCommNetwork } from '../../daemon/comm/bridged.js';
import type { Exec } from '../../daemon/comm/exec.js';
import { BRIDGED_SETTINGS, ROUTED_SETTINGS } from '../support/comm-settings.js';
import { sinkLogger } from '../support/sink.js';
import { FakeClock } from '../fakes/fake-clock.js';

const META = { metainfo: { version: '1.0.6', release_name: 'Lester Gooch #5', json_schema_version: 1 } };

/** `nft -j list counters` on a host with metad's tables and another table's counter of the same name. */
const COUNTERS = JSON.stringify({
  nftables: [
    META,
    { counter: { family: 'inet', name: 'spoofed', table: 'metad', handle: 2, packets: 5, bytes: 300 } },
    { counter: { family: 'inet', name: 'refused', table: 'metad', handle: 3, packets: 0, bytes: 0 } },
    { counter: { family: 'bridge', name: 'spoofed', table: 'metad', handle: 2, packets: 7, bytes: 420 } },
    { counter: { family: 'inet', name: 'spoofed', table: 'other', handle: 2, packets: 99, bytes: 9900 } },
  ],
});

/** `nft -j list table inet metad` (shortened). */
const TABLE_INET = JSON.stringify({
  nftables: [
    META,
    { table: { family: 'inet', name: 'metad', handle: 1 } },
    { counter: { family: 'inet', name: 'spoofed', table: 'metad', handle: 2, packets: 5, bytes: 300 } },
    { counter: { family: 'inet', name: 'refused', table: 'metad', handle: 3, packets: 2, bytes: 120 } },
    { counter: { family: 'inet', name: 'held', table: 'metad', handle: 4, packets: 1, bytes: 60 } },
    { set: { family: 'inet', name: 'taps', table: 'metad', type: 'ifname', handle: 5, elem: ['mtap1', 'mtap2'] } },
    {
      set: {
        family: 'inet',
        name: 'nic4',
        table: 'metad',
        type: ['ifname', 'ipv4_addr'],
        handle: 6,
        elem: [{ concat: ['mtap1', '169.254.1.10'] }, { concat: ['mtap2', '169.254.1.11'] }],
      },
    },
    { set: { family: 'inet', name: 'held', table: 'metad', type: 'ifname', handle: 7 } },
    { chain: { family: 'inet', table: 'metad', name: 'c', handle: 1, type: 'filter', hook: 'input', prio: 0, policy: 'accept' } },
    { rule: { family: 'inet', table: 'metad', chain: 'c', handle: 8, expr: [{ counter: 'spoofed' }, { drop: null }] } },
    { rule: { family: 'inet', table: 'metad', chain: 'c', handle: 9, expr: [{ counter: 'refused' }, { drop: null }] } },
  ],
});
const TABLE_BRIDGE = JSON.stringify({
  nftables: [
    META,
    { counter: { family: 'bridge', name: 'spoofed', table: 'metad', handle: 2, packets: 7, bytes: 420 } },
    { set: { family: 'bridge', name: 'ports', table: 'metad', type: 'ifname', handle: 3, elem: ['mtap1'] } },
    { rule: { family: 'bridge', table: 'metad', chain: 'p', handle: 4, expr: [{ drop: null }] } },
  ],
});

test('counters: only metad table, by family and name; another table of the same counter names is ignored', () => {
  const c = parseCounters(COUNTERS, 'metad');
  assert.deepEqual(
    [...c],
    [
      ['inet spoofed', { packets: 5, bytes: 300 }],
      ['inet refused', { packets: 0, bytes: 0 }],
      ['bridge spoofed', { packets: 7, bytes: 420 }],
    ],
  );
  assert.equal(parseCounters('', 'metad').size, 0, 'no output (no table yet) is no counters');
  assert.equal(
    parseCounters('{"nftables": [{"counter": {"family": "inet", "name": "x", "table": "metad", "packets": -1}}]}', 'metad').get('inet x')
      ?.packets,
    0,
  );
});

test('tables: drops summed over families by counter name, set sizes (empty set: 0), rules per family', () => {
  const st = parseTables([TABLE_BRIDGE, TABLE_INET], 'metad');
  assert.deepEqual(
    [...st.dropped],
    [
      ['spoofed', 12],
      ['refused', 2],
      ['held', 1],
    ],
  );
  assert.deepEqual(st.sets, [
    { family: 'bridge', set: 'ports', elements: 1 },
    { family: 'inet', set: 'taps', elements: 2 },
    { family: 'inet', set: 'nic4', elements: 2 },
    { family: 'inet', set: 'held', elements: 0 },
  ]);
  assert.deepEqual(
    [...st.rules],
    [
      ['bridge', 1],
      ['inet', 2],
    ],
  );
});

const NIC: CommNic = { instance: 'a', tap: 'mtap1', ipv4: '169.254.1.10', mac: '02:00:00:00:01:0a' };

test('a replacing ruleset declares each counter again with the values read before it (routed and bridged)', () => {
  const carried = parseCounters(COUNTERS, 'metad');
  assert.equal(counterDecl('inet', 'refused', carried), '  counter refused { }', 'zero needs no values');
  const routed = buildRuleset([NIC], ROUTED_SETTINGS, [], carried);
  assert.match(routed, /^ {2}counter spoofed \{ packets 5 bytes 300 \}$/m);
  assert.match(routed, /^ {2}counter refused \{ \}$/m);
  assert.match(routed, /^ {2}counter held \{ \}$/m);
  assert.doesNotMatch(routed, /packets 7|packets 99/, "the bridge table's and another table's counters stay theirs");
  const bridged = buildBridgedRuleset([NIC], [], BRIDGED_SETTINGS, [], carried);
  const [bridge, inet] = bridged.split('\ntable inet metad {');
  assert.match(bridge ?? '', /counter spoofed \{ packets 7 bytes 420 \}/);
  assert.match(inet ?? '', /counter refused \{ \}/);
  assert.equal(buildRuleset([NIC], ROUTED_SETTINGS), buildRuleset([NIC], ROUTED_SETTINGS, [], new Map()), 'nothing read: as before');
});

/** A scripted ip/nft: no links but the anchor, `nft -j list counters` and `list table` answer the fixtures. */
function host(failCounters = false): Exec & { calls: string[]; scripts: string[] } {
  const calls: string[] = [];
  const scripts: string[] = [];
  const exec = ((file: string, args: readonly string[], input?: string) => {
    const line = `${file.split('/').pop()!} ${args.join(' ')}`;
    calls.push(line);
    if (line === 'nft -f -') scripts.push(input ?? '');
    let stdout = '';
    if (file.endsWith('ip') && args[0] === '-j')
      stdout = args.includes('route') ? '[]' : JSON.stringify([{ ifname: 'metad0', ifindex: 2, flags: ['UP'] }]);
    if (line === 'nft -j list counters')
      return Promise.resolve(failCounters ? { code: 1, stdout: '', stderr: 'Error' } : { code: 0, stdout: COUNTERS, stderr: '' });
    if (line === 'nft -j list table inet metad') stdout = TABLE_INET;
    if (line === 'nft -j list table bridge metad') stdout = TABLE_BRIDGE;
    return Promise.resolve({ code: 0, stdout, stderr: '' });
  }) as Exec & { calls: string[]; scripts: string[] };
  exec.calls = calls;
  exec.scripts = scripts;
  return exec;
}

test('a reconcile reads the counters just before its replace and carries them; a failed read starts them again', async () => {
  const exec = host();
  const net = new LinuxCommNetwork({
    settings: ROUTED_SETTINGS,
    ipPath: '/usr/sbin/ip',
    nftPath: '/usr/sbin/nft',
    log: sinkLogger().log,
    exec,
  });
  await net.reconcile([NIC]);
  const replace = exec.calls.indexOf('nft -f -');
  assert.equal(exec.calls[replace - 1], 'nft -j list counters', exec.calls.join('\n'));
  assert.match(exec.scripts[0] ?? '', /counter spoofed \{ packets 5 bytes 300 \}/);

  const failing = host(true);
  const net2 = new LinuxCommNetwork({
    settings: ROUTED_SETTINGS,
    ipPath: '/usr/sbin/ip',
    nftPath: '/usr/sbin/nft',
    log: sinkLogger().log,
    exec: failing,
  });
  await net2.reconcile([NIC]);
  assert.match(failing.scripts[0] ?? '', /counter spoofed \{ \}/, 'the reconcile goes on with fresh counters');
});

test('a burst of scrapes within a second runs nft once (per family); the next second reads again', async () => {
  const clock = new FakeClock();
  const exec = host();
  const net = new BridgedCommNetwork({
    settings: BRIDGED_SETTINGS,
    ipPath: '/usr/sbin/ip',
    nftPath: '/usr/sbin/nft',
    log: sinkLogger().log,
    exec,
    clock,
  });
  const reads = () => exec.calls.filter((c) => c.startsWith('nft -j list table')).length;
  const all = await Promise.all(Array.from({ length: 20 }, () => net.nftStats()));
  assert.equal(reads(), 2, exec.calls.join('\n'));
  assert.equal(all[19]?.dropped.get('spoofed'), 12);
  await clock.advance(999);
  await net.nftStats();
  assert.equal(reads(), 2);
  await clock.advance(1);
  await net.nftStats();
  assert.equal(reads(), 4);
});

test('a failed read is no numbers (the metrics leave the series out), not an error', async () => {
  const exec: Exec = () => Promise.resolve({ code: 1, stdout: '', stderr: 'Error: No such file or directory' });
  const net = new LinuxCommNetwork({
    settings: ROUTED_SETTINGS,
    ipPath: '/usr/sbin/ip',
    nftPath: '/usr/sbin/nft',
    log: sinkLogger().log,
    exec,
  });
  assert.equal(await net.nftStats(), undefined);
});
