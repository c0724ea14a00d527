/**
 * The metrics catalogue, its generated page, and the exposition built from scrape-time sources.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { METRICS, metricsReference } from '../../daemon/metrics/catalogue.js';
import { GuestCounters, LATENCY_BUCKETS } from '../../daemon/metrics/guest-counters.js';
import { eventLabel, Metrics, type MetricSources } from '../../daemon/metrics/metrics.js';
import { StoreWrites, STORE_WRITE_BUCKETS } from '../../daemon/metrics/store-writes.js';
import { JobCounters } from '../../daemon/metrics/job-counters.js';
import { CommCounters } from '../../daemon/metrics/comm-counters.js';
import { InstanceStore } from '../../daemon/registry/store.js';
import { removeFileDurable, writeFileDurable } from '../../daemon/registry/persist.js';
import { Keyring } from '../../daemon/registry/keys.js';
import { validateInstance } from '../../daemon/registry/validate.js';
import { sampleInstance } from '../support/daemon.js';
import { sinkLogger } from '../support/sink.js';
import { FakeClock } from '../fakes/fake-clock.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

test('docs/metrics.md is what `metad metrics-reference` prints', () => {
  assert.equal(readFileSync(join(ROOT, 'docs', 'metrics.md'), 'utf8'), metricsReference());
});

test('guest counters: each answer lands in the first bucket whose bound it does not exceed', () => {
  const c = new GuestCounters();
  c.answered('ec2', 200, 0.00005); // bucket 0 (≤ 0.0001)
  c.answered('ec2', 200, 0.0001); // bucket 0: the bound is inclusive
  c.answered('ganeti', 404, 0.003); // ≤ 0.005
  c.answered('none', 429, 5); // +Inf
  assert.equal(c.buckets[0], 2);
  assert.equal(c.buckets[LATENCY_BUCKETS.indexOf(0.005)], 1);
  assert.equal(c.buckets[LATENCY_BUCKETS.length], 1);
  assert.equal(c.latencyCount, 4);
  assert.deepEqual(
    [...c.answerCounts()].sort((a, b) => a.dialect.localeCompare(b.dialect)),
    [
      { dialect: 'ec2', status: 200, count: 2 },
      { dialect: 'ganeti', status: 404, count: 1 },
      { dialect: 'none', status: 429, count: 1 },
    ],
  );
});

test('event labels: camelCase guest-log events become snake_case without the guest prefix', () => {
  assert.equal(eventLabel('guestConnCap'), 'conn_cap');
  assert.equal(eventLabel('guestUnknownSource'), 'unknown_source');
  assert.equal(eventLabel('guestRefused'), 'refused');
});

function sources(over: Partial<MetricSources> = {}): MetricSources {
  return {
    version: '9.9.9',
    guest: new GuestCounters(),
    guestEvents: () => new Map([['guestUnknownSource', 3]]),
    tokensIssued: () => 7,
    instances: () => 2,
    secretsHeld: () => 1,
    pipeBytes: () => ({ toGuestBytes: 10, toHostBytes: 20 }),
    quarantined: () => 0,
    reconciles: () => ({ ok: 4, failed: 1 }),
    ganetiPushes: () => ({ applied: 3, refused: 1, failed: 0 }),
    jobStates: () => ['running', 'succeeded', 'succeeded'],
    leftovers: () => 0,
    storeWrites: new StoreWrites(() => 0),
    jobCounters: new JobCounters(),
    commCounters: new CommCounters(),
    dhcp: () => undefined,
    ...over,
  };
}

test('the exposition reads every source at scrape time, and a second scrape sees new values', async () => {
  const guest = new GuestCounters();
  let issued = 7;
  const m = new Metrics(sources({ guest, tokensIssued: () => issued }));
  guest.answered('ec2', 200, 0.0002);
  guest.answered('ec2', 200, 0.02);
  guest.cacheHits = 5;
  const { contentType, text } = await m.exposition();
  assert.match(contentType, /^text\/plain; version=0\.0\.4/);
  const line = (re: RegExp): void => assert.match(text, re);
  line(/^metad_build_info\{version="9\.9\.9"\} 1$/m);
  line(/^metad_guest_answers_total\{dialect="ec2",status="200"\} 2$/m);
  line(/^metad_guest_answer_seconds_bucket\{le="0\.0001"\} 0$/m);
  line(/^metad_guest_answer_seconds_bucket\{le="0\.00025"\} 1$/m);
  line(/^metad_guest_answer_seconds_bucket\{le="0\.025"\} 2$/m);
  line(/^metad_guest_answer_seconds_bucket\{le="\+Inf"\} 2$/m);
  line(/^metad_guest_answer_seconds_count 2$/m);
  line(/^metad_guest_cache_total\{result="hit"\} 5$/m);
  line(/^metad_guest_events_total\{event="unknown_source"\} 3$/m);
  line(/^metad_guest_tokens_issued_total 7$/m);
  line(/^metad_pipe_bytes_queued\{direction="to_host"\} 20$/m);
  line(/^metad_comm_reconciles_total\{result="failed"\} 1$/m);
  line(/^metad_jobs\{state="succeeded"\} 2$/m);
  line(/^metad_ganeti_pushes_total\{result="refused"\} 1$/m);
  line(/^process_resident_memory_bytes \d+/m);
  for (const name of Object.keys(METRICS)) assert.match(text, new RegExp(`^# TYPE ${name} `, 'm'), name);
  issued = 9;
  guest.answered('openstack', 404, 0.001);
  const again = (await m.exposition()).text;
  assert.match(again, /^metad_guest_tokens_issued_total 9$/m);
  assert.match(again, /^metad_guest_answers_total\{dialect="openstack",status="404"\} 1$/m);
  assert.match(again, /^metad_guest_answers_total\{dialect="ec2",status="200"\} 2$/m, 'a counter is not added twice across scrapes');
});

test('store writes: a real store through the wrapped file seam; each write and remove timed, a failed remove counted and still timed', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'metad-storewrites-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  let now = 0;
  const writes = new StoreWrites(() => now);
  let failRemove = false;
  const eio = Object.assign(new Error('EIO'), { code: 'EIO' });
  const files = writes.wrap({
    writeFileDurable: async (...a: Parameters<typeof writeFileDurable>) => {
      now += 3; // the fake monotonic clock: each write "takes" 3 ms
      await writeFileDurable(...a);
    },
    removeFileDurable: async (...a: Parameters<typeof removeFileDurable>) => {
      now += 6000;
      if (failRemove) throw eio;
      await removeFileDurable(...a);
    },
  });
  const store = new InstanceStore({
    dir,
    keyring: new Keyring(randomBytes(32)),
    clock: new FakeClock(),
    log: sinkLogger().log,
    commRange: '127.0.0.0/8',
    maxDocumentBytes: 65536,
    files,
  });
  await store.start();
  await store.put(validateInstance(sampleInstance(1)), true);
  await store.put(validateInstance(sampleInstance(2)), true);
  assert.equal(writes.latency.write.count, 2);
  assert.equal(writes.latency.write.counts[STORE_WRITE_BUCKETS.indexOf(0.005)], 2, '3 ms lands in the ≤ 5 ms bucket');
  failRemove = true;
  await assert.rejects(store.remove('vm1'), /state dir not writable \(EIO\)/);
  assert.equal(writes.failures.remove, 1);
  assert.equal(writes.latency.remove.count, 1, 'the failed remove is timed too');
  assert.equal(writes.latency.remove.counts[STORE_WRITE_BUCKETS.length], 1, '6 s lands in +Inf');
  failRemove = false;
  await store.remove('vm1');

  const text = (await new Metrics(sources({ storeWrites: writes })).exposition()).text;
  assert.match(text, /^metad_store_write_seconds_count\{op="write"\} 2$/m);
  assert.match(text, /^metad_store_write_seconds_bucket\{op="write",le="0\.005"\} 2$/m);
  assert.match(text, /^metad_store_write_seconds_count\{op="remove"\} 2$/m);
  assert.match(text, /^metad_store_write_seconds_bucket\{op="remove",le="1"\} 0$/m);
  assert.match(text, /^metad_store_write_seconds_bucket\{op="remove",le="\+Inf"\} 2$/m);
  assert.match(text, /^metad_store_write_failures_total\{op="remove"\} 1$/m);
  assert.match(text, /^metad_store_write_failures_total\{op="write"\} 0$/m);
});

test('job counters: each ended job once, by outcome; duration from its start (its request if it never started); deadline to destroy for timed-out jobs', async () => {
  const jc = new JobCounters();
  const at = (s: number): string => new Date(Date.UTC(2026, 0, 1, 0, 0, s)).toISOString();
  const timedOut = {
    domain: 'metad-install-aaa',
    state: 'timed-out' as const,
    outcome: 'timed-out' as const,
    requestedAt: at(0),
    startedAt: at(10),
    deadlineAt: at(70),
    endedAt: at(72),
    destroyedAt: at(71),
  };
  jc.ended(timedOut);
  jc.ended(timedOut); // told again (a second 'ended' of the same record): counted once
  jc.ended({ domain: 'metad-install-bbb', state: 'failed', outcome: 'failed', requestedAt: at(0), endedAt: at(3) });
  jc.ended({
    domain: 'metad-install-ccc',
    state: 'succeeded',
    outcome: 'succeeded',
    requestedAt: at(0),
    startedAt: at(0),
    endedAt: at(400),
  });
  assert.deepEqual(Object.fromEntries(jc.outcomes), { 'timed-out': 1, failed: 1, succeeded: 1, aborted: 0, stuck: 0 });
  assert.equal(jc.duration.count, 3);
  assert.equal(jc.duration.sum, 62 + 3 + 400);
  assert.equal(jc.deadlineToDestroy.count, 1);
  assert.equal(jc.deadlineToDestroy.sum, 1);
  const text = (await new Metrics(sources({ jobCounters: jc })).exposition()).text;
  assert.match(text, /^metad_jobs_ended_total\{outcome="timed-out"\} 1$/m);
  assert.match(text, /^metad_job_seconds_count 3$/m);
  assert.match(text, /^metad_job_seconds_bucket\{le="60"\} 1$/m);
  assert.match(text, /^metad_job_deadline_destroy_seconds_bucket\{le="1"\} 1$/m);
  assert.match(text, /^metad_job_deadline_destroy_seconds_bucket\{le="0\.5"\} 0$/m);
});

test('comm: reconciles timed and the last one kept (ok or why not); dnsmasq up, restarts and leases only when metad runs one', async () => {
  const cc = new CommCounters();
  cc.ended({ ok: true, ms: 40 }, Date.UTC(2026, 0, 1));
  cc.ended({ ok: false, error: 'nft failed' }, Date.UTC(2026, 0, 1, 0, 0, 5));
  assert.deepEqual(cc.last, { at: '2026-01-01T00:00:05.000Z', ok: false, error: 'nft failed' });
  const now: { dhcp?: { running: boolean; restarts: number; rereads: number; leases: number } } = {};
  const m = new Metrics(sources({ commCounters: cc, dhcp: () => now.dhcp }));
  const none = (await m.exposition()).text;
  assert.match(none, /^metad_comm_reconcile_seconds_count 1$/m);
  assert.match(none, /^metad_comm_reconcile_seconds_bucket\{le="0\.05"\} 1$/m);
  assert.match(none, /^metad_dnsmasq_up 0$/m, 'no dnsmasq of metad: 0');
  assert.match(none, /^metad_dhcp_leases 0$/m);
  now.dhcp = { running: true, restarts: 2, rereads: 5, leases: 3 };
  const some = (await m.exposition()).text;
  assert.match(some, /^metad_dhcp_leases 3$/m);
  assert.match(some, /^metad_dnsmasq_up 1$/m);
  assert.match(some, /^metad_dnsmasq_restarts_total 2$/m);
});

test('comm: nftables drops, set sizes and rules as read at scrape time (awaited); none without a comm network', async () => {
  let reads = 0;
  const stats = {
    dropped: new Map([
      ['spoofed', 12],
      ['held', 1],
    ]),
    sets: [{ family: 'inet', set: 'taps', elements: 3 }],
    rules: new Map([['inet', 21]]),
  };
  const m = new Metrics(
    sources({
      nftStats: async () => {
        reads++;
        await new Promise((r) => setTimeout(r, 5));
        return stats;
      },
    }),
  );
  const text = (await m.exposition()).text;
  assert.match(text, /^metad_comm_dropped_packets_total\{reason="spoofed"\} 12$/m);
  assert.match(text, /^metad_comm_dropped_packets_total\{reason="held"\} 1$/m);
  assert.match(text, /^metad_comm_set_elements\{family="inet",set="taps"\} 3$/m);
  assert.match(text, /^metad_comm_rules\{family="inet"\} 21$/m);
  assert.equal(reads, 3, 'one read per metric (the network caches them a second)');
  stats.dropped.set('spoofed', 13);
  assert.match((await m.exposition()).text, /^metad_comm_dropped_packets_total\{reason="spoofed"\} 13$/m);
  const off = (await new Metrics(sources({ nftStats: () => Promise.resolve(undefined) })).exposition()).text;
  assert.match(off, /^# TYPE metad_comm_dropped_packets_total counter$/m);
  assert.doesNotMatch(off, /^metad_comm_(dropped_packets_total|set_elements|rules)\{/m);
});
