/** The log-event catalogue is complete: the code logs only catalogued messages, and the doc matches. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EVENTS, loggingDoc } from '../../daemon/log/events.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const sources = (dir: string): string[] =>
  readdirSync(join(ROOT, dir)).flatMap((f) => {
    const rel = join(dir, f);
    return statSync(join(ROOT, rel)).isDirectory() ? sources(rel) : rel.endsWith('.ts') ? [rel] : [];
  });

test('the code logs catalogued events only (no free-form messages)', () => {
  const offenders: string[] = [];
  for (const file of [...sources('daemon'), ...sources('routes')]) {
    const text = readFileSync(join(ROOT, file), 'utf8');
    for (const m of text.matchAll(/\.(trace|debug|info|warn|error|fatal)\(([^;]*?)['`"][^'`"]*['`"]\)/g)) {
      if (/\blog\b|log\(|Log\b|childLog/.test(m[0])) offenders.push(`${file}: ${m[0].slice(0, 80)}`);
    }
  }
  assert.deepEqual(offenders, []);
  const used = [...sources('daemon'), ...sources('routes')].map((f) => readFileSync(join(ROOT, f), 'utf8')).join('\n');
  // Guest-triggered events are logged through daemon/log/guest-log.ts: `note('guestConnCap', …)`.
  const unused = Object.keys(EVENTS).filter((k) => !used.includes(`EV.${k}`) && !used.includes(`note('${k}'`));
  assert.deepEqual(unused, [], 'every catalogued event is logged somewhere');
});

test('docs/logging.md is the generated catalogue (`node dist/daemon/cli.js log-events > docs/logging.md`)', () => {
  assert.equal(readFileSync(join(ROOT, 'docs', 'logging.md'), 'utf8'), loggingDoc());
});
