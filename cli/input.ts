/**
 * Reading what the admin hands to metadctl: instance documents and merge patches (JSON or
 * YAML, from a file or stdin) and parameter values (KEY=VALUE, KEY=@file, KEY=-).
 * Every failure here is a UsageError (exit 2): nothing has been sent to the daemon yet. No
 * message quotes the input (a document or an argument may hold a secret): positions only.
 */
import { readFile } from 'node:fs/promises';
import { parseDocument } from 'yaml';
import { PARAM_NAME_PATTERN } from '../daemon/registry/model.js';
import { UsageError } from './errors.js';
import { describeJsonError, describeYamlError } from './syntax-error.js';

export interface InputIo {
  stdin: NodeJS.ReadableStream;
  stderr: NodeJS.WritableStream;
}

const FS_REASONS: Record<string, string> = {
  ENOENT: 'no such file',
  EACCES: 'permission denied',
  EISDIR: 'is a directory',
  ENOTDIR: 'a path component is not a directory',
  ELOOP: 'too many symbolic links',
};

async function readStdin(io: InputIo): Promise<Buffer> {
  if ((io.stdin as { isTTY?: boolean }).isTTY) io.stderr.write('metadctl: reading from stdin (end with Ctrl-D)\n');
  const chunks: Buffer[] = [];
  for await (const chunk of io.stdin) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  return Buffer.concat(chunks);
}

/** The bytes of FILE, or of stdin for '-'. */
export async function readSource(file: string, io: InputIo): Promise<Buffer> {
  if (file === '-') return readStdin(io);
  try {
    return await readFile(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? '';
    throw new UsageError(`cannot read ${file}: ${FS_REASONS[code] ?? (err as Error).message}`);
  }
}

function decodeUtf8(bytes: Buffer, what: string): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes); // drops a BOM
  } catch {
    throw new UsageError(`${what} is not valid UTF-8`);
  }
}

/**
 * Parse a JSON or YAML document. `.json` files must be JSON; anything else is tried as JSON
 * first (tabs allowed), then as YAML 1.2 (core schema: no surprise dates, octals or
 * sexagesimal MACs). Errors give line and column, never the text there.
 */
function parseStructured(text: string, what: string, jsonOnly: boolean): unknown {
  try {
    return JSON.parse(text);
  } catch {
    if (jsonOnly) throw new UsageError(`${what} is not valid JSON: ${describeJsonError(text)}`);
  }
  const doc = parseDocument(text, { prettyErrors: false, uniqueKeys: true, schema: 'core', logLevel: 'silent' });
  if (doc.errors.length > 0) {
    const looksJson = /^\s*[[{]/.test(text);
    throw new UsageError(`${what} is not valid JSON or YAML`, [
      ...(looksJson ? [`as JSON: ${describeJsonError(text)}`] : []),
      ...doc.errors.slice(0, 5).map((e) => `as YAML: ${describeYamlError(text, e)}`),
    ]);
  }
  try {
    return doc.toJS({ maxAliasCount: 100 });
  } catch {
    // The library's messages may name an alias: say what is wrong without it.
    throw new UsageError(`${what}: its YAML aliases cannot be resolved (unknown anchor, or more than 100 alias uses)`);
  }
}

/** Read a JSON/YAML object from FILE ('-' for stdin). */
export async function readObject(file: string, io: InputIo): Promise<Record<string, unknown>> {
  const what = file === '-' ? 'stdin' : file;
  const text = decodeUtf8(await readSource(file, io), what);
  if (text.trim() === '') throw new UsageError(`${what} is empty`);
  const value = parseStructured(text, what, /\.json$/i.test(file));
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new UsageError(
      `${what} must hold an object (a mapping), not ${Array.isArray(value) ? 'a list' : value === null ? 'null' : typeof value}`,
    );
  }
  return value as Record<string, unknown>;
}

const PARAM_NAME = new RegExp(PARAM_NAME_PATTERN);

/** Drop one trailing line break: `echo s3cret > file` should not put "\n" in the value. */
function chompOne(s: string): string {
  if (s.endsWith('\r\n')) return s.slice(0, -2);
  if (s.endsWith('\n')) return s.slice(0, -1);
  return s;
}

/**
 * Parse KEY=VALUE arguments. VALUE forms: `@path` reads a file, `-` (or `@-`) reads stdin (once),
 * `@@text` is the literal `@text`. File and stdin values lose one trailing newline unless
 * `keepNewline`.
 */
export async function readAssignments(args: readonly string[], io: InputIo, keepNewline = false): Promise<Record<string, string>> {
  const values: Record<string, string> = Object.create(null) as Record<string, string>;
  let stdinUsedBy: string | undefined;
  for (const [n, arg] of args.entries()) {
    // Arguments are named by position: an argument without '=' may well be a bare secret.
    const eq = arg.indexOf('=');
    if (eq <= 0) throw new UsageError(`assignment ${n + 1}: expected KEY=VALUE, KEY=@FILE or KEY=-`);
    const key = arg.slice(0, eq);
    const spec = arg.slice(eq + 1);
    if (!PARAM_NAME.test(key)) {
      throw new UsageError(`assignment ${n + 1}: invalid parameter name`, [`names match ${PARAM_NAME_PATTERN}`]);
    }
    if (Object.prototype.hasOwnProperty.call(values, key)) throw new UsageError(`parameter ${key} given twice`);
    let value: string;
    if (spec === '-' || spec === '@-') {
      if (stdinUsedBy !== undefined) throw new UsageError(`only one value can come from stdin (${stdinUsedBy} and ${key} both use '-')`);
      stdinUsedBy = key;
      value = decodeUtf8(await readStdin(io), `the value of ${key} (stdin)`);
      if (!keepNewline) value = chompOne(value);
    } else if (spec.startsWith('@@')) {
      value = spec.slice(1);
    } else if (spec.startsWith('@')) {
      const file = spec.slice(1);
      if (file === '') throw new UsageError(`${key}=@ needs a file name`);
      value = decodeUtf8(await readSource(file, io), `the value of ${key} (${file})`);
      if (!keepNewline) value = chompOne(value);
    } else {
      value = spec;
    }
    values[key] = value;
  }
  return { ...values };
}
