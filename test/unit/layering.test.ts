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
import type { GuestServices } from '../../daemon/services.js';

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
  assert.ok(files.includes('daemon/registry/store.ts') && files.includes('daemon/errors.ts'), 'the scan sees the domain modules');
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

const CHILD_PROCESS = new Set(['node:child_process', 'child_process']);
/** Modules that start a process other than a host network/disk tool, each for a reason of its own. */
const OTHER_SPAWNERS: Readonly<Record<string, string>> = {
  'daemon/process/notify.ts': 'systemd-notify, the readiness protocol',
  'daemon/process/state-lock.ts': 'flock(1) on an inherited descriptor, to test the lock',
  'appliance/image.ts': 'the appliance build script',
};

test('only daemon/comm/exec.ts starts ip, nft, dnsmasq and qemu-img (child_process elsewhere only where named)', () => {
  const all = ['daemon', 'routes', 'appliance', 'cli'].flatMap((dir) => sources(dir));
  const spawners = all.filter((file) => importsOf(readFileSync(join(ROOT, file), 'utf8')).some((s) => CHILD_PROCESS.has(s)));
  assert.ok(spawners.includes('daemon/comm/exec.ts'), 'the scan sees the one tool runner');
  assert.deepEqual(
    spawners.filter((f) => f !== 'daemon/comm/exec.ts' && !(f in OTHER_SPAWNERS)),
    [],
  );
  // The named exceptions never name a host network or disk tool.
  for (const file of Object.keys(OTHER_SPAWNERS)) {
    const code = codeOf(readFileSync(join(ROOT, file), 'utf8'));
    assert.doesNotMatch(code, /['"`](?:\/usr\/s?bin\/)?(?:ip|nft|dnsmasq|qemu-img)['"`]/, file);
  }
});

test('only appliance/libvirt.ts loads the libvirt binding', () => {
  const loaders = ['daemon', 'routes', 'appliance', 'cli']
    .flatMap((dir) => sources(dir))
    .filter((file) => /['"]@unraid\/libvirt['"]/.test(codeOf(readFileSync(join(ROOT, file), 'utf8'))));
  assert.deepEqual(loaders, ['appliance/libvirt.ts']);
});

/** What a folder's modules may load of metad's own code at run time (types are free) (docs/architecture.md, "Where each concern lives"). */
const MAY_IMPORT: Readonly<Record<string, readonly string[]>> = {
  'daemon/registry': ['daemon/registry/', 'daemon/clock.ts', 'daemon/errors.ts', 'daemon/net.ts', 'daemon/mkdirs.ts', 'daemon/log/'],
  'daemon/config': ['daemon/config/', 'daemon/net.ts'],
  'daemon/log': ['daemon/log/'],
  'daemon/metrics': ['daemon/metrics/'],
  'daemon/feeds': [
    'daemon/feeds/',
    'daemon/registry/',
    'daemon/config/',
    'daemon/log/',
    'daemon/clock.ts',
    'daemon/errors.ts',
    'daemon/net.ts',
    'daemon/mkdirs.ts',
    'daemon/unix-socket.ts',
    'daemon/version.ts',
  ],
  appliance: ['appliance/', 'daemon/clock.ts'],
  cli: ['cli/', 'daemon/registry/model.ts', 'daemon/version.ts'],
};

/** The modules a file loads at run time: importsOf without `import type`/`export type` statements. */
const valueImportsOf = (text: string): string[] => importsOf(text.replace(/^\s*(?:import|export)\s+type\b[^;]*;/gms, ''));

test('valueImportsOf skips type-only imports', () => {
  assert.deepEqual(valueImportsOf("import type {\n  A,\n} from './a.js';\nimport { b } from './b.js';"), ['./b.js']);
});

test('each folder imports only what its row in docs/architecture.md allows', () => {
  const offenders: string[] = [];
  for (const [dir, may] of Object.entries(MAY_IMPORT)) {
    const files = sources(dir);
    assert.ok(files.length > 0, `the scan sees ${dir}`);
    for (const file of files)
      for (const spec of valueImportsOf(readFileSync(join(ROOT, file), 'utf8'))) {
        if (!spec.startsWith('.')) continue;
        const to = target(file, spec).replace(/\.js$/, '.ts');
        if (!may.some((m) => to === m || to.startsWith(m))) offenders.push(`${file} -> ${spec}`);
      }
  }
  assert.deepEqual(offenders, []);
});

test('routes/ never imports appliance/, and the registry imports nothing from comm/, jobs/ or feeds/', () => {
  const offenders: string[] = [];
  for (const file of sources('routes'))
    for (const spec of importsOf(readFileSync(join(ROOT, file), 'utf8')))
      if (target(file, spec).startsWith('appliance/')) offenders.push(`${file} -> ${spec}`);
  const registry = sources('daemon/registry');
  assert.ok(registry.includes('daemon/registry/store.ts'), 'the scan sees the registry');
  for (const file of registry)
    for (const spec of importsOf(readFileSync(join(ROOT, file), 'utf8'))) {
      const to = target(file, spec);
      if (['daemon/comm/', 'daemon/jobs/', 'daemon/feeds/', 'appliance/'].some((p) => to.startsWith(p)))
        offenders.push(`${file} -> ${spec}`);
    }
  assert.deepEqual(offenders, []);
});

test('the guest door reaches the install jobs only through their secrets gate (no JobManager, no job module)', () => {
  // @ts-expect-error GuestServices carries no JobManager (the build fails if `jobs` comes back)
  const jobs: GuestServices['jobs'] = undefined;
  assert.equal(jobs, undefined);
  const offenders: string[] = [];
  for (const file of [...sources('routes/guest'), ...sources('routes/render')]) {
    const text = readFileSync(join(ROOT, file), 'utf8');
    for (const spec of importsOf(text)) if (target(file, spec).startsWith('daemon/jobs/')) offenders.push(`${file} -> ${spec}`);
    if (/\bJobManager\b|\.jobs\b/.test(codeOf(text))) offenders.push(`${file} names the job manager`);
  }
  assert.deepEqual(offenders, []);
});
