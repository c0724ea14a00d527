/**
 * One install environment for tests and benchmarks that drive install jobs through the real
 * daemon: a test network namespace, a private libvirtd in it (test/support/libvirtd.ts), the
 * real `metad serve` in it with network.mode routed and the test appliance image
 * (test/support/ns-metad.ts, test/support/appliance.ts), metadctl in-process on its admin socket,
 * instances registered with an OS definition whose `create` script the caller gives. `restart`
 * starts metad again on the same state (after `metad.kill()` for a kill -9), `console` reads a
 * running appliance's serial console (the agent's lines), `leftovers` lists
 * whatever a run could leave behind, `close` removes everything.
 */
import { execFile } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { LibvirtHypervisor, loadBinding, MISSING_BINDING } from '../../appliance/libvirt.js';
import type { JobRecord } from '../../daemon/jobs/record.js';
import { testAppliance, applianceMissing } from './appliance.js';
import { missingCommand } from './env.js';
import { libvirtdMissing, netnsPids, startLibvirtd, type TestLibvirtd } from './libvirtd.js';
import { ctlAt, type CtlResult } from './metadctl-run.js';
import { canUseNetns, createNetns, TRIP_TABLE, type Netns } from './netns.js';
import { startNsMetad, type NsMetad } from './ns-metad.js';

const run = promisify(execFile);
const METADATA_IP = '169.254.169.254';
const DOMAIN_PREFIX = 'metad-install-';

/** A create script that reports success after `sleepSec` seconds (0: at once). */
export const createAfter = (sleepSec: number): string => `#!/bin/sh\nsleep ${String(sleepSec)}\necho "test create: done"\n`;
/** A create script that never finishes. */
export const HANG = '#!/bin/sh\necho "test create: hanging"\nexec sleep 100000\n';

export interface InstallInstance {
  name: string;
  /** 169.254.x.y, unique in the environment. */
  ip: string;
  mac: string;
  create: string;
  /** More of the instance document (e.g. `ec2: { imdsV2: 'required' }`). */
  doc?: Record<string, unknown>;
}

export interface InstallEnv {
  ns: Netns;
  libvirtd: TestLibvirtd;
  metad: NsMetad;
  /** A client of its own on the private libvirtd (to look at the domains). */
  hv: LibvirtHypervisor;
  dir: string;
  ctl(...args: string[]): Promise<CtlResult>;
  register(i: InstallInstance): Promise<void>;
  status(name: string): Promise<JobRecord>;
  /** `metadctl install watch NAME` to its end, then the record. */
  watchEnd(name: string): Promise<JobRecord>;
  /** Starts metad again on the same config and state (the old one must have exited). */
  restart(): Promise<void>;
  /** The serial console log of a job's domain while it runs ('' when there is none). */
  console(domain: string): Promise<string>;
  /** What runs could leave behind: domains, appliance taps, nft elements naming them, overlays, console logs, qemu processes. */
  leftovers(): Promise<string[]>;
  close(): Promise<void>;
}

/** Why an install environment cannot run here (undefined when it can). */
export async function installEnvMissing(): Promise<string | undefined> {
  const binding = await loadBinding().then(
    () => undefined,
    () => MISSING_BINDING,
  );
  return canUseNetns().why ?? applianceMissing() ?? libvirtdMissing() ?? missingCommand([['dnsmasq', 'dnsmasq-base']]) ?? binding;
}

/** Live qemu processes in the namespace (a zombie waiting for its reaper is not live). */
async function qemus(ns: string): Promise<number[]> {
  const out: number[] = [];
  for (const pid of await netnsPids(ns)) {
    const stat = await run('cat', [`/proc/${String(pid)}/stat`]).then(
      (r) => r.stdout,
      () => '',
    );
    const m = /^\d+ \((.*)\) (\S)/.exec(stat);
    if (m?.[1]?.startsWith('qemu') && m[2] !== 'Z') out.push(pid);
  }
  return out;
}

