/**
 * The Prometheus registry (prom-client) of one daemon. Every value is read when Prometheus
 * scrapes, from counters the owners keep anyway (GuestCounters, the guest log's event totals,
 * the token issuer, the store, vault, pipes, jobs, leftovers, comm controller): nothing on a
 * request's path calls prom-client. The sources are functions the composition root wires.
 */
import {
  Counter,
  collectDefaultMetrics,
  Gauge,
  Histogram,
  Registry,
  type MetricObjectWithValues,
  type MetricValueWithName,
} from 'prom-client';
import { LATENCY_BUCKETS, type GuestCounters } from './guest-counters.js';
import { METRICS, type MetricName } from './catalogue.js';
import type { DhcpStatus } from '../comm/dnsmasq.js';
import type { NftStats } from '../comm/nft-stats.js';
import { RECONCILE_BUCKETS, type CommCounters } from './comm-counters.js';
import { DEADLINE_DESTROY_BUCKETS, JOB_SECONDS_BUCKETS, JOB_STATES, type JobCounters } from './job-counters.js';
import { STORE_WRITE_BUCKETS, type StoreWrites } from './store-writes.js';

export interface MetricSources {
  readonly version: string;
  readonly guest: GuestCounters;
  readonly guestEvents: () => ReadonlyMap<string, number>;
  readonly tokensIssued: () => number;
  readonly instances: () => number;
  readonly secretsHeld: () => number;
  readonly pipeBytes: () => { toGuestBytes: number; toHostBytes: number };
  readonly quarantined: () => number;
  readonly reconciles: () => { ok: number; failed: number } | undefined;
  readonly ganetiPushes: () => { applied: number; refused: number; failed: number } | undefined;
  readonly jobStates: () => readonly string[];
  /** Ganeti secret windows ended since the start, by how (undefined: no ganeti feed). */
  readonly ganetiSecretWindows?: () => Readonly<Record<string, number>> | undefined;
  readonly leftovers: () => number;
  /** The state dir's durable writes (the store's file primitives, wrapped by the composition root). */
  readonly storeWrites: StoreWrites;
  /** Install jobs that ended (fed by the job manager's 'ended' event). */
  readonly jobCounters: JobCounters;
  /** Comm network reconciles (fed by the controller's 'reconcileEnded' event). */
  readonly commCounters: CommCounters;
  /** metad's dnsmasq; undefined without one (network off, an operator's DHCP server). */
  readonly dhcp: () => DhcpStatus | undefined;
  /** What nftables counts in metad's tables (cached a second by the network); undefined without a comm network. */
  readonly nftStats?: () => Promise<NftStats | undefined>;
}

/** camelCase guest-log event names as snake_case label values, without their 'guest' prefix. */
export function eventLabel(event: string): string {
  return event.replace(/^guest/, '').replace(/[A-Z]/g, (c, i: number) => `${i === 0 ? '' : '_'}${c.toLowerCase()}`);
}

/** A histogram's numbers as kept by their owner (GuestCounters, Buckets): per bucket, not cumulative. */
interface BucketView {
  readonly bounds: readonly number[];
  readonly counts: ArrayLike<number>;
  readonly sum: number;
  readonly count: number;
}

/** A Histogram whose buckets are kept elsewhere (read at scrape time, never observed here), one series per label set. */
class ScrapedHistogram extends Histogram {
  constructor(
    private readonly metric: MetricName,
    private readonly series: () => readonly { labels: Record<string, string>; view: BucketView }[],
    bounds: readonly number[],
    registry: Registry,
  ) {
    const def = METRICS[metric];
    super({ name: metric, help: def.help, labelNames: [...def.labels], buckets: [...bounds], registers: [registry] });
  }

  /** What the registry formats (prom-client's text path calls getForPromString when a metric has one). */
  getForPromString(): Promise<MetricObjectWithValues<MetricValueWithName<string>>> {
    return Promise.resolve(this.snapshot());
  }

  override get(): Promise<MetricObjectWithValues<MetricValueWithName<string>>> {
    return Promise.resolve(this.snapshot());
  }

  private snapshot(): MetricObjectWithValues<MetricValueWithName<string>> {
    const name = this.metric;
    const values: MetricValueWithName<string>[] = [];
    for (const { labels, view } of this.series()) {
      let cumulative = 0;
      view.bounds.forEach((le, i) => {
        cumulative += view.counts[i] ?? 0;
        values.push({ labels: { ...labels, le }, value: cumulative, metricName: `${name}_bucket` });
      });
      cumulative += view.counts[view.bounds.length] ?? 0;
      values.push({ labels: { ...labels, le: '+Inf' }, value: cumulative, metricName: `${name}_bucket` });
      values.push({ labels, value: view.sum, metricName: `${name}_sum` });
      values.push({ labels, value: view.count, metricName: `${name}_count` });
    }
    return {
      name,
      help: METRICS[name].help,
      // prom-client's typings declare MetricType as a numeric enum it never exports; the text
      // format needs the string.
      type: 'histogram' as unknown as MetricObjectWithValues<MetricValueWithName<string>>['type'],
      aggregator: 'sum' as const,
      collect: () => undefined,
      values,
    };
  }
}

export class Metrics {
  readonly registry = new Registry();

