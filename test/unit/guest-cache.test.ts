/** The guest door's answer cache: per generation, bounded per instance and in instances. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AnswerCache } from '../../routes/guest/cache.js';
import { prepareAnswer, text } from '../../routes/guest/answer.js';
import { SeedPool } from '../../routes/guest/seed-pool.js';

test('answer cache: a new generation drops old answers; bounds hold', () => {
  const c = new AnswerCache(2, 3);
  const p = prepareAnswer(text('x'));
  c.storeAnswer('a', 1, '/x', p);
  assert.equal(c.answer('a', 1, '/x'), p);
  assert.equal(c.answer('a', 2, '/x'), undefined, 'another generation misses');
  c.storeAnswer('a', 2, '/y', p);
  assert.equal(c.answer('a', 1, '/x'), undefined, 'storing for generation 2 dropped generation 1');
  for (const path of ['/1', '/2', '/3', '/4']) c.storeAnswer('b', 1, path, p);
  assert.equal(c.answer('b', 1, '/4'), undefined, 'at most 3 answers per instance');
  c.storeAnswer('c', 1, '/x', p);
  assert.equal(c.instances, 2, 'at most 2 instances');
  assert.equal(c.answer('a', 2, '/y'), undefined, 'the least recently rendered instance went first');
  let made = 0;
  assert.equal(
    c.value('c', 1, 'k', () => ++made),
    1,
  );
  assert.equal(
    c.value('c', 1, 'k', () => ++made),
    1,
    'made once',
  );
  c.drop('c');
  assert.equal(
    c.value('c', 1, 'k', () => ++made),
    2,
  );
});

test('prepareAnswer: content length in bytes; seeded answers keep a fixed length', () => {
  const p = prepareAnswer(text('héllo'));
  assert.deepEqual(p.head, ['Content-Type', 'text/plain; charset=utf-8', 'Content-Length', '6']);
  const placeholder = `"${Buffer.alloc(512).toString('base64')}"`;
  const s = prepareAnswer({
    status: 200,
    type: 'application/json',
    body: `{"a":1,"random_seed":${placeholder},"b":2}`,
    cache: 'seeded',
    seedPlaceholder: placeholder,
  });
  assert.ok(s.seeded);
  const len = Number(s.head[s.head.indexOf('Content-Length') + 1]);
  const pool = new SeedPool(2048);
  const one = Buffer.concat([s.seeded.prefix, Buffer.from(`"${pool.takeBase64(512)}"`), s.seeded.suffix]);
  assert.equal(one.length, len);
  assert.equal(Buffer.from((JSON.parse(one.toString()) as { random_seed: string }).random_seed, 'base64').length, 512);
});

test('seed pool: never hands out the same bytes twice, refills when used up', () => {
  const pool = new SeedPool(1024);
  const seen = new Set<string>();
  for (let i = 0; i < 10; i++) seen.add(pool.takeBase64(512));
  assert.equal(seen.size, 10);
  assert.throws(() => pool.takeBase64(2048), RangeError);
});

test('prepareAnswer: a 204 carries no Content-Length', () => {
  assert.deepEqual(prepareAnswer({ status: 204 }).head, []);
});
