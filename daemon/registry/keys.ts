/**
 * Key material of the daemon: the 32-byte master key (private values at rest, state-file MACs),
 * created 0600 on first start or read from a given path (e.g. a systemd credential). Two
 * subkeys are derived with HKDF so one key never serves two purposes. Owns no other I/O.
 */
import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { openSync, writeSync, fsyncSync, closeSync, readFileSync, statSync, linkSync, unlinkSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

export interface Sealed {
  iv: string;
  tag: string;
  ct: string;
}

export class Keyring {
  private readonly enc: Buffer;
  private readonly mac: Buffer;
  constructor(master: Buffer) {
    if (master.length !== 32) throw new Error('master key must be 32 bytes');
    this.enc = Buffer.from(hkdfSync('sha256', master, Buffer.alloc(0), 'metad private values v1', 32));
    this.mac = Buffer.from(hkdfSync('sha256', master, Buffer.alloc(0), 'metad state file mac v1', 32));
  }

  /** AES-256-GCM; `aad` binds the ciphertext to its owner (the instance name). */
  seal(plain: Buffer, aad: string): Sealed {
    const iv = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', this.enc, iv);
    c.setAAD(Buffer.from(aad));
    const ct = Buffer.concat([c.update(plain), c.final()]);
    return { iv: iv.toString('base64'), tag: c.getAuthTag().toString('base64'), ct: ct.toString('base64') };
  }

  /** Throws when the ciphertext, tag or aad do not match (tampering, wrong key). */
  open(s: Sealed, aad: string): Buffer {
    const d = createDecipheriv('aes-256-gcm', this.enc, Buffer.from(s.iv, 'base64'));
    d.setAAD(Buffer.from(aad));
    d.setAuthTag(Buffer.from(s.tag, 'base64'));
    return Buffer.concat([d.update(Buffer.from(s.ct, 'base64')), d.final()]);
  }

  macOf(text: string): string {
    return createHmac('sha256', this.mac).update(text).digest('base64');
  }

  verifyMac(text: string, mac: string): boolean {
    const want = Buffer.from(this.macOf(text), 'base64');
    const got = Buffer.from(mac, 'base64');
    return got.length === want.length && timingSafeEqual(got, want);
  }
}

class KeyFileError extends Error {
  override name = 'KeyFileError';
}

/**
 * Load the master key. With `create`, a missing file is made with O_EXCL and mode 0600 and
 * fsynced. A key file readable by group or others is refused: it guards every private value.
 */
export function loadMasterKey(path: string, create: boolean): Buffer {
  try {
    const st = statSync(path);
    if ((st.mode & 0o077) !== 0)
      throw new KeyFileError(`key file ${path} is accessible by group or others (mode ${(st.mode & 0o777).toString(8)}); chmod 600 it`);
    const key = readFileSync(path);
    if (key.length !== 32) throw new KeyFileError(`key file ${path} must hold exactly 32 bytes (has ${key.length})`);
    return key;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || !create) {
      if (err instanceof KeyFileError) throw err;
      throw new KeyFileError(`cannot read key file ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    }
  }
  // Durable and all-or-nothing: a crash leaves either no key or a whole one, never 0 bytes.
  const key = randomBytes(32);
  const tmp = join(dirname(path), `.tmp-${basename(path)}.${randomBytes(6).toString('hex')}`);
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    writeSync(fd, key);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    linkSync(tmp, path); // fails if another process created the key meanwhile
  } finally {
    unlinkSync(tmp);
  }
  const dfd = openSync(dirname(path), 'r');
  try {
    fsyncSync(dfd);
  } finally {
    closeSync(dfd);
  }
  return key;
}