  constructor(src: MetricSources) {
    const r = this.registry;
    collectDefaultMetrics({ register: r });
    /** Values a source sets at scrape time: `set(labels, v)` on a gauge, or on a counter whose total is kept elsewhere. */
    type Collect = (set: (labels: Record<string, string>, v: number) => void) => void | Promise<void>;
    const scraped = (Kind: typeof Gauge | typeof Counter, name: MetricName, collect: Collect): void => {
      const def = METRICS[name];
      new Kind({
        name,
        help: def.help,
        labelNames: [...def.labels],
        registers: [r],
        collect(this: Gauge | Counter) {
          this.reset();
          return collect((labels, v) => (this instanceof Gauge ? this.set(labels, v) : this.inc(labels, v)));
        },
      });
    };
    const gauge = (name: MetricName, collect: Collect): void => scraped(Gauge, name, collect);
    const counter = (name: MetricName, collect: Collect): void => scraped(Counter, name, collect);

    gauge('metad_build_info', (set) => set({ version: src.version }, 1));
    counter('metad_guest_answers_total', (set) => {
      for (const a of src.guest.answerCounts()) set({ dialect: a.dialect, status: String(a.status) }, a.count);
    });
    const g = src.guest;
    new ScrapedHistogram(
      'metad_guest_answer_seconds',
      () => [{ labels: {}, view: { bounds: LATENCY_BUCKETS, counts: g.buckets, sum: g.latencySum, count: g.latencyCount } }],
      LATENCY_BUCKETS,
      r,
    );
    counter('metad_guest_cache_total', (set) => {
      set({ result: 'hit' }, src.guest.cacheHits);
      set({ result: 'miss' }, src.guest.cacheMisses);
    });
    counter('metad_guest_events_total', (set) => {
      for (const [event, n] of src.guestEvents()) set({ event: eventLabel(event) }, n);
    });
    counter('metad_guest_tokens_issued_total', (set) => set({}, src.tokensIssued()));
    gauge('metad_instances', (set) => set({}, src.instances()));
    gauge('metad_secrets_held', (set) => set({}, src.secretsHeld()));
    gauge('metad_pipe_bytes_queued', (set) => {
      const p = src.pipeBytes();
      set({ direction: 'to_guest' }, p.toGuestBytes);
      set({ direction: 'to_host' }, p.toHostBytes);
    });
    gauge('metad_state_quarantined_files', (set) => set({}, src.quarantined()));
    counter('metad_comm_reconciles_total', (set) => {
      const c = src.reconciles();
      if (!c) return;
      set({ result: 'ok' }, c.ok);
      set({ result: 'failed' }, c.failed);
    });
    new ScrapedHistogram(
      'metad_comm_reconcile_seconds',
      () => [{ labels: {}, view: src.commCounters.reconcileSeconds }],
      RECONCILE_BUCKETS,
      r,
    );
    const nft = src.nftStats;
    counter('metad_comm_dropped_packets_total', async (set) => {
      const st = await nft?.();
      for (const [reason, n] of st?.dropped ?? []) set({ reason }, n);
    });
    gauge('metad_comm_set_elements', async (set) => {
      for (const e of (await nft?.())?.sets ?? []) set({ family: e.family, set: e.set }, e.elements);
    });
    gauge('metad_comm_rules', async (set) => {
      for (const [family, n] of (await nft?.())?.rules ?? []) set({ family }, n);
    });
    gauge('metad_dhcp_leases', (set) => {
      const d = src.dhcp();
      if (d) set({}, d.leases);
    });
    gauge('metad_dnsmasq_up', (set) => {
      const d = src.dhcp();
      if (d) set({}, d.running ? 1 : 0);
    });
    counter('metad_dnsmasq_restarts_total', (set) => {
      const d = src.dhcp();
      if (d) set({}, d.restarts);
    });
    counter('metad_ganeti_pushes_total', (set) => {
      const p = src.ganetiPushes();
      if (!p) return;
      set({ result: 'applied' }, p.applied);
      set({ result: 'refused' }, p.refused);
      set({ result: 'failed' }, p.failed);
    });
    counter('metad_ganeti_secret_windows_total', (set) => {
      for (const [outcome, n] of Object.entries(src.ganetiSecretWindows?.() ?? {})) set({ outcome }, n);
    });
    gauge('metad_jobs', (set) => {
      const by = new Map<string, number>(JOB_STATES.map((s) => [s, 0]));
      for (const s of src.jobStates()) by.set(s, (by.get(s) ?? 0) + 1);
      for (const [state, n] of by) set({ state }, n);
    });
    gauge('metad_leftovers', (set) => set({}, src.leftovers()));
    const sw = src.storeWrites;
    new ScrapedHistogram(
      'metad_store_write_seconds',
      () => (['write', 'remove'] as const).map((op) => ({ labels: { op }, view: sw.latency[op] })),
      STORE_WRITE_BUCKETS,
      r,
    );
    counter('metad_store_write_failures_total', (set) => {
      for (const op of ['write', 'remove'] as const) set({ op }, sw.failures[op]);
    });
    const jc = src.jobCounters;
    counter('metad_jobs_ended_total', (set) => {
      for (const [outcome, n] of jc.outcomes) set({ outcome }, n);
    });
    new ScrapedHistogram('metad_job_seconds', () => [{ labels: {}, view: jc.duration }], JOB_SECONDS_BUCKETS, r);
    new ScrapedHistogram(
      'metad_job_deadline_destroy_seconds',
      () => [{ labels: {}, view: jc.deadlineToDestroy }],
      DEADLINE_DESTROY_BUCKETS,
      r,
    );
  }

  /** The Prometheus text exposition and its content type. */
  async exposition(): Promise<{ contentType: string; text: string }> {
    return { contentType: this.registry.contentType, text: await this.registry.metrics() };
  }
}
