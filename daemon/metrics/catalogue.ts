/**
 * Every metric metad exports, as data: name, type, labels and meaning. daemon/metrics/metrics.ts
 * builds the Prometheus registry from it and `metad metrics-reference` prints docs/metrics.md
 * from it (a test keeps the two equal, and another scrapes a live daemon for every name).
 */

export interface MetricDef {
  readonly type: 'counter' | 'gauge' | 'histogram';
  readonly help: string;
  readonly labels: readonly string[];
}

export const METRICS = {
  metad_build_info: { type: 'gauge', help: 'Always 1; the version label names the running build.', labels: ['version'] },
  metad_guest_answers_total: {
    type: 'counter',
    help: 'Answers the guest door sent, by dialect (ec2, openstack, ganeti; none: refused before routing — unknown source, rate limit) and HTTP status.',
    labels: ['dialect', 'status'],
  },
  metad_guest_answer_seconds: {
    type: 'histogram',
    help: "Time from a guest request's arrival to its answer being handed to the socket.",
    labels: [],
  },
  metad_guest_cache_total: {
    type: 'counter',
    help: 'GET/HEAD requests answered from the per-instance cache of prepared answers (hit) or rendered (miss).',
    labels: ['result'],
  },
  metad_guest_events_total: {
    type: 'counter',
    help: 'Guest-triggered events, logged or held back by the log sampler: conn_cap (per-source connection cap), unknown_source, refused (4xx other than 404, 5xx), token_refused, password_set, pipe_full, script_refused.',
    labels: ['event'],
  },
  metad_guest_tokens_issued_total: { type: 'counter', help: 'IMDSv2 session tokens issued.', labels: [] },
  metad_instances: { type: 'gauge', help: 'Registered instances.', labels: [] },
  metad_secrets_held: {
    type: 'gauge',
    help: 'Secret parameter values held in memory (live, claimed or expired and not yet swept).',
    labels: [],
  },
  metad_pipe_bytes_queued: { type: 'gauge', help: 'Bytes waiting in the pipes, by direction (to_guest, to_host).', labels: ['direction'] },
  metad_state_quarantined_files: {
    type: 'gauge',
    help: 'State files quarantined at the start (they failed their MAC or did not parse).',
    labels: [],
  },
  metad_comm_reconciles_total: {
    type: 'counter',
    help: 'Comm network reconciles (network.mode routed or bridged), by result (ok, failed).',
    labels: ['result'],
  },
  metad_comm_reconcile_seconds: {
    type: 'histogram',
    help: 'Duration of the successful comm network reconciles (routes, addresses, nftables table, DHCP hosts).',
    labels: [],
  },
  metad_comm_dropped_packets_total: {
    type: 'counter',
    help: "Packets the comm network's nftables rules dropped, read from the kernel's named counters in metad's tables (at most once a second), by reason: spoofed (a source MAC, IPv4, IPv6, ARP sender or DHCP chaddr that is not the tap's registered one), refused (a registered tap's traffic to anything but the metadata door and DHCP, forwarding, IPv4 fragments, door replies leaving elsewhere; bridged: a port that is no registered tap), held (taps held closed: released, an install job's, not yet a port; bridged: ports metad does not know). The table is replaced whole on every reconcile; each replace declares the counters again with the values read just before, so they run on across reconciles and metad restarts (packets dropped in the few ms between that read and the replace are not counted); deleting the table (network.mode off, `metad network teardown`) starts them again.",
    labels: ['reason'],
  },
  metad_comm_set_elements: {
    type: 'gauge',
    help: "Elements of each nftables set in metad's tables, by family (inet, bridge) and set (taps, nic4, nicmac, chaddr, held, guest_tcp; bridged: ports, macs), read from the kernel.",
    labels: ['family', 'set'],
  },
  metad_comm_rules: {
    type: 'gauge',
    help: "Rules in metad's nftables tables, by family, read from the kernel (fixed for a mode and configuration: instances only add set elements).",
    labels: ['family'],
  },
  metad_dhcp_leases: {
    type: 'gauge',
    help: "Leases metad's dnsmasq (network.dhcp.mode managed) granted (DHCPACK) that have neither ended nor been released; dnsmasq keeps them in memory only, so a restart empties it.",
    labels: [],
  },
  metad_dnsmasq_up: {
    type: 'gauge',
    help: "1 while metad's dnsmasq runs; 0 while it is down (restarting) or when metad runs none (network off, an operator's DHCP server).",
    labels: [],
  },
  metad_dnsmasq_restarts_total: {
    type: 'counter',
    help: 'dnsmasq starts after the first: a changed config, a NIC removed or readdressed (its lease would hold the address), or after it died.',
    labels: [],
  },
  metad_ganeti_pushes_total: {
    type: 'counter',
    help: "Instances Ganeti's node daemon pushed through the feed socket (config `ganeti`), by result: applied, refused (answered with Ganeti's error form), failed (a bug; incident in the log).",
    labels: ['result'],
  },
  metad_ganeti_secret_windows_total: {
    type: 'counter',
    help: 'Ganeti secret windows (secret parameters a push carried) that ended, by outcome: claimed, and those nobody claimed: expired (TTL), stuck (the comm tap went down), withdrawn (a later push), lost (metad restarted), removed (the instance was).',
    labels: ['outcome'],
  },
  metad_jobs: {
    type: 'gauge',
    help: 'Install job records, by state (queued, pending, booting, running, succeeded, failed, timed-out, aborted, stuck; each exported, 0 when none).',
    labels: ['state'],
  },
  metad_leftovers: {
    type: 'gauge',
    help: 'Things install runs, recovery or the sweep could not remove yet (retried; GET /v1/health lists them).',
    labels: [],
  },
  metad_store_write_seconds: {
    type: 'histogram',
    help: "Durable state-dir changes (an instance's state file written: temp, fsync, rename, directory fsync; or removed), by op (write, remove), failed ones included.",
    labels: ['op'],
  },
  metad_store_write_failures_total: {
    type: 'counter',
    help: 'State-dir changes that failed (the admin door answered 503, the Ganeti feed refused the push), by op (write, remove).',
    labels: ['op'],
  },
  metad_jobs_ended_total: {
    type: 'counter',
    help: 'Install jobs that ended since the start, by outcome (succeeded, failed, timed-out, aborted, stuck; each exported from the start at 0).',
    labels: ['outcome'],
  },
  metad_job_seconds: {
    type: 'histogram',
    help: 'Install jobs that ended: time from the job leaving the queue (its request, if it never left) to its end.',
    labels: [],
  },
  metad_job_deadline_destroy_seconds: {
    type: 'histogram',
    help: "Install jobs that hit their hard deadline: time from the deadline until the domain was gone (the runner's destroy).",
    labels: [],
  },
} as const satisfies Record<string, MetricDef>;

export type MetricName = keyof typeof METRICS;

/** docs/metrics.md, generated. */
export function metricsReference(): string {
  const rows = Object.entries(METRICS).map(
    ([name, m]: [string, MetricDef]) =>
      `| \`${name}\` | ${m.type} | ${m.labels.length > 0 ? m.labels.map((l) => `\`${l}\``).join(', ') : '—'} | ${m.help} |`,
  );
  return [
    '# metad metrics',
    '',
    'Generated by `metad metrics-reference` from daemon/metrics/catalogue.ts; a test keeps this page equal to it.',
    '',
    'Prometheus text format on the admin socket: `curl --unix-socket /run/metad/admin.sock http://metad/v1/metrics`',
    "(the guest door never serves metrics). Beside these, prom-client's default process metrics",
    '(`process_cpu_seconds_total`, `process_resident_memory_bytes`, `nodejs_eventloop_lag_seconds`, `nodejs_heap_size_used_bytes`, …).',
    "Counters count from the daemon's start, except metad_comm_dropped_packets_total, which the kernel keeps (its row says how).",
    '',
    '| metric | type | labels | meaning |',
    '|---|---|---|---|',
    ...rows,
    '',
  ].join('\n');
}
