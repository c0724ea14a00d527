/**
 * The signing key for EC2 `dynamic/instance-identity/signature`: RSA-2048, generated on first
 * start into the state dir (0600), its public half served on the admin door so others can verify.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { writeFileDurable } from './persist.js';
import { dirname, basename } from 'node:path';

export class IdentitySigner {
  private constructor(
    private readonly key: KeyObject,
    readonly publicKeyPem: string,
  ) {}

  static async load(path: string): Promise<IdentitySigner> {
    let pem: string;
    try {
      const mode = statSync(path).mode & 0o777;
      if ((mode & 0o077) !== 0)
        throw new Error(`identity key ${path} is accessible by group or others (mode ${mode.toString(8)}); chmod 600 it`);
      pem = readFileSync(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
      pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
      await writeFileDurable(dirname(path), basename(path), pem, 0o600);
    }
    const key = createPrivateKey(pem);
    return new IdentitySigner(key, createPublicKey(key).export({ type: 'spki', format: 'pem' }).toString());
  }

  /** base64 RSA-SHA256 signature of the exact document bytes. */
  sign(document: string): string {
    return sign('sha256', Buffer.from(document), this.key).toString('base64');
  }
}
