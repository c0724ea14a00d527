/**
 * The embedded quick-start setup (`metad serve --demo`, `npm start`): loopback guest door,
 * admin socket and state in a fresh temp dir, and one sample instance whose comm address is
 * 127.0.0.1 so that curl from this machine is "the guest".
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { EV } from '../log/events.js';
import type { Services } from '../services.js';
import { validateInstance } from '../registry/validate.js';

export function demoConfig(port: number): Record<string, unknown> {
  const dir = mkdtempSync(join(tmpdir(), 'metad-demo-'));
  // A demo leaves nothing behind: its state dir goes when the process exits.
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  return {
    stateDir: join(dir, 'state'),
    admin: { socket: join(dir, 'admin.sock') },
    guest: { listen: [{ host: '127.0.0.1', port }], commRange: ['127.0.0.0/8'] },
  };
}

const DEMO_INSTANCE = {
  name: 'demo1',
  uuid: '6f0c2b8e-4b7e-4c36-9a55-0d5b8e7f3a10',
  hostname: 'demo1',
  comm: { mac: '52:54:00:12:34:56', ipv4: '127.0.0.1', tap: 'mdt0' },
  userData: Buffer.from('#cloud-config\nhostname: demo1\n').toString('base64'),
  publicKeys: [{ name: 'demo', key: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDemoDemoDemoDemoDemoDemoDemoDemoDemoDemoDem demo@metad' }],
  ec2: { instanceId: 'i-0123456789abcdef0', instanceType: 't3.micro', availabilityZone: 'demo-1a', region: 'demo-1' },
  openstack: { availabilityZone: 'nova', projectId: 'demo', meta: { role: 'demo' } },
  os: { name: 'debian', variant: 'bookworm' },
  params: { public: { locale: 'en_US.UTF-8' }, private: { rootPasswordHash: '$6$demo$notarealhash' } },
  hardware: { memoryMiB: 512, vcpus: 1 },
};

/** Register the sample instance and log it as the admin door would. */
export async function registerDemo(s: Pick<Services, 'store'>, log: Logger): Promise<void> {
  const { created, instance } = await s.store.put(validateInstance(structuredClone(DEMO_INSTANCE)), true);
  log.info({ instance: instance.doc.name, created, generation: instance.generation }, EV.instanceRegistered);
}

/** A word as the shell reads it: as is when plain, else in single quotes. */
function shellWord(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replaceAll("'", "'\\''")}'`;
}

/**
 * The metadctl command line to print: this node and this checkout's (or installation's)
 * metadctl, by absolute path. `npx metadctl` would, outside the checkout, fetch whatever the
 * public registry holds under that name.
 */
function metadctlCommand(nodePath = process.execPath, script = fileURLToPath(new URL('../../cli/metadctl.js', import.meta.url))): string {
  return `${shellWord(nodePath)} ${shellWord(script)}`;
}

export function demoBanner(socket: string, port: number, metadctl = metadctlCommand()): string {
  return [
    '',
    'metad demo is running (Ctrl-C stops it; state lives in a temp dir).',
    `  guest door:  http://127.0.0.1:${port}/   (you are the guest "demo1" from 127.0.0.1)`,
    `    curl http://127.0.0.1:${port}/latest/meta-data/`,
    `    curl http://127.0.0.1:${port}/openstack/latest/meta_data.json`,
    `    curl http://127.0.0.1:${port}/ganeti/latest/os/parameters.json`,
    `  admin door:  ${socket}`,
    `    ${metadctl} --socket ${shellWord(socket)} list`,
    `    curl --unix-socket ${shellWord(socket)} http://metad/v1/instances/demo1`,
    '',
  ].join('\n');
}