export async function startInstallEnv(
  appliance: Record<string, unknown>,
  more: { searchPath?: readonly string[] } = {},
): Promise<InstallEnv> {
  const img = await testAppliance();
  const dir = await mkdtemp(join(tmpdir(), 'metad-install-env-'));
  await chmod(dir, 0o755); // dnsmasq reads its hosts file under it after dropping privileges (a self_install guest asks DHCP)
  const ns = await createNetns('metadtc');
  const undo: (() => Promise<unknown>)[] = [() => rm(dir, { recursive: true, force: true }), () => ns.destroy()];
  const close = async (): Promise<void> => {
    for (const f of undo.splice(0)) await f().catch(() => undefined);
  };
  try {
    // Replies to the appliances leave through their taps (mdi…); anything else trips the wire.
    await ns.run('nft', ['insert', 'rule', 'inet', TRIP_TABLE, 'out', 'oifname', 'mdi*', 'accept']);
    const libvirtd = await startLibvirtd(ns);
    undo.unshift(() => libvirtd.stop());
    const hv = new LibvirtHypervisor(libvirtd.uri);
    undo.unshift(async () => {
      for (const n of await hv.list(DOMAIN_PREFIX)) await hv.destroy(n);
      await hv.close();
    });
    const jobsDir = join(dir, 'jobs');
    const overlays = join(dir, 'overlays');
    const base = join(dir, 'base.qcow2');
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', base, '16M']);
    const config = {
      guest: { listen: [{ host: METADATA_IP, port: 80 }], commRange: ['169.254.0.0/16'] },
      network: { mode: 'routed', runDir: join(dir, 'comm') },
      os: { searchPath: [join(dir, 'os'), ...(more.searchPath ?? [])] },
      // Instances' disks: files under the environment's directory; OS images under its images/.
      storage: { fileRoots: [dir], imageRoots: [join(dir, 'images')] },
      appliance: {
        imageDir: img.dir,
        virtType: 'qemu',
        libvirtUri: libvirtd.uri,
        runDir: jobsDir,
        overlayDir: overlays,
        baseDisk: base,
        pollMs: 100,
        ...appliance,
      },
    };
    const spawn = (c: string, a: readonly string[], o: Parameters<Netns['exec']>[2]): ReturnType<Netns['exec']> => ns.exec(c, a, o);
    const env: InstallEnv = {
      ns,
      libvirtd,
      metad: await startNsMetad(spawn, dir, config),
      hv,
      dir,
      ctl: (...args) => ctlAt(env.metad.socket, args),
      async register(i) {
        const osdir = join(dir, 'os', `testos-${i.name}`);
        await mkdir(join(osdir, 'untrusted'), { recursive: true });
        await writeFile(join(osdir, 'untrusted', 'create'), i.create);
        const put = await env.metad.admin('PUT', `/v1/instances/${i.name}`, {
          name: i.name,
          uuid: `6f1c2a9e-4b7d-4c2e-9a51-3d8e2f0b7c${i.mac.slice(-2)}`,
          hostname: `${i.name}.example.org`,
          comm: { mac: i.mac, ipv4: i.ip },
          os: { name: `testos-${i.name}`, variant: 'default' },
          params: { public: { image: 'debian-12' } },
          hardware: { memoryMiB: 256, vcpus: 1, disks: [] },
          ...i.doc,
        });
        if (put.status !== 201) throw new Error(`register ${i.name}: ${put.text}`);
        const sec = await env.metad.admin('PUT', `/v1/instances/${i.name}/params/secret`, { values: { api_token: 'tok-chaos' } });
        if (sec.status !== 200) throw new Error(`secret ${i.name}: ${sec.text}`);
      },
      async status(name) {
        const r = await env.ctl('--json', 'install', 'status', name);
        return JSON.parse(r.out) as JobRecord;
      },
      async watchEnd(name) {
        await env.ctl('install', 'watch', name);
        return env.status(name);
      },
      async restart() {
        env.metad = await startNsMetad(spawn, dir, config);
      },
      console: (domain) => readFile(join(jobsDir, `${domain}.console.log`), 'utf8').catch(() => ''),
      async leftovers() {
        const left = (await hv.list(DOMAIN_PREFIX)).map((d) => `domain ${d}`);
        const links = (await ns.run('ip', ['-o', 'link', 'show'])).stdout;
        for (const m of links.matchAll(/mdi[0-9a-f]{12}/g)) left.push(`tap ${m[0]}`);
        const table = (await ns.run('nft', ['list', 'table', 'inet', 'metad'])).stdout;
        for (const m of table.matchAll(/mdi[0-9a-f]{12}/g)) left.push(`nft element ${m[0]}`);
        for (const d of [overlays, jobsDir]) {
          for (const f of await readdir(d).catch(() => [])) left.push(`file ${join(d, f)}`);
        }
        for (const pid of await qemus(ns.name)) left.push(`qemu ${String(pid)}`);
        return left;
      },
      close,
    };
    undo.unshift(() => env.metad.stop());
    return env;
  } catch (e) {
    await close();
    throw e;
  }
}
