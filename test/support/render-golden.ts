/**
 * Helpers for the renderer golden tests: load an instance fixture as a GuestView, a fixed
 * RenderCtx, turn an EC2 tree into files, and compare a directory of golden files byte for byte.
 * METAD_UPDATE_GOLDEN=1 rewrites the goldens instead (the directory is emptied first, so a
 * field that disappears also disappears from the goldens). Review the diff before committing.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { instanceSchema, splitInput, type InstanceInput } from '../../daemon/registry/model.js';
import { isDir, listing, walk, type Tree } from '../../routes/render/tree.js';
import type { GuestView, RenderCtx } from '../../routes/render/view.js';

/** Repo-root test/fixtures, found from dist/test/support/ where this file runs. */
const FIXTURES_DIR = fileURLToPath(new URL('../../../test/fixtures/', import.meta.url));
const GOLDEN_DIR = join(FIXTURES_DIR, 'golden');
const UPDATE_GOLDEN = process.env.METAD_UPDATE_GOLDEN === '1';

/** The instance fixtures (test/fixtures/instances/<name>.json). */
export const INSTANCES = ['full', 'minimal', 'edge', 'multinic'] as const;
export type InstanceName = (typeof INSTANCES)[number];

interface InstanceFixture {
  createdAt: string;
  generation: number;
  /** The comm range's prefix the daemon would derive from `guest.commRange`. */
  commPrefix: number;
  instance: InstanceInput;
}

// ajv-formats is CommonJS; under nodenext its default export is the module object.
const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ?? addFormatsModule) as (a: Ajv) => Ajv;
const ajv = new Ajv({ allErrors: true, strict: false });
addFormats(ajv);
const validateInstance = ajv.compile(instanceSchema);

/** The raw fixture file, checked against the instance schema so fixtures cannot drift from it. */
export function readFixture(name: InstanceName): InstanceFixture {
  const raw = JSON.parse(readFileSync(join(FIXTURES_DIR, 'instances', `${name}.json`), 'utf8')) as InstanceFixture;
  if (!validateInstance(raw.instance)) {
    throw new Error(`fixture ${name} is not a valid instance: ${ajv.errorsText(validateInstance.errors)}`);
  }
  return raw;
}

/** A fixture as the renderers see it: split by visibility exactly as the store splits it. */
export function loadView(name: InstanceName): GuestView {
  const { createdAt, generation, commPrefix, instance } = readFixture(name);
  const { doc, priv, secret, iam } = splitInput(instance);
  return { doc, privateParams: priv ?? {}, secretParams: secret ?? {}, iam: iam ?? undefined, generation, createdAt, commPrefix };
}

/** A fixed clock and a fixed 600-byte "random" seed, so every render is reproducible. */
export function fixedCtx(overrides: Partial<RenderCtx> = {}): RenderCtx {
  const seed = Buffer.alloc(600);
  for (let i = 0; i < seed.length; i++) seed[i] = (i * 37 + 11) & 0xff;
  return { now: Date.UTC(2024, 4, 1, 12, 0, 0), randomSeed: seed, ...overrides };
}

/** A deterministic stand-in for the caller's signer. */
export function fakeSign(document: string): string {
  return `signed(${document.length} bytes)`;
}

/** Pretty JSON with a final newline: the form goldens store a JSON document in. */
export function jsonText(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}

/**
 * An EC2 tree as golden files: each directory's listing in `<dir>/_listing.txt`, each leaf in
 * `<path>.txt`, path segments URI-encoded so a MAC's colons stay out of file names:
 * meta-data/network/interfaces/macs/52:54:00:12:34:56/mac → …/macs/52%3A54%3A00%3A12%3A34%3A56/mac.txt
 */
export function treeFiles(tree: Tree): Map<string, string | Buffer> {
  const files = new Map<string, string | Buffer>();
  for (const [path, node] of walk(tree)) {
    const p = path.map(encodeURIComponent).join('/');
    if (isDir(node)) files.set(p === '' ? '_listing.txt' : `${p}/_listing.txt`, listing(node));
    else files.set(`${p}.txt`, Buffer.isBuffer(node) ? node : node.toString());
  }
  return files;
}

function listFiles(root: string, prefix = ''): string[] {
  if (!existsSync(root)) return [];
  return readdirSync(root).flatMap((name) => {
    const full = join(root, name);
    const rel = prefix === '' ? name : `${prefix}/${name}`;
    return statSync(full).isDirectory() ? listFiles(full, rel) : [rel];
  });
}

/**
 * Compares `files` with the golden directory `rel` (under test/fixtures/golden/): the same file
 * names, and each body equal byte for byte (EC2 bodies have no trailing newline; keep editors
 * from adding one). With METAD_UPDATE_GOLDEN=1 the directory is rewritten instead.
 */
export function assertGoldenDir(rel: string, files: ReadonlyMap<string, string | Buffer>): void {
  const root = join(GOLDEN_DIR, rel);
  if (UPDATE_GOLDEN) {
    rmSync(root, { recursive: true, force: true });
    for (const [name, body] of files) {
      mkdirSync(dirname(join(root, name)), { recursive: true });
      writeFileSync(join(root, name), body);
    }
    return;
  }
  const hint = `(regenerate with METAD_UPDATE_GOLDEN=1 and review the diff)`;
  assert.deepEqual(listFiles(root).sort(), [...files.keys()].sort(), `golden file names differ in ${rel} ${hint}`);
  for (const [name, body] of files) {
    const expected = readFileSync(join(root, name));
    const actual = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
    if (!expected.equals(actual)) {
      assert.equal(actual.toString('utf8'), expected.toString('utf8'), `golden ${rel}/${name} differs ${hint}`);
      assert.fail(`golden ${rel}/${name} differs in bytes ${hint}`);
    }
  }
}
