/**
 * The repository stands alone: every link in its Markdown files resolves to a file inside the
 * repository (or a heading of the page), and no text points outside it (`../shared/…`).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(fileURLToPath(new URL('../../../', import.meta.url)));
const SKIP = new Set(['node_modules', 'dist', '.git']);

function markdownFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    if (SKIP.has(f)) return [];
    const p = join(dir, f);
    return statSync(p).isDirectory() ? markdownFiles(p) : f.endsWith('.md') ? [p] : [];
  });
}

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes. */
function anchors(markdown: string): Set<string> {
  const out = new Set<string>();
  for (const m of markdown.matchAll(/^#{1,6} +(.+)$/gm)) {
    out.add(
      (m[1] ?? '')
        .trim()
        .toLowerCase()
        .replace(/[^\p{L}\p{N} _-]/gu, '')
        .replaceAll(' ', '-'),
    );
  }
  return out;
}

const inside = (p: string): boolean => p === ROOT || p.startsWith(ROOT + sep);

/** What is wrong with the links of one file (empty when nothing). */
function problems(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const here = relative(ROOT, file);
  const out: string[] = [];
  for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
    const target = m[1] ?? '';
    if (/^[a-z]+:/i.test(target)) continue; // https:, mailto:
    const [path = '', anchor] = target.split('#');
    const abs = path === '' ? file : resolve(dirname(file), path);
    if (!inside(abs) || !existsSync(abs)) out.push(`${here}: link to ${target} does not resolve inside the repository`);
    else if (anchor !== undefined && abs.endsWith('.md') && !anchors(readFileSync(abs, 'utf8')).has(anchor))
      out.push(`${here}: no heading #${anchor} in ${relative(ROOT, abs)}`);
  }
  for (const m of text.matchAll(/(?<![\w/.])(?:\.\.\/)+[\w.-]+(?:\/[\w.-]+)*/g)) {
    if (!inside(resolve(dirname(file), m[0]))) out.push(`${here}: ${m[0]} points outside the repository`);
  }
  return out;
}

test('Markdown files link only inside the repository, and every link resolves', () => {
  const files = markdownFiles(ROOT);
  assert.ok(files.some((f) => f.endsWith(join('docs', 'architecture.md'))));
  assert.deepEqual(files.flatMap(problems), []);
});

test('the link check itself catches what it must', () => {
  assert.ok(anchors('## Planned (not built yet)\n').has('planned-not-built-yet'));
  assert.ok(!inside(resolve(ROOT, 'docs', '../../shared/ARCHITECTURE.md')));
});

test('README and design notes point to the architecture page in docs/', () => {
  assert.match(readFileSync(join(ROOT, 'README.md'), 'utf8'), /\]\(docs\/architecture\.md\)/);
  assert.match(readFileSync(join(ROOT, 'docs', 'design-notes.md'), 'utf8'), /\]\(architecture\.md\)/);
});
