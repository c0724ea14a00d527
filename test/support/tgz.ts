/** Crafted gzipped tarballs for the archive tests: tar-stream's packer writes whatever it is given (what GNU tar would refuse to). */
import { gzipSync } from 'node:zlib';
import { pack, type Header } from 'tar-stream';

export type TarEntry = Partial<Header> & { name: string; body?: Buffer | string };

/** The uncompressed tar of `entries`. */
export async function tar(entries: TarEntry[]): Promise<Buffer> {
  const p = pack();
  const chunks: Buffer[] = [];
  p.on('data', (c) => chunks.push(c as Buffer));
  const done = new Promise<void>((resolve) => p.on('end', () => resolve()));
  for (const { body, ...h } of entries) {
    await new Promise<void>((resolve, reject) => {
      p.entry(h, body ?? '', (err) => (err ? reject(err) : resolve()));
    });
  }
  p.finalize();
  await done;
  return Buffer.concat(chunks);
}

/** A tar of `entries`, gzipped. */
export async function tgz(entries: TarEntry[]): Promise<Buffer> {
  return gzipSync(await tar(entries));
}
