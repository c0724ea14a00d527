/**
 * IMDSv2 token cost per AWS SDK call (token PUT, then a GET with that token), in-process: the
 * issuer remembers each instance's last token, so the GET's check needs no second HMAC.
 * Baseline, same run: the same pairs with the memory dropped before each check (the cost of
 * verifying by HMAC every time). Ratio < 1 is the saving.
 */
import { TokenIssuer } from '../../routes/guest/tokens.js';
import type { Suite, SuiteContext } from '../support/suite.js';

function pairs(n: number, dropMemory: boolean): number {
  const t = new TokenIssuer();
  const start = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    const key = `00000000-0000-4000-8000-${String(i % 50).padStart(12, '0')}/vm${String(i % 50)}`;
    const token = t.issue(key, 1000, 21600);
    if (dropMemory) t.forget(key);
    if (t.verify(key, token, 1001) === 0) throw new Error('a fresh token did not verify');
  }
  return Number(process.hrtime.bigint() - start) / n;
}

const suite: Suite = {
  description: 'IMDSv2 issue + verify per SDK call: remembered last token vs an HMAC on every verify (same run)',
  run(ctx: SuiteContext) {
    const n = ctx.quick ? 20_000 : 200_000;
    pairs(n / 10, false); // warm-up
    pairs(n / 10, true);
    const runs = [0, 1, 2].map(() => ({ hmac: pairs(n, true), remembered: pairs(n, false) }));
    const med = (xs: number[]): number => [...xs].sort((a, b) => a - b)[1] ?? 0;
    ctx.record({ name: 'issue+verify, HMAC each time', value: med(runs.map((r) => r.hmac)), unit: 'ns/call' });
    ctx.record({
      name: 'issue+verify, remembered token',
      value: med(runs.map((r) => r.remembered)),
      unit: 'ns/call',
      baseline: 'issue+verify, HMAC each time',
    });
    return Promise.resolve();
  },
};
export default suite;
