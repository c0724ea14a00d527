/** docs/configuration.md is the generated reference of every config key, and it is complete. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildConfig } from '../../daemon/config/config.js';
import { configKeys, configReference } from '../../daemon/config/doc.js';
import { LIVE_KEYS } from '../../daemon/config/reload.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

test('docs/configuration.md is the generated reference (`node dist/daemon/cli.js config-reference > docs/configuration.md`)', () => {
  assert.equal(readFileSync(join(ROOT, 'docs', 'configuration.md'), 'utf8'), configReference());
});

test('every config key has a description, and the reference shows the defaults the daemon applies', () => {
  const keys = configKeys();
  assert.deepEqual(
    keys.filter((k) => !k.node.description).map((k) => k.key),
    [],
  );
  // Optional sections (ganeti: off when absent) are given empty, so that their keys' defaults apply.
  assert.equal(buildConfig({}).ganeti, undefined, 'the Ganeti feed is off without its section');
  const effective = buildConfig({ ganeti: {} }) as unknown as Record<string, unknown>;
  const at = (path: string): unknown =>
    path.split('.').reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], effective);
  for (const { key, node } of keys.filter((k) => !k.key.includes('[]') && k.node.type !== 'object')) {
    assert.deepEqual(at(key), node.default, key);
  }
  // Every key of the effective configuration is in the reference.
  const listed = new Set(keys.map((k) => k.key));
  const walk = (o: Record<string, unknown>, prefix: string): string[] =>
    Object.entries(o).flatMap(([k, v]) => [
      `${prefix}${k}`,
      ...(v && typeof v === 'object' && !Array.isArray(v) ? walk(v as Record<string, unknown>, `${prefix}${k}.`) : []),
    ]);
  assert.deepEqual(
    walk(effective, '').filter((k) => !listed.has(k)),
    [],
  );
});

test('operations.md links the configuration reference, not a source file', () => {
  const ops = readFileSync(join(ROOT, 'docs', 'operations.md'), 'utf8');
  assert.match(ops, /\]\(configuration\.md\)/);
  assert.doesNotMatch(ops, /daemon\/config\.ts/);
});

test('every key a reload applies live is a key of the schema, and the reference marks it live', () => {
  const keys = new Set(configKeys().map((k) => k.key));
  assert.deepEqual(
    LIVE_KEYS.filter((k) => !keys.has(k)),
    [],
  );
  const doc = configReference();
  for (const k of LIVE_KEYS) assert.match(doc, new RegExp(`^\\| \`${k.replaceAll('.', '\\.')}\` \\|[^\n]*\\| live \\|`, 'm'), k);
  assert.match(doc, /^\| `stateDir` \|[^\n]*\| restart \|/m);
});
