/**
 * The import graph keeps its layers: the domain (daemon/) knows no HTTP door. Only the
 * composition root, daemon/daemon.ts, builds the doors and may import routes/ and koa; every
 * other daemon module (store, vault, pipes, validation, errors, ...) must not. And the process
 * edge stays at the edge: daemon/cli.ts is the one module that reads process.env.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const COMPOSITION_ROOT = 'daemon/daemon.ts';
const HTTP_PACKAGES = new Set(['koa', '@koa/router', 'raw-body']);

const sources = (dir: string): string[] =>
  readdirSync(join(ROOT, dir)).flatMap((f) => {
    const rel = join(dir, f);
    return statSync(join(ROOT, rel)).isDirectory() ? sources(rel) : rel.endsWith('.ts') ? [rel] : [];
  });

/** Every module a source file names: static imports, re-exports and dynamic import('...'). */
export function importsOf(text: string): string[] {
  const found: string[] = [];
  for (const m of text.matchAll(/^\s*(?:import|export)\b[^;]*?\bfrom\s+['"]([^'"]+)['"]/gms)) found.push(m[1]!);
  for (const m of text.matchAll(/^\s*import\s+['"]([^'"]+)['"]/gm)) found.push(m[1]!);
  for (const m of text.matchAll(/\bimport\(\s*['"]([^'"]+)['"]\s*\)/g)) found.push(m[1]!);
  return found;
}

/** The repository-relative target of an import, or the package name for bare specifiers. */
function target(file: string, spec: string): string {
  return spec.startsWith('.') ? normalize(join(dirname(file), spec)) : spec;
}

test('importsOf sees every import form', () => {
  const text = [
    "import { a } from '../routes/x.js';",
    "import type {\n  B,\n} from 'koa';",
    "export { c } from './c.js';",
    "import './side.js';",
    "await import('../routes/y.js');",
  ].join('\n');
  assert.deepEqual(importsOf(text).sort(), ['../routes/x.js', '../routes/y.js', './c.js', './side.js', 'koa'].sort());
});

test('nothing under daemon/ but the composition root imports routes/ or an HTTP framework', () => {
  const offenders: string[] = [];
  const files = sources('daemon');
  assert.ok(files.includes('daemon/store.ts') && files.includes('daemon/errors.ts'), 'the scan sees the domain modules');
  for (const file of files) {
    if (file === COMPOSITION_ROOT) continue;
    for (const spec of importsOf(readFileSync(join(ROOT, file), 'utf8'))) {
      const to = target(file, spec);
      if (to.startsWith('routes/') || HTTP_PACKAGES.has(to)) offenders.push(`${file} -> ${spec}`);
    }
  }
  assert.deepEqual(offenders, []);
});

/** Source text without comments (block and line), so prose about process.env does not count. */
export function codeOf(text: string): string {
  return text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"`])\/\/.*$/gm, '$1');
}

test('codeOf drops comments and keeps code', () => {
  assert.equal(codeOf('/** process.env */ const a = 1; // process.env\nconst u = "http://x";').includes('process.env'), false);
  assert.ok(codeOf('const e = process.env.X;').includes('process.env'));
});

test('only daemon/cli.ts reads process.env (daemon/, routes/, appliance/)', () => {
  const readers = ['daemon', 'routes', 'appliance']
    .flatMap((dir) => sources(dir))
    .filter((file) => codeOf(readFileSync(join(ROOT, file), 'utf8')).includes('process.env'));
  assert.deepEqual(readers, ['daemon/cli.ts']);
});
