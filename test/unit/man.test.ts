/**
 * docs/man/*.8 are what `npm run man` writes from the command trees (the same text as --help),
 * every command has its section, and groff renders both pages without a warning.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { manPages } from '../../daemon/process/man-pages.js';
import { helpOf } from '../../cli/man.js';
import { metadctlProgram } from '../../cli/metadctl.js';
import { hasCommand, skipOrFail } from '../support/env.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

test('docs/man/ holds what `npm run man` generates', () => {
  for (const [file, text] of Object.entries(manPages()))
    assert.equal(readFileSync(join(ROOT, 'docs', 'man', file), 'utf8'), text, `docs/man/${file}: run npm run man`);
});

test('every metadctl command has a section holding its --help', () => {
  const page = manPages()['metadctl.8'] ?? '';
  const walk = (c: Command, prefix: string[]): string[] =>
    c.commands.flatMap((s) => [[...prefix, s.name()].join(' '), ...walk(s, [...prefix, s.name()])]);
  const names = walk(metadctlProgram(), []);
  assert.ok(names.includes('nic up') && names.includes('params set'), 'the walk sees nested commands');
  for (const n of names) assert.ok(page.includes(`.SS "metadctl ${n.replace(/-/g, '\\-')}"`), n);
  // The text of a section is the command's own help (modulo roff escapes).
  const up = metadctlProgram()
    .commands.find((c) => c.name() === 'nic')
    ?.commands.find((c) => c.name() === 'up');
  assert.ok(up);
  const firstLine = helpOf(up).split('\n')[0] ?? '';
  assert.ok(page.includes(firstLine.replace(/-/g, '\\-')), firstLine);
});

test('groff renders both pages without a warning', (t) => {
  if (skipOrFail(t, hasCommand('groff') ? undefined : 'groff missing (Debian groff-base; .ci/install-deps.sh)')) return;
  for (const file of ['metad.8', 'metadctl.8']) {
    const r = spawnSync('groff', ['-man', '-Tutf8', '-ww', '-z', join(ROOT, 'docs', 'man', file)], { encoding: 'utf8' });
    assert.equal(r.status, 0, file);
    assert.equal(r.stderr, '', `${file}: ${r.stderr}`);
  }
});
