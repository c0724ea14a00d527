/**
 * The metadata tree shared by the flavours: directories of named entries and leaves (text or raw
 * bytes), a path lookup, and the EC2 listing text of a directory. Flavours build trees; routes
 * look paths up and serialise. Pure: no I/O, no clock, no randomness.
 */

/**
 * A text leaf computed on first read and then kept, for values that are costly and rarely
 * asked for (the identity signature: an RSA operation). Listings name it without computing it.
 */
export class LazyText {
  readonly kind = 'lazy';
  private value: string | undefined;
  constructor(private readonly make: () => string) {}
  toString(): string {
    return (this.value ??= this.make());
  }
}

/** A leaf is served as-is: text (`text/plain`), raw bytes (`user-data`) or lazily computed text. */
type Leaf = string | Buffer | LazyText;

/**
 * A directory. Entries keep insertion order, which is the listing order. Entries live in a Map,
 * not a plain object, so names chosen by an admin (a tag key `__proto__` or `constructor`) are
 * ordinary keys and can neither hide nor inject anything.
 */
export interface Dir {
  readonly kind: 'dir';
  readonly entries: ReadonlyMap<string, Tree>;
  /** Listing lines that replace the default `name` / `name/` for some entries (see `listing`). */
  readonly labels: ReadonlyMap<string, string>;
}

export type Tree = Leaf | Dir;

/** Entries as a record (fixed names written in code) or as pairs (names that come from data). */
export type Entries = Readonly<Record<string, Tree | undefined>> | Iterable<readonly [string, Tree | undefined]>;
export type Labels = Readonly<Record<string, string>> | Iterable<readonly [string, string]>;

function pairsOf<V>(input: Readonly<Record<string, V>> | Iterable<readonly [string, V]>): Iterable<readonly [string, V]> {
  return Symbol.iterator in input ? input : Object.entries(input);
}

/**
 * Builds a directory. Entries whose value is `undefined` are dropped, so a renderer can write
 * `{ 'kernel-id': since('2008-02-01', v) ? id : undefined }`. Pass names that come from data
 * (tags, MACs, roles) as pairs, never as an object literal.
 */
export function dir(entries: Entries, labels: Labels = []): Dir {
  const map = new Map<string, Tree>();
  for (const [name, child] of pairsOf(entries)) if (child !== undefined) map.set(name, child);
  return { kind: 'dir', entries: map, labels: new Map(pairsOf(labels)) };
}

/** True for a directory, false for a leaf. */
export function isDir(tree: Tree): tree is Dir {
  return typeof tree === 'object' && !Buffer.isBuffer(tree) && !(tree instanceof LazyText);
}

/**
 * Follows `segments` from `tree`. Returns undefined when a segment is missing or when a path goes
 * on below a leaf. Segments are taken literally: the caller drops the empty segment a trailing
 * slash leaves (`meta-data/` → ['meta-data']) and decides what a doubled slash means.
 *
 * Example: lookup(root, ['meta-data', 'public-keys', '0', 'openssh-key']) → 'ssh-ed25519 AAAA…'
 * even though the `public-keys/` listing shows that entry as `0=mykey`.
 */
export function lookup(tree: Tree, segments: readonly string[]): Tree | undefined {
  let node: Tree = tree;
  for (const segment of segments) {
    if (!isDir(node)) return undefined;
    const child = node.entries.get(segment);
    if (child === undefined) return undefined;
    node = child;
  }
  return node;
}

/**
 * The EC2 listing of a directory: one line per entry, LF-separated, no trailing newline;
 * sub-directories end with `/` unless a label replaces the line.
 *
 * Examples:
 *   {ami-id: 'ami-1', placement: {…}}               → "ami-id\nplacement/"
 *   public-keys {0: {openssh-key}} label 0='0=mykey' → "0=mykey"   (EC2 shows no slash here)
 *   an empty directory                               → ""
 */
export function listing(d: Dir): string {
  const lines: string[] = [];
  for (const [name, child] of d.entries) lines.push(d.labels.get(name) ?? (isDir(child) ? `${name}/` : name));
  return lines.join('\n');
}

/**
 * Every node of a tree in pre-order with its path from the root (the root itself has path []).
 * Used to crawl a tree the way cloud-init does, and to write golden files.
 */
export function* walk(tree: Tree, path: readonly string[] = []): Generator<[readonly string[], Tree]> {
  yield [path, tree];
  if (!isDir(tree)) return;
  for (const [name, child] of tree.entries) yield* walk(child, [...path, name]);
}
