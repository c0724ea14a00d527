/**
 * The version of metad and metadctl: package.json's, read at run time relative to this module
 * (dist/daemon/version.js -> ../../package.json; daemon/version.ts run from source -> ../package.json),
 * so that a release bump needs no second edit.
 */
import { readFileSync } from 'node:fs';

function readVersion(): string {
  for (const rel of ['../../package.json', '../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { name?: unknown; version?: unknown };
      if (pkg.name === 'metad' && typeof pkg.version === 'string') return pkg.version;
    } catch {
      // not there: try the next one
    }
  }
  return '0.0.0-unknown';
}

export const VERSION = readVersion();
