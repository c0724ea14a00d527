/**
 * The metrics catalogue, its generated page, and the exposition built from scrape-time sources.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { METRICS, metricsReference } from '../../daemon/metrics/catalogue.js';
import { GuestCounters, LATENCY_BUCKETS } from '../../daemon/metrics/guest-counters.js';
import { eventLabel, Metrics, type MetricSources } from '../../daemon/metrics/metrics.js';

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
