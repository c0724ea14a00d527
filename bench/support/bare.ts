/** Start the bare node:http baseline server (bench/support/bare-server.ts) as a tracked child process. */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { trackChild } from './cleanup.js';

const BARE_SERVER = fileURLToPath(new URL('./bare-server.js', import.meta.url));

export interface BareRoute {
  type: string;
  body: Buffer;
  status?: number;
  headers?: Record<string, string>;
}

/** Spawn it with `routes` (written to `dir`/bare-spec.json); resolves when it listens. Cleanup kills it. */
export async function startBare(dir: string, routes: Record<string, BareRoute>): Promise<{ pid: number; port: number }> {
  const specPath = join(dir, 'bare-spec.json');
  const spec = {
    routes: Object.fromEntries(Object.entries(routes).map(([p, r]) => [p, { ...r, body: r.body.toString('base64') }])),
    maxLifeMs: 15 * 60_000,
  };
  writeFileSync(specPath, JSON.stringify(spec));
  const child = trackChild(spawn(process.execPath, [BARE_SERVER, specPath], { stdio: ['pipe', 'pipe', 'inherit'] }));
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    const t = setTimeout(() => reject(new Error('bare server did not start within 10 s')), 10_000);
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString('utf8');
      const m = /READY (\d+)/.exec(out);
      if (m) {
        clearTimeout(t);
        resolve(Number(m[1]));
      }
    });
    child.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`bare server exited (${code}) before READY`));
    });
  });
  return { pid: child.pid!, port };
}
