/**
 * Benchmark runner: `npm run bench [-- [--quick] [suite…]]`.
 *
 * Runs every suite in bench/suites/*.ts (compiled to dist/bench/suites/*.js), or only those
 * named, one after the other. Each suite records results through its SuiteContext; the runner
 * computes ratios against the baselines named by results, prints one table per suite, and at
 * the end one machine-readable line `BENCH_JSON {...}` with every result (paste it into notes).
 * Numbers only: the exit status is non-zero only when a suite crashes, never because of timing.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import os from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { cleanupAll } from './support/cleanup.js';
import { fmt, printTable } from './support/format.js';
import type { BenchResult, Suite, SuiteContext } from './support/suite.js';

const distBench = fileURLToPath(new URL('.', import.meta.url)); // dist/bench/
const repoRoot = join(distBench, '..', '..');
const srcSuites = join(repoRoot, 'bench', 'suites');
const distSuites = join(distBench, 'suites');

/** Suites with a source file (so a stale compiled file of a deleted suite is not run). */
function availableSuites(): string[] {
  const fromSrc = existsSync(srcSuites) ? readdirSync(srcSuites).filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts')) : [];
  return fromSrc
    .map((f) => basename(f, '.ts'))
    .filter((n) => existsSync(join(distSuites, `${n}.js`)))
    .sort();
}

function gitDescribe(): string | undefined {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], {
      cwd: repoRoot,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
    const dirty =
      execFileSync('git', ['status', '--porcelain'], { cwd: repoRoot, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim() !==
      '';
    return dirty ? `${head}+dirty` : head;
  } catch {
    return undefined;
  }
}

function detail(r: BenchResult): string {
  return Object.entries(r.stats ?? {})
    .map(([k, v]) => `${k} ${fmt(v)}`)
    .join(', ');
}

function targetText(r: BenchResult): string {
  if (!r.target) return '';
  const ok = r.target.op === '<=' ? r.value <= r.target.value : r.value >= r.target.value;
  return `${r.target.op === '<=' ? '≤' : '≥'} ${fmt(r.target.value)} ${r.unit} (${ok ? 'met' : 'MISSED'})`;
}

function printSuite(name: string, results: BenchResult[]): void {
  process.stdout.write(`\n== ${name} ==\n`);
  printTable(
    ['bench', 'value', 'unit', 'vs baseline', 'target', 'detail'],
    results.map((r) => [
      r.name,
      fmt(r.value),
      r.unit,
      r.ratio === undefined ? '' : `${fmt(r.ratio)}x ${r.baseline}`,
      targetText(r),
      [detail(r), r.note].filter(Boolean).join('; '),
    ]),
  );
}

const round = (v: number): number => (Number.isFinite(v) ? Number(v.toPrecision(6)) : v);

async function main(argv: string[]): Promise<number> {
  const quick = argv.includes('--quick');
  const wanted = argv.filter((a) => !a.startsWith('--'));
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`usage: npm run bench -- [--quick] [suite…]\nsuites: ${availableSuites().join(', ')}\n`);
    return 0;
  }
  const all = availableSuites();
  const unknown = wanted.filter((w) => !all.includes(w));
  if (unknown.length > 0) {
    process.stderr.write(`bench: unknown suite(s) ${unknown.join(', ')}; available: ${all.join(', ') || '(none)'}\n`);
    return 2;
  }
  const names = wanted.length > 0 ? wanted : all;

  let interrupted = false;
  const onSignal = (sig: NodeJS.Signals): void => {
    if (interrupted) process.exit(130);
    interrupted = true;
    process.stderr.write(`\nbench: ${sig}, cleaning up\n`);
    void cleanupAll().finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const started = new Date();
  const results: BenchResult[] = [];
  const failures: { suite: string; error: string }[] = [];
  for (const name of names) {
    const mod = (await import(pathToFileURL(join(distSuites, `${name}.js`)).href)) as { default?: Suite; suite?: Suite };
    const suite = mod.default ?? mod.suite;
    if (!suite) {
      failures.push({ suite: name, error: 'module exports no suite (export default { description, run })' });
      continue;
    }
    const suiteName = suite.name ?? name;
    const mine: BenchResult[] = [];
    const deferred: (() => unknown)[] = [];
    const ctx: SuiteContext = {
      quick,
      record: (r) => mine.push({ ...r, suite: suiteName }),
      log: (msg) => process.stderr.write(`[${suiteName}] ${msg}\n`),
      defer: (fn) => deferred.push(fn),
    };
    process.stderr.write(`[${suiteName}] ${suite.description}${quick ? ' (quick)' : ''}\n`);
    const t0 = performance.now();
    try {
      await suite.run(ctx);
    } catch (err) {
      failures.push({ suite: suiteName, error: (err as Error).stack ?? String(err) });
      process.stderr.write(`[${suiteName}] FAILED: ${(err as Error).stack ?? String(err)}\n`);
    } finally {
      for (const fn of deferred.reverse()) {
        try {
          await fn();
        } catch (err) {
          process.stderr.write(`[${suiteName}] cleanup failed: ${String(err)}\n`);
        }
      }
      await cleanupAll();
    }
    for (const r of mine) {
      if (!r.baseline) continue;
      const b = mine.find((x) => x.name === r.baseline);
      if (b && b.value !== 0) r.ratio = r.value / b.value;
    }
    process.stderr.write(`[${suiteName}] done in ${fmt((performance.now() - t0) / 1000)} s\n`);
    printSuite(suiteName, mine);
    results.push(...mine);
  }

  const cpus = os.cpus();
  const summary = {
    version: 1,
    date: started.toISOString(),
    git: gitDescribe(),
    node: process.version,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    cpus: cpus.length,
    cpuModel: cpus[0]?.model,
    memMiB: Math.round(os.totalmem() / 1048576),
    quick,
    suites: names,
    results: results.map((r) => ({
      ...r,
      value: round(r.value),
      ...(r.stats ? { stats: Object.fromEntries(Object.entries(r.stats).map(([k, v]) => [k, round(v)])) } : {}),
      ...(r.ratio !== undefined ? { ratio: Number(r.ratio.toPrecision(4)) } : {}),
    })),
    ...(failures.length ? { failures: failures.map((f) => ({ suite: f.suite, error: f.error.split('\n')[0] })) } : {}),
  };
  process.stdout.write(`\nBENCH_JSON ${JSON.stringify(summary)}\n`);
  return failures.length > 0 ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  async (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    await cleanupAll();
    process.exit(1);
  },
);
