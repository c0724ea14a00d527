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
}

/** camelCase guest-log event names as snake_case label values, without their 'guest' prefix. */
export function eventLabel(event: string): string {
  return event.replace(/^guest/, '').replace(/[A-Z]/g, (c, i: number) => `${i === 0 ? '' : '_'}${c.toLowerCase()}`);
}

/** A Histogram whose buckets are GuestCounters' (read at scrape time, not observed). */
class GuestLatency extends Histogram {
  constructor(
    private readonly counters: GuestCounters,
    registry: Registry,
  ) {
    const def = METRICS.metad_guest_answer_seconds;
    super({ name: 'metad_guest_answer_seconds', help: def.help, buckets: [...LATENCY_BUCKETS], registers: [registry] });
  }

  /** What the registry formats (prom-client's text path calls getForPromString when a metric has one). */
  getForPromString(): Promise<MetricObjectWithValues<MetricValueWithName<string>>> {
    return Promise.resolve(this.snapshot());
  }

  override get(): Promise<MetricObjectWithValues<MetricValueWithName<string>>> {
    return Promise.resolve(this.snapshot());
  }

  private snapshot(): MetricObjectWithValues<MetricValueWithName<string>> {
    const def = METRICS.metad_guest_answer_seconds;
    const c = this.counters;
    let cumulative = 0;
    const values = LATENCY_BUCKETS.map((le, i) => {
      cumulative += c.buckets[i] ?? 0;
      return { labels: { le }, value: cumulative, metricName: 'metad_guest_answer_seconds_bucket' };
    });
    cumulative += c.buckets[LATENCY_BUCKETS.length] ?? 0;
    values.push({ labels: { le: '+Inf' as unknown as number }, value: cumulative, metricName: 'metad_guest_answer_seconds_bucket' });
    return {
      name: 'metad_guest_answer_seconds',
      help: def.help,
      // prom-client's typings declare MetricType as a numeric enum it never exports; the text
      // format needs the string.
      type: 'histogram' as unknown as MetricObjectWithValues<MetricValueWithName<string>>['type'],
      aggregator: 'sum' as const,
      collect: () => undefined,
      values: [
        ...values,
        { labels: {}, value: c.latencySum, metricName: 'metad_guest_answer_seconds_sum' },
        { labels: {}, value: c.latencyCount, metricName: 'metad_guest_answer_seconds_count' },
      ],
    };
  }
}

export class Metrics {
  readonly registry = new Registry();

  constructor(src: MetricSources) {
    const r = this.registry;
    collectDefaultMetrics({ register: r });
    /** Values a source sets at scrape time: `set(labels, v)` on a gauge, or on a counter whose total is kept elsewhere. */
    type Collect = (set: (labels: Record<string, string>, v: number) => void) => void;
    const scraped = (Kind: typeof Gauge | typeof Counter, name: MetricName, collect: Collect): void => {
      const def = METRICS[name];
      new Kind({
        name,
        help: def.help,
        labelNames: [...def.labels],
        registers: [r],
        collect(this: Gauge | Counter) {
          this.reset();
          collect((labels, v) => (this instanceof Gauge ? this.set(labels, v) : this.inc(labels, v)));
        },
      });
    };
    const gauge = (name: MetricName, collect: Collect): void => scraped(Gauge, name, collect);
    const counter = (name: MetricName, collect: Collect): void => scraped(Counter, name, collect);

    gauge('metad_build_info', (set) => set({ version: src.version }, 1));
    counter('metad_guest_answers_total', (set) => {
      for (const a of src.guest.answerCounts()) set({ dialect: a.dialect, status: String(a.status) }, a.count);
    });
    new GuestLatency(src.guest, r);
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
      const by = new Map<string, number>();
      for (const s of src.jobStates()) by.set(s, (by.get(s) ?? 0) + 1);
      for (const [state, n] of by) set({ state }, n);
    });
    gauge('metad_leftovers', (set) => set({}, src.leftovers()));
  }

  /** The Prometheus text exposition and its content type. */
  async exposition(): Promise<{ contentType: string; text: string }> {
    return { contentType: this.registry.contentType, text: await this.registry.metrics() };
  }
}
