/**
 * The state-file codec: one instance as the text of instances/<name>.json. The outer JSON holds
 * a format name, a version, the body as a string and a MAC over that string; the body holds the
 * public document and the sensitive part (private params, IAM credentials, OpenStack password)
 * sealed with AES-256-GCM, the instance name as associated data. Pure apart from the keyring's
 * crypto: no file I/O here (daemon/registry/store.ts reads and writes the files).
 */
import type { Keyring, Sealed } from './keys.js';
import type { PublicDoc, Sensitive, StoredInstance } from './model.js';
import { DaemonError } from '../errors.js';

export const STATE_FORMAT = 'metad-instance';
export const STATE_VERSION = 1;

interface FileBody {
  doc: PublicDoc;
  sealed?: Sealed;
  createdAt: string;
  updatedAt: string;
  generation: number;
}

/**
 * The file text for `inst`. The sensitive part is sealed only when there is one. A body over
 * `maxBodyBytes` (sealed part included) is PayloadTooLarge: nothing is written.
 */
export function encodeStateFile(inst: StoredInstance, keyring: Keyring, maxBodyBytes: number): string {
  const { doc, sensitive } = inst;
  const hasSensitive = Object.keys(sensitive.private).length > 0 || sensitive.iam !== undefined || sensitive.password !== undefined;
  const body: FileBody = { doc, createdAt: inst.createdAt, updatedAt: inst.updatedAt, generation: inst.generation };
  if (hasSensitive) body.sealed = keyring.seal(Buffer.from(JSON.stringify(sensitive)), doc.name);
  const bodyText = JSON.stringify(body);
  if (Buffer.byteLength(bodyText) > maxBodyBytes) {
    throw new DaemonError('PayloadTooLarge', `instance document too large (limit ${maxBodyBytes} bytes stored)`);
  }
  return JSON.stringify({ format: STATE_FORMAT, version: STATE_VERSION, body: bodyText, mac: keyring.macOf(bodyText) });
}

/**
 * The instance in the text of the state file of `name`, or the reason it is unusable (a string
 * for the quarantine log: never a value from the file).
 * '{"format":"metad-instance","version":2,…}' -> 'unsupported format version 2'.
 */
export function decodeStateFile(name: string, text: string, keyring: Keyring): StoredInstance | string {
  let outer: { format?: unknown; version?: unknown; body?: unknown; mac?: unknown };
  try {
    outer = JSON.parse(text) as typeof outer;
  } catch {
    return 'not JSON (truncated or damaged)';
  }
  if (outer.format !== STATE_FORMAT) return 'unknown format';
  if (outer.version !== STATE_VERSION) return `unsupported format version ${typeof outer.version === 'number' ? outer.version : '?'}`;
  if (typeof outer.body !== 'string' || typeof outer.mac !== 'string') return 'missing body or mac';
  if (!keyring.verifyMac(outer.body, outer.mac)) return 'integrity check failed (tampered, or another key)';
  try {
    const body = JSON.parse(outer.body) as Partial<FileBody>;
    if (body.doc?.name !== name) return 'name does not match file name';
    // The MAC held: the body is one this daemon wrote, with every field.
    const { doc, sealed, createdAt, updatedAt, generation } = body as FileBody;
    const sensitive: Sensitive = sealed ? (JSON.parse(keyring.open(sealed, name).toString('utf8')) as Sensitive) : { private: {} };
    return { doc: withoutLegacyFields(doc), sensitive, createdAt, updatedAt, generation };
  } catch {
    return 'body does not decode';
  }
}

/**
 * Fields earlier versions stored that no longer exist: `os.definition` (a host path, before OS
 * definitions were found by name in os.searchPath). Dropped on load, so that the next patch of
 * the instance validates; the OS is then found by `os.name`.
 */
function withoutLegacyFields(doc: PublicDoc): PublicDoc {
  const os: (NonNullable<PublicDoc['os']> & { definition?: unknown }) | undefined = doc.os;
  if (os === undefined || !('definition' in os)) return doc;
  const { definition: _legacy, ...rest } = os;
  return { ...doc, os: rest };
}
