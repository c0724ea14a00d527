/**
 * What the kernel counts in metad's nftables tables, for metrics (pure parsing; the reads run in
 * daemon/comm/linux.ts through the bounded exec): the named counters the drop rules feed
 * (daemon/comm/plan.ts, bridge-plan.ts, hold-plan.ts), the sets' element counts and the rules.
 *
 * The tables are replaced whole on every reconcile, which would zero their counters: each
 * reconcile reads the counters just before its `nft -f` and declares them again with those
 * values (`counter spoofed { packets N bytes M }`), so the kernel's counts run on across replaces
 * and metad restarts. Only packets dropped between that read and the replace (a few ms) are lost.
 */

/** The named counters metad's drop rules feed: the `reason` label of metad_comm_dropped_packets_total. */
type DropCounter = 'spoofed' | 'refused' | 'held';

export interface CounterValue {
  readonly packets: number;
  readonly bytes: number;
}

/** Counter values by `<family> <name>` (e.g. `inet spoofed`), as read from the kernel. */
export type CounterValues = ReadonlyMap<string, CounterValue>;

const counterKey = (family: string, name: string): string => `${family} ${name}`;

/** A named counter's declaration inside `table <family> …`, carrying its earlier values. */
export function counterDecl(family: string, name: DropCounter, carried?: CounterValues): string {
  const c = carried?.get(counterKey(family, name));
  return c === undefined || (c.packets === 0 && c.bytes === 0)
    ? `  counter ${name} { }`
    : `  counter ${name} { packets ${String(c.packets)} bytes ${String(c.bytes)} }`;
}

export interface NftStats {
  /** Packets dropped, by counter name (summed over the table's families). */
  readonly dropped: ReadonlyMap<string, number>;
  /** Elements of each set, by `family` and `set`. */
  readonly sets: readonly { readonly family: string; readonly set: string; readonly elements: number }[];
  /** Rules, by family. */
  readonly rules: ReadonlyMap<string, number>;
}

interface NftItem {
  counter?: { family?: unknown; name?: unknown; table?: unknown; packets?: unknown; bytes?: unknown };
  set?: { family?: unknown; name?: unknown; table?: unknown; elem?: unknown };
  rule?: { family?: unknown; table?: unknown };
}

function items(json: string): NftItem[] {
  if (json.trim() === '') return [];
  const doc = JSON.parse(json) as { nftables?: unknown };
  return Array.isArray(doc.nftables) ? (doc.nftables as NftItem[]) : [];
}

const num = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : 0);

/** `nft -j list counters`: the named counters of `table` (any family), by `<family> <name>`. */
export function parseCounters(json: string, table: string): Map<string, CounterValue> {
  const out = new Map<string, CounterValue>();
  for (const { counter: c } of items(json)) {
    if (!c || c.table !== table || typeof c.family !== 'string' || typeof c.name !== 'string') continue;
    out.set(counterKey(c.family, c.name), { packets: num(c.packets), bytes: num(c.bytes) });
  }
  return out;
}

/** `nft -j list table <family> <table>`, one output per family: counters, set sizes, rule counts. */
export function parseTables(outputs: readonly string[], table: string): NftStats {
  const dropped = new Map<string, number>();
  const sets: { family: string; set: string; elements: number }[] = [];
  const rules = new Map<string, number>();
  for (const json of outputs) {
    for (const it of items(json)) {
      const c = it.counter;
      if (c && c.table === table && typeof c.name === 'string') dropped.set(c.name, (dropped.get(c.name) ?? 0) + num(c.packets));
      const s = it.set;
      if (s && s.table === table && typeof s.family === 'string' && typeof s.name === 'string') {
        sets.push({ family: s.family, set: s.name, elements: Array.isArray(s.elem) ? s.elem.length : 0 });
      }
      const r = it.rule;
      if (r && r.table === table && typeof r.family === 'string') rules.set(r.family, (rules.get(r.family) ?? 0) + 1);
    }
  }
  return { dropped, sets, rules };
}
