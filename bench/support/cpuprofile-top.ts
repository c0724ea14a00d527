/**
 * Summarize a V8 .cpuprofile (from `node --cpu-prof`, e.g. BENCH_CPU_PROF=DIR npm run bench -- guest):
 * the top functions by self time and by total (inclusive) time, and self time per module.
 *
 *   node dist/bench/support/cpuprofile-top.js FILE.cpuprofile [TOP=25]
 */
import { readFileSync } from 'node:fs';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

/** Module of a script URL: a package under node_modules, a node: builtin, or a repo path. */
function moduleOf(url: string): string {
  if (url === '') return '(native/vm)';
  if (url.startsWith('node:')) return url;
  const nm = url.lastIndexOf('/node_modules/');
  if (nm !== -1) {
    const rest = url.slice(nm + 14).split('/');
    return `pkg ${rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]}`;
  }
  const dist = url.indexOf('/dist/');
  return dist !== -1 ? url.slice(dist + 6) : url.replace(/^file:\/\//, '');
}

function label(f: CallFrame): string {
  const name = f.functionName || '(anonymous)';
  if (!f.url) return name;
  const where = f.url.replace(/^file:\/\/.*?\/(node_modules|dist)\//, '$1/');
  return `${name}  ${where}:${f.lineNumber + 1}`;
}

export function summarizeProfile(p: Profile, top = 25): string {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map<string, number>();
  const total = new Map<string, number>();
  const mods = new Map<string, number>();
  let all = 0;
  for (let i = 0; i < p.samples.length; i++) {
    const dt = (p.timeDeltas[i + 1] ?? p.timeDeltas[i] ?? 0) / 1000; // ms attributed to sample i
    const node = byId.get(p.samples[i]!);
    if (!node) continue;
    all += dt;
    const key = label(node.callFrame);
    self.set(key, (self.get(key) ?? 0) + dt);
    const mod = node.callFrame.url ? moduleOf(node.callFrame.url) : node.callFrame.functionName || '(native/vm)';
    mods.set(mod, (mods.get(mod) ?? 0) + dt);
    const seen = new Set<string>();
    for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
      const k = label(byId.get(id)!.callFrame);
      if (seen.has(k)) continue;
      seen.add(k);
      total.set(k, (total.get(k) ?? 0) + dt);
    }
  }
  const idle = self.get('(idle)') ?? 0;
  const busy = all - idle;
  const pct = (v: number): string => `${((v / busy) * 100).toFixed(1).padStart(5)} %`;
  const rows = (m: Map<string, number>, n: number): string[] =>
    [...m.entries()]
      .filter(([k]) => k !== '(idle)' && k !== '(root)')
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([k, v]) => `  ${pct(v)}  ${v.toFixed(0).padStart(7)} ms  ${k}`);
  return [
    `profile ${(p.endTime - p.startTime) / 1000} ms, sampled ${all.toFixed(0)} ms, idle ${idle.toFixed(0)} ms, busy ${busy.toFixed(0)} ms (percentages of busy)`,
    `top ${top} by self time:`,
    ...rows(self, top),
    `top ${top} by total time:`,
    ...rows(total, top),
    'self time by module:',
    ...rows(mods, 20),
  ].join('\n');
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop()!)) {
  const file = process.argv[2];
  if (!file) {
    process.stderr.write('usage: node dist/bench/support/cpuprofile-top.js FILE.cpuprofile [TOP]\n');
    process.exit(2);
  }
  process.stdout.write(`${summarizeProfile(JSON.parse(readFileSync(file, 'utf8')) as Profile, Number(process.argv[3] ?? 25))}\n`);
}
