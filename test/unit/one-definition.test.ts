/**
 * What was dead or untrue stays gone (issue 6, item 25): each protocol constant has one
 * definition (the random_seed size, each dialect's version list), RenderCtx has no unread
 * `passwordSet`, and every `scripts/…` file a source comment names exists. Issue 14: one
 * function turns a stored instance back into its input document, a name means one thing, and
 * the test suite's own helpers have one definition each too: one polling wait, one liveness
 * check, and every environment skip goes through skipOrFail.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { RenderCtx } from '../../routes/render/view.js';
import { RANDOM_SEED_BYTES } from '../../routes/render/openstack.js';
import * as answer from '../../routes/guest/answer.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/** Every .ts file under the given top-level folders (sources, not tests). */
function sources(...folders: string[]): string[] {
  const walk = (d: string): string[] =>
    readdirSync(d).flatMap((f) => {
      const p = join(d, f);
      return statSync(p).isDirectory() ? walk(p) : p.endsWith('.ts') ? [p] : [];
    });
  return folders.flatMap((f) => walk(join(ROOT, f)));
}

test('RenderCtx: no passwordSet (the route serves the password; no renderer read it)', () => {
  // @ts-expect-error passwordSet is not a RenderCtx field (the build fails if it comes back)
  const ctx: RenderCtx = { now: 0, randomSeed: Buffer.alloc(RANDOM_SEED_BYTES), passwordSet: true };
  assert.equal(ctx.randomSeed.length, 512);
});

test('the random_seed size is defined once (RANDOM_SEED_BYTES), not again in the guest pipeline', () => {
  assert.equal('SEED_BYTES' in answer, false);
  const code = (line: string) => !/^\s*(\/\/|\*|\/\*\*)/.test(line);
  const hits = sources('routes').flatMap((f) =>
    readFileSync(f, 'utf8')
      .split('\n')
      .filter((line) => code(line) && /\b512\b/.test(line))
      .map((line) => `${relative(ROOT, f)}: ${line.trim()}`),
  );
  assert.deepEqual(hits, ['routes/render/openstack.ts: export const RANDOM_SEED_BYTES = 512;']);
});

test('each dialect version list is defined once (routes use isEc2Version & co., no private copies)', () => {
  const defs = sources('routes').flatMap((f) =>
    [...readFileSync(f, 'utf8').matchAll(/^(?:export )?const (\w*VERSIONS\w*) =/gm)].map((m) => `${relative(ROOT, f)}:${m[1]}`),
  );
  assert.deepEqual(defs.sort(), [
    'routes/render/ec2-catalog.ts:EC2_VERSIONS',
    'routes/render/ganeti.ts:GANETI_VERSIONS',
    'routes/render/openstack.ts:OPENSTACK_VERSIONS',
  ]);
});

test('every scripts/<file> a source comment names exists', () => {
  // `os/scripts/<name>` is a guest path, not a file of this repository.
  const named = sources('daemon', 'routes', 'cli').flatMap((f) =>
    [...readFileSync(f, 'utf8').matchAll(/(?<!os\/)\bscripts\/(\w[\w.-]*)/g)].map((m) => ({
      file: relative(ROOT, f),
      script: `scripts/${m[1]}`,
    })),
  );
  assert.deepEqual(
    named.filter((n) => !existsSync(join(ROOT, n.script))),
    [],
  );
});

test('a stored instance becomes an input document in one place (inputOf, daemon/registry/model.ts), not one copy per caller', () => {
  const defs = sources('daemon', 'routes').flatMap((f) =>
    [...readFileSync(f, 'utf8').matchAll(/^(?:export )?function (\w*[iI]nputOf)\b/gm)].map((m) => `${relative(ROOT, f)}:${m[1]}`),
  );
  assert.deepEqual(defs, ['daemon/registry/model.ts:inputOf']);
});

test("one Prepared name per meaning: the guest door's answer bytes (PreparedAnswer) and an install run's XML and cleanup (PreparedRun)", () => {
  const defs = sources('daemon', 'routes', 'appliance').flatMap((f) =>
    [...readFileSync(f, 'utf8').matchAll(/^export (?:interface|type|class) (Prepared\w*)/gm)].map((m) => `${relative(ROOT, f)}:${m[1]}`),
  );
  assert.deepEqual(defs.sort(), ['daemon/jobs/manager.ts:PreparedRun', 'routes/guest/answer.ts:PreparedAnswer']);
});

/** `test/…` files and their code lines (comments left out), for the test suite's own rules. */
function testCode(): { file: string; line: string }[] {
  const comment = (line: string) => /^\s*(\/\/|\*|\/\*\*)/.test(line);
  return sources('test')
    .filter((f) => !f.endsWith('one-definition.test.ts'))
    .flatMap((f) =>
      readFileSync(f, 'utf8')
        .split('\n')
        .filter((line) => !comment(line))
        .map((line) => ({ file: relative(ROOT, f), line })),
    );
}

test('the test suite waits with one `until` (test/support/wait.ts) and asks whether a process lives with one `pidAlive` (process.ts)', () => {
  const defs = testCode()
    .filter(({ line }) => /\b(?:function|const|let)\s+(until|wait(?:For|Until)\w*|eventually|pidAlive|alive)\b\s*(?:[=(<:])/.test(line))
    .map(({ file, line }) => `${file}: ${line.trim().slice(0, 60)}`);
  assert.deepEqual(defs, [
    'test/support/process.ts: export function pidAlive(pid: number): boolean {',
    'test/support/wait.ts: export async function until<T>(',
  ]);
  // process.kill(pid, 0) is the other liveness check (and it counts a zombie as alive).
  assert.deepEqual(
    testCode()
      .filter(({ line }) => /\.kill\([^,()]+,\s*0\)/.test(line))
      .map(({ file }) => file),
    [],
  );
});

test('every environment skip in the test suite goes through skipOrFail (METAD_NO_SKIP=1 turns it into a failure)', () => {
  const bare = testCode()
    .filter(({ file }) => file !== 'test/support/env.ts')
    .filter(({ line }) => /\.skip\(|\btest\.skip\b|\{\s*skip:|,\s*skip:|\.todo\(|\btodo:/.test(line))
    .map(({ file, line }) => `${file}: ${line.trim()}`);
  assert.deepEqual(bare, []);
  assert.match(readFileSync(join(ROOT, 'test/support/env.ts'), 'utf8'), /METAD_NO_SKIP === '1'\) assert\.fail/);
});
