/**
 * The guest dialect table (routes/guest/dialects.ts): each path goes to exactly one dialect by
 * its first segment, EC2 owns the rest, and the token policy is data on the entry.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PREFIXED_DIALECTS, ROOT_DIALECT, dialectOf } from '../../routes/guest/dialects.js';

test('dialectOf: a prefix owns itself and what lies under it, nothing that merely starts like it', () => {
  const cases: [string, string][] = [
    ['/openstack', 'openstack'],
    ['/openstack/', 'openstack'],
    ['/openstack/latest/meta_data.json', 'openstack'],
    ['/openstackx', 'ec2'],
    ['/ganeti', 'ganeti'],
    ['/ganeti/latest/read', 'ganeti'],
    ['/ganetiz/latest', 'ec2'],
    ['/', 'ec2'],
    ['/latest/meta-data/', 'ec2'],
    ['/latest/api/token', 'ec2'],
  ];
  assert.deepEqual(
    cases.map(([path]) => [path, dialectOf(path).name]),
    cases,
  );
});

test('dialect table: names and prefixes are unique; only the root dialect checks every sent token', () => {
  const all = [...PREFIXED_DIALECTS, ROOT_DIALECT];
  assert.equal(new Set(all.map((d) => d.name)).size, all.length);
  assert.equal(new Set(all.map((d) => d.prefix)).size, all.length);
  for (const d of PREFIXED_DIALECTS) assert.match(d.prefix, /^\/[a-z0-9-]+$/, `${d.name}: one path segment`);
  assert.deepEqual(
    all.map((d) => [d.name, d.tokens]),
    [
      ['openstack', 'whenRequired'],
      ['ganeti', 'whenRequired'],
      ['ec2', 'whenSent'],
    ],
  );
});
