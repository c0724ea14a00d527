/**
 * docs/guest-api.md's "Field by field" table stays true (issue 6, item 15): every field of the
 * instance schema has a row (or an ancestor has), every row names a real field, and every default
 * the renderers invent is written there with its value.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { instanceSchema } from '../../daemon/registry/model.js';
import { EC2_DEFAULTS } from '../../routes/render/ec2-catalog.js';
import { DEFAULT_AVAILABILITY_ZONE } from '../../routes/render/view.js';
import { DEFAULT_MTU } from '../../routes/render/nics.js';
import { COMM_LINK_ID, RANDOM_SEED_BYTES } from '../../routes/render/openstack.js';

const DOC = readFileSync(new URL('../../../docs/guest-api.md', import.meta.url), 'utf8');

interface SchemaNode {
  readonly properties?: Readonly<Record<string, SchemaNode>>;
  readonly items?: SchemaNode;
}

/** Every leaf field of the schema (`ec2.iam.role`, `nics[].mac`, `ec2.tags`), and in `all` the containers too. */
function schemaPaths(node: SchemaNode, prefix = '', all = false): string[] {
  const out: string[] = [];
  for (const [name, child] of Object.entries(node.properties ?? {})) {
    const path = `${prefix}${name}`;
    if (child.properties) out.push(...(all ? [path] : []), ...schemaPaths(child, `${path}.`, all));
    else if (child.items?.properties) out.push(...(all ? [path] : []), ...schemaPaths(child.items, `${path}[].`, all));
    else out.push(path);
  }
  return out;
}

/** The fields the table's first column names; `a.b.c`, `d` in one cell means a.b.c and a.b.d. */
function tableFields(): string[] {
  const section = DOC.slice(DOC.indexOf('## Field by field'));
  assert.ok(DOC.includes('## Field by field'), 'the section exists');
  const rows = section.split('\n').filter((l) => l.startsWith('| `'));
  return rows.flatMap((row) => {
    const cell = row.split('|')[1] ?? '';
    const names = [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1] ?? '');
    const first = names[0] ?? '';
    const parent = first.includes('.') ? first.slice(0, first.lastIndexOf('.') + 1) : '';
    return names.map((n, i) => (i === 0 || n.includes('.') ? n : `${parent}${n}`));
  });
}

test('guest-api.md: every schema field has a row (itself or an ancestor), every row is a schema field', () => {
  const leaves = schemaPaths(instanceSchema as unknown as SchemaNode);
  const all = schemaPaths(instanceSchema as unknown as SchemaNode, '', true);
  const listed = new Set(tableFields());
  const ancestors = (p: string): string[] =>
    p
      .split('.')
      .map((_, i, parts) => parts.slice(0, i + 1).join('.'))
      .flatMap((a) => [a, a.replace(/\[\]$/, '')]);
  const missing = leaves.filter((p) => !ancestors(p).some((a) => listed.has(a)));
  assert.deepEqual(missing, [], 'schema fields without a row in docs/guest-api.md');
  const unknown = [...listed].filter((f) => !all.includes(f));
  assert.deepEqual(unknown, [], 'rows naming no schema field');
});

test('guest-api.md: the defaults the renderers invent are written with their values', () => {
  const section = DOC.slice(DOC.indexOf('## Field by field'));
  const values = [
    ...Object.values(EC2_DEFAULTS),
    DEFAULT_AVAILABILITY_ZONE,
    String(DEFAULT_MTU),
    COMM_LINK_ID,
    String(RANDOM_SEED_BYTES),
    'i-',
    'r-',
    'AIPA',
    'arn:aws:iam::<accountId>:instance-profile/<role>',
    '2017-09-30',
  ];
  const absent = values.filter((v) => !section.includes(v));
  assert.deepEqual(absent, []);
});
