/**
 * Run metadctl in-process (its `main`) with captured stdout/stderr and a given stdin: the one
 * helper the metadctl, comm-admin, install and readiness tests share.
 */
import { PassThrough, Readable } from 'node:stream';
import { main } from '../../cli/metadctl.js';

export interface CtlResult {
  code: number;
  out: string;
  err: string;
}

/** `metadctl ARGS` with `stdin` as its standard input and an empty environment. */
export async function runMetadctl(args: string[], stdin = ''): Promise<CtlResult> {
  const out = new PassThrough();
  const err = new PassThrough();
  let o = '';
  let e = '';
  out.on('data', (c: Buffer) => (o += c.toString('utf8')));
  err.on('data', (c: Buffer) => (e += c.toString('utf8')));
  const code = await main(args, { stdout: out, stderr: err, stdin: Readable.from([stdin]), env: {} });
  return { code, out: o, err: e };
}

/** `metadctl --socket SOCKET ARGS`. */
export function ctlAt(socket: string, args: string[], stdin = ''): Promise<CtlResult> {
  return runMetadctl(['--socket', socket, ...args], stdin);
}
