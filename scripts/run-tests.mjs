#!/usr/bin/env node
// Runs every compiled test file (dist/test/**/*.test.js) with node's test runner.
// `npm test` builds first. Pass file-name filters as arguments: `npm test -- admin store`.
// METAD_NO_SKIP=1 (set by .ci/run) turns every environment skip into a failure.
// METAD_COVERAGE=1 (set by .ci/run) records node's V8 coverage (NODE_V8_COVERAGE, inherited by the
// daemons the tests start unless a test replaces their environment) and reports it with c8,
// mapped to the TypeScript sources: coverage/coverage-summary.json and a per-folder table
// (scripts/coverage-folders.mjs).
import { readdirSync, statSync, mkdtempSync, readFileSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { spawnSync } from 'node:child_process';

const root = new URL('..', import.meta.url).pathname;
const testDir = join(root, 'dist', 'test');
const walk = (d) =>
  readdirSync(d).flatMap((f) => {
    const p = join(d, f);
    return statSync(p).isDirectory() ? walk(p) : p.endsWith('.test.js') ? [p] : [];
  });
const filters = process.argv.slice(2);
const files = walk(testDir)
  .filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)))
  .sort();
if (files.length === 0) {
  console.error('run-tests: no test files matched');
  process.exit(1);
}
console.error(`run-tests: ${files.length} files${process.env.METAD_NO_SKIP === '1' ? ' (METAD_NO_SKIP=1: skips fail)' : ''}`);
const tapDir = mkdtempSync(join(tmpdir(), 'metad-tests-'));
const coverage = process.env.METAD_COVERAGE === '1' ? join(tapDir, 'v8') : undefined;
const tapFile = join(tapDir, 'results.tap');
const r = spawnSync(
  process.execPath,
  [
    '--test',
    '--test-concurrency=2',
    '--test-timeout=600000',
    '--test-reporter=spec',
    '--test-reporter-destination=stdout',
    '--test-reporter=tap',
    `--test-reporter-destination=${tapFile}`,
    ...files.map((f) => relative(root, f)),
  ],
  { cwd: root, stdio: 'inherit', env: coverage ? { ...process.env, NODE_V8_COVERAGE: coverage } : process.env },
);
// One plain closing line that any CI reader understands.
const tap = existsSync(tapFile) ? readFileSync(tapFile, 'utf8') : '';
const count = (k) => Number((tap.match(new RegExp(`^# ${k} (\\d+)$`, 'm')) ?? [])[1] ?? 0);
console.log(`tests: ${count('pass')} passed, ${count('fail')} failed, ${count('skipped')} skipped`);
if (coverage) {
  const c8 = spawnSync(
    process.execPath,
    [
      join(root, 'node_modules', 'c8', 'bin', 'c8.js'),
      'report',
      `--temp-directory=${coverage}`,
      '--reports-dir=coverage',
      '--reporter=json-summary',
      '--reporter=text-summary',
      '--all',
      '--src=dist',
      '--exclude-after-remap',
      ...['daemon', 'routes', 'appliance', 'cli'].map((d) => `--include=${d}/**/*.ts`),
    ],
    { cwd: root, stdio: 'inherit' },
  );
  if (c8.status === 0) spawnSync(process.execPath, [join(root, 'scripts', 'coverage-folders.mjs')], { cwd: root, stdio: 'inherit' });
  else console.error('run-tests: the coverage report failed (the test results above stand)');
}
rmSync(tapDir, { recursive: true, force: true });
process.exit(r.status ?? 1);
