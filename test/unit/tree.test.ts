/**
 * The shared metadata tree: listings (slashes, labels, no trailing newline), lookups through
 * labelled entries, undefined entries dropped, data-chosen names that look like JS internals.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dir, isDir, listing, lookup, walk } from '../../routes/render/tree.js';

const keys = dir([['0', dir({ 'openssh-key': 'ssh-ed25519 AAAA alice' })]], [['0', '0=alice']]);
const root = dir({
  'ami-id': 'ami-1',
  placement: dir({ 'availability-zone': 'az-a' }),
  'public-keys': keys,
  'user-data': Buffer.from([0, 1, 2]),
});

test('listing: one line per entry, directories end with /, no trailing newline', () => {
  assert.equal(listing(root), 'ami-id\nplacement/\npublic-keys/\nuser-data');
  assert.equal(listing(dir({ only: 'x' })), 'only');
  assert.equal(listing(dir({})), '');
});

test('public-keys lists 0=name while the path to descend is the bare index', () => {
  assert.equal(listing(keys), '0=alice');
  const zero = lookup(root, ['public-keys', '0']);
  assert.ok(zero !== undefined && isDir(zero));
  assert.equal(listing(zero), 'openssh-key');
  assert.equal(lookup(root, ['public-keys', '0', 'openssh-key']), 'ssh-ed25519 AAAA alice');
  assert.equal(lookup(root, ['public-keys', '0=alice']), undefined);
});

test('a label replaces the whole line, slash included', () => {
  const v = dir({ dynamic: dir({}), 'meta-data': dir({}), 'user-data': 'x' }, { dynamic: 'dynamic', 'meta-data': 'meta-data' });
  assert.equal(listing(v), 'dynamic\nmeta-data\nuser-data');
});

test('lookup: the root for no segments, undefined below a leaf or for a missing name', () => {
  assert.equal(lookup(root, []), root);
  assert.equal(lookup(root, ['ami-id']), 'ami-1');
  assert.equal(lookup(root, ['ami-id', 'more']), undefined);
  assert.equal(lookup(root, ['user-data', 'x']), undefined);
  assert.equal(lookup(root, ['nope']), undefined);
  assert.equal(lookup(root, ['placement', '']), undefined, 'segments are literal; the caller strips a trailing slash');
  assert.deepEqual(lookup(root, ['user-data']), Buffer.from([0, 1, 2]));
});

test('isDir tells directories from text and byte leaves', () => {
  assert.equal(isDir(root), true);
  assert.equal(isDir('text'), false);
  assert.equal(isDir(Buffer.from('bytes')), false);
});

test('dir drops undefined entries and keeps insertion order', () => {
  const d = dir({ b: 'B', gone: undefined, a: 'A' });
  assert.deepEqual([...d.entries.keys()], ['b', 'a']);
});

test('names such as __proto__ and constructor are plain entries', () => {
  const d = dir([
    ['__proto__', 'p'],
    ['constructor', 'c'],
    ['toString', 't'],
  ]);
  assert.equal(listing(d), '__proto__\nconstructor\ntoString');
  assert.equal(lookup(d, ['__proto__']), 'p');
  assert.equal(lookup(dir({}), ['constructor']), undefined);
  assert.equal(lookup(dir({}), ['hasOwnProperty']), undefined);
});

test('walk visits every node in pre-order with its path', () => {
  const paths = [...walk(root)].map(([p]) => p.join('/'));
  assert.deepEqual(paths, [
    '',
    'ami-id',
    'placement',
    'placement/availability-zone',
    'public-keys',
    'public-keys/0',
    'public-keys/0/openssh-key',
    'user-data',
  ]);
});
