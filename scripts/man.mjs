#!/usr/bin/env node
// Writes docs/man/metad.8 and docs/man/metadctl.8 from the compiled command trees (cli/man.ts).
// `npm run man` builds first; test/unit/man.test.ts keeps the files equal to this output.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const { manPages } = await import(join(root, 'dist', 'daemon', 'process', 'man-pages.js'));
mkdirSync(join(root, 'docs', 'man'), { recursive: true });
for (const [file, text] of Object.entries(manPages())) writeFileSync(join(root, 'docs', 'man', file), text);
