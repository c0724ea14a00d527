#!/usr/bin/env node
// Per-folder line coverage from c8's json-summary (coverage/coverage-summary.json, written by
// `METAD_COVERAGE=1 npm test`): one row per source folder, a folder's own files only (daemon/
// root files apart from daemon/comm/ and the others). Prints a markdown table for the README.
import { readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const summary = JSON.parse(readFileSync(process.argv[2] ?? join(root, 'coverage', 'coverage-summary.json'), 'utf8'));
const folders = new Map();
for (const [file, s] of Object.entries(summary)) {
  if (file === 'total') continue;
  const folder = `${dirname(relative(root, file))}/`;
  const f = folders.get(folder) ?? { total: 0, covered: 0, branches: 0, branchesCovered: 0, files: 0 };
  f.total += s.lines.total;
  f.covered += s.lines.covered;
  f.branches += s.branches.total;
  f.branchesCovered += s.branches.covered;
  f.files += 1;
  folders.set(folder, f);
}
const pct = (c, t) => (t === 0 ? 100 : (100 * c) / t).toFixed(1);
console.log('| folder | files | lines | lines covered | branches covered |');
console.log('|---|---:|---:|---:|---:|');
for (const [folder, f] of [...folders].sort(([a], [b]) => a.localeCompare(b)))
  console.log(`| \`${folder}\` | ${f.files} | ${f.total} | ${pct(f.covered, f.total)} % | ${pct(f.branchesCovered, f.branches)} % |`);
const t = summary.total;
console.log(
  `| all | ${[...folders.values()].reduce((n, f) => n + f.files, 0)} | ${t.lines.total} | ${pct(t.lines.covered, t.lines.total)} % | ${pct(t.branches.covered, t.branches.total)} % |`,
);
