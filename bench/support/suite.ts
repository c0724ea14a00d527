/**
 * The contract between bench/run.ts and the suites in bench/suites/*.ts: a suite default-exports
 * a `Suite`, records numbers through its `SuiteContext`, and never passes or fails on timing.
 */

/** One measured number. `baseline` names another result of the same suite measured in the same run. */
export interface BenchResult {
  suite: string;
  name: string;
  value: number;
  unit: string;
  /** Extra numbers (p50, p99, …), printed in the table's detail column and kept in the JSON. */
  stats?: Record<string, number>;
  /** Name of the baseline result in the same suite; the runner fills `ratio` = value / baseline value. */
  baseline?: string;
  ratio?: number;
  /** A target from an issue, printed next to the number (never a pass/fail). */
  target?: { op: '<=' | '>='; value: number };
  note?: string;
}

export interface SuiteContext {
  /** Smaller counts for a smoke run (`npm run bench -- --quick`). */
  readonly quick: boolean;
  record(r: Omit<BenchResult, 'suite' | 'ratio'>): void;
  /** Progress line on stderr (the table and BENCH_JSON go to stdout). */
  log(msg: string): void;
  /** Run at the end of the suite (reverse order), even when it throws. */
  defer(fn: () => unknown): void;
}

export interface Suite {
  /** Defaults to the file name (bench/suites/<name>.ts). */
  name?: string;
  description: string;
  run(ctx: SuiteContext): Promise<void>;
}
