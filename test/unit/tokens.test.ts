/** IMDSv2 session tokens: bound to the instance key and the expiry; one canonical spelling. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseTtl, TokenIssuer } from '../../routes/guest/tokens.js';

test('tokens: valid until expiry, for their instance only, in one spelling', () => {
  const t = new TokenIssuer();
  const now = 1_000_000;
  const tok = t.issue('uuid/vm1', now, 60);
  assert.equal(tok.length, 32);
  assert.equal(t.verify('uuid/vm1', tok, now + 59_999), now + 60_000);
  assert.equal(t.verify('uuid/vm1', tok, now + 60_000), 0, 'expired at the TTL');
  assert.equal(t.verify('uuid/vm2', tok, now), 0, 'another instance');
  assert.equal(t.verify('uuid/vm1', `${tok}A`, now), 0, 'no second spelling');
  assert.equal(new TokenIssuer().verify('uuid/vm1', tok, now), 0, 'another daemon start (key)');
  const forged = Buffer.from(tok, 'base64url');
  forged.writeBigUInt64BE(BigInt(now + 10 ** 9), 0);
  assert.equal(t.verify('uuid/vm1', forged.toString('base64url'), now), 0, 'a longer expiry breaks the MAC');
});

test('tokens: TTL header is an integer 1..21600', () => {
  assert.equal(parseTtl('1'), 1);
  assert.equal(parseTtl('21600'), 21600);
  for (const bad of [undefined, '', '0', '21601', '1.5', '-1', 'abc', ['60']]) assert.equal(parseTtl(bad as never), undefined, String(bad));
});

test('tokens: the remembered last token keeps every rule — its expiry, its instance, a forgotten instance', () => {
  const t = new TokenIssuer();
  const now = 1_000_000;
  const a = t.issue('uuid-a/vm1', now, 10);
  // Just issued: verifies (from memory) until its expiry, not at or after it.
  assert.equal(t.verify('uuid-a/vm1', a, now + 1), now + 10_000);
  assert.equal(t.verify('uuid-a/vm1', a, now + 10_000), 0);
  assert.equal(t.verify('uuid-a/vm1', a, now + 20_000), 0);
  // Never for another instance, whatever that instance remembers.
  const b = t.issue('uuid-b/vm2', now, 60);
  assert.equal(t.verify('uuid-b/vm2', a, now + 1), 0);
  assert.equal(t.verify('uuid-a/vm1', b, now + 1), 0);
  // A newer token for vm1 replaces the memory; the older one still verifies by its MAC.
  const a2 = t.issue('uuid-a/vm1', now + 5, 60);
  assert.equal(t.verify('uuid-a/vm1', a2, now + 6), now + 5 + 60_000);
  assert.equal(t.verify('uuid-a/vm1', a, now + 6), now + 10_000);
  // Forgetting only drops the shortcut: the MAC still decides.
  t.forget('uuid-a/vm1');
  assert.equal(t.verify('uuid-a/vm1', a2, now + 7), now + 5 + 60_000);
  assert.equal(t.verify('uuid-a/vm1', `${a2.slice(0, -1)}${a2.endsWith('A') ? 'B' : 'A'}`, now + 7), 0);
});
