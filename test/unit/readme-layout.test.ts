/**
 * The README's layout table names what is in the tree: every top-level folder of the checkout
 * (hidden ones that matter, like .ci/, included) and every source subfolder, either as a row of
 * its own (`daemon/comm/`) or in its parent's row (`test/`: `unit/`, …). A folder added without
 * a word in the README fails here.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const NOT_SOURCE = new Set(['.git', 'node_modules', 'dist', 'coverage']);

const dirsIn = (dir: string): string[] =>
  readdirSync(join(ROOT, dir))
    .filter((f) => !NOT_SOURCE.has(f) && statSync(join(ROOT, dir, f)).isDirectory())
    .sort();

function layoutRows(): Map<string, string> {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Layout'), readme.indexOf('\n## ', readme.indexOf('## Layout') + 1));
  const rows = new Map<string, string>();
  for (const line of section.split('\n')) {
    const m = /^\| `([^`]+)` \| (.*) \|$/.exec(line);
    if (m) rows.set(m[1]!, m[2]!);
  }
  return rows;
}

test('README layout: every top-level folder and every source subfolder is named', () => {
  const rows = layoutRows();
  const missing: string[] = [];
  const top = dirsIn('.').filter((d) => !d.startsWith('.') || d === '.ci');
  for (const d of top) if (!rows.has(`${d}/`)) missing.push(`${d}/`);
  for (const d of top.filter((x) => !x.startsWith('.') && x !== 'docs')) {
    for (const sub of dirsIn(d)) {
      const own = rows.has(`${d}/${sub}/`);
      const inParent = (rows.get(`${d}/`) ?? '').includes(`${sub}/`);
      if (!own && !inParent) missing.push(`${d}/${sub}/`);
    }
  }
  assert.deepEqual(missing, [], 'add these to the README layout table');
  for (const name of rows.keys())
    assert.ok(statSync(join(ROOT, name), { throwIfNoEntry: false })?.isDirectory(), `${name} is in the table but not in the tree`);
});

test('docs/architecture.md names every source folder in "Where each concern lives"', () => {
  const arch = readFileSync(join(ROOT, 'docs', 'architecture.md'), 'utf8');
  const start = arch.indexOf('## Where each concern lives');
  assert.ok(start >= 0, 'the section exists');
  const section = arch.slice(start, arch.indexOf('\n## ', start + 1));
  const missing: string[] = [];
  for (const top of ['daemon', 'routes', 'appliance', 'cli']) {
    if (!section.includes(`\`${top}/`)) missing.push(`${top}/`);
    for (const sub of dirsIn(top))
      if (!section.includes(`\`${top}/${sub}/\``) && !section.includes(`\`${sub}/\``)) missing.push(`${top}/${sub}/`);
  }
  assert.deepEqual(missing, [], 'add these to the architecture table');
});
