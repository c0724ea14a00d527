/**
 * Reading the state dir at start: each instances/<name>.json is read and decoded
 * (daemon/registry/state-file.ts), and a file that cannot be used is moved aside to quarantine/ with the
 * reason in the log, never deleted. Knows nothing of indexes or write queues (daemon/registry/store.ts).
 */
import { readdir } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Keyring } from './keys.js';
import { FILE_NAME_MAX, isInstanceName, type StoredInstance } from './model.js';
import { moveDurable } from './persist.js';
import { decodeStateFile } from './state-file.js';
import { EV } from '../log/events.js';

export interface StateFiles {
  good: { f: string; inst: StoredInstance }[];
  /** Files that cannot be used, with the reason (never a value from the file). */
  bad: { f: string; reason: string }[];
}

/** Read and decode every state file in `dir`, in file-name order. */
export async function readStateFiles(dir: string, keyring: Keyring): Promise<StateFiles> {
  const files = (await readdir(dir)).filter((f) => f.endsWith('.json')).sort();
  const out: StateFiles = { good: [], bad: [] };
  for (const f of files) {
    const r = readStateFile(dir, f, keyring);
    if (r === null) continue; // vanished between readdir and read
    if (typeof r === 'string') out.bad.push({ f, reason: r });
    else out.good.push({ f, inst: r });
  }
  return out;
}

/**
 * Parse and verify one file; a string is the reason it is unusable, null means it vanished.
 * I/O errors other than ENOENT are thrown: a transient EIO or EACCES must fail the start, not
 * quarantine a good file.
 */
function readStateFile(dir: string, f: string, keyring: Keyring): StoredInstance | string | null {
  const name = f.slice(0, -'.json'.length);
  if (!isInstanceName(name)) return 'file name is not an instance name';
  let text: string;
  try {
    // Sync on purpose: at start nothing is listening yet, and 10k small reads through the
    // thread pool cost ~6x more (bench/suites/registry.ts).
    text = readFileSync(join(dir, f), 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return null;
    if (code === 'EISDIR') return 'not a regular file';
    throw err;
  }
  return decodeStateFile(name, text, keyring);
}

/**
 * Move a bad file aside (never delete evidence). If even that fails (EXDEV, EROFS, …), the file
 * stays where it is and is not loaded: one bad file must not keep every other instance down.
 */
export async function quarantineFile(
  dirs: { from: string; to: string },
  f: string,
  reason: string,
  now: number,
  log: Logger,
): Promise<void> {
  // '<file>.<ms>.<hex>', the file part cut so that the whole fits NAME_MAX (the log keeps it whole).
  const suffix = `.${now}.${randomBytes(3).toString('hex')}`;
  const dest = `${f.slice(0, FILE_NAME_MAX - suffix.length)}${suffix}`;
  try {
    await moveDurable(dirs.from, f, dirs.to, dest);
    log.error({ file: f, quarantinedAs: join(dirs.to, dest), reason }, EV.quarantined);
  } catch (err) {
    log.error({ file: f, quarantinedAs: null, reason, moveFailed: (err as NodeJS.ErrnoException).code ?? 'error' }, EV.quarantined);
  }
}
