/**
 * Environment checks for tests that need root, mounts or namespaces. On a developer box such
 * a test may skip with a clear reason; with METAD_NO_SKIP=1 (set by .ci/run) it fails instead.
 */
import { execFileSync } from 'node:child_process';
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';

export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

export function hasCommand(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Skip (developer box) or fail (CI: METAD_NO_SKIP=1). Returns true when the test must stop. */
export function skipOrFail(t: { skip(message?: string): void }, why: string | undefined): boolean {
  if (!why) return false;
  if (process.env.METAD_NO_SKIP === '1') assert.fail(`required test environment missing: ${why}`);
  t.skip(why);
  return true;
}

/** The first of `tools` ([command, Debian package]) not installed (also looked up in /usr/sbin), as a skip reason. */
export function missingCommand(tools: readonly (readonly [string, string])[]): string | undefined {
  for (const [cmd, pkg] of tools) {
    if (!hasCommand(cmd) && !hasCommand(`/usr/sbin/${cmd}`)) return `${cmd} not installed (${pkg}; .ci/install-deps.sh)`;
  }
  return undefined;
}

/**
 * Subtests of `t` that build on each other: once one has failed, each later one fails at once,
 * naming it (never a skip, and never run against a half-set-up host).
 */
export function chainedPhases(t: TestContext): (name: string, fn: (st: TestContext) => Promise<void>) => Promise<void> {
  let failed: string | undefined;
  return (name, fn) =>
    t.test(name, async (st) => {
      if (failed !== undefined) assert.fail(`not run: it needs "${failed}", which failed`);
      try {
        await fn(st);
      } catch (e) {
        failed = name;
        throw e;
      }
    });
}
