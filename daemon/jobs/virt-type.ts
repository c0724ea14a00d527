/**
 * KVM or TCG. libvirt's capabilities list `<domain type='kvm'/>` whenever /dev/kvm exists, but a
 * /dev/kvm can exist and not work (a nested "PVM" hypervisor: QEMU aborts, or guests crawl), so
 * `auto` decides by a trial boot: the appliance kernel as a KVM domain without NIC or disk; KVM
 * works when the kernel's first console lines appear within the trial's time. Decided once
 * per daemon life (the first job pays for it), TCG whenever the trial fails in any way. Its
 * hypervisor calls are bounded (the caller passes a BoundedHypervisor), its wait on the clock's
 * monotonic reading.
 */
import { randomBytes } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { domainXml, type VirtType } from '../../appliance/domain-xml.js';
import type { Hypervisor } from '../../appliance/hypervisor.js';
import type { Clock } from '../clock.js';
import { EV } from '../log/events.js';
import type { LeftoverSink } from './leftovers.js';
import { DOMAIN_PREFIX } from './prepare.js';

export interface TrialDeps {
  hv: Hypervisor;
  clock: Clock;
  image: { kernel: string; initrd: string };
  runDir: string;
  firmware: string;
  emulator: string;
  /** How long the kernel may take to print its banner under KVM (it takes milliseconds). */
  timeoutMs?: number;
  pollMs?: number;
  /** What the trial could not remove (its domain, its console log): reported, not dropped. */
  leftovers?: LeftoverSink;
}

/** The kernel's banner: printed before anything that could fail for lack of a NIC or disk. */
const BANNER = /Linux version \d/;

/** One trial boot under KVM; true when the guest kernel ran. Leaves no domain or file. */
export async function kvmWorks(d: TrialDeps): Promise<boolean> {
  const name = `${DOMAIN_PREFIX}kvmtrial-${randomBytes(4).toString('hex')}`;
  const consoleLog = join(d.runDir, `${name}.console.log`);
  const xml = domainXml({
    name,
    type: 'kvm',
    memoryMiB: 128,
    vcpus: 1,
    kernel: d.image.kernel,
    initrd: d.image.initrd,
    cmdline: 'console=ttyS0 loglevel=7 panic=-1 metad.trial=1',
    firmware: d.firmware,
    disks: [],
    consoleLog,
    emulator: d.emulator,
  });
  const until = d.clock.mono() + (d.timeoutMs ?? 10_000);
  let created = false;
  try {
    await d.hv.createTransient(name, xml);
    created = true;
    while (d.clock.mono() < until) {
      const text = await readFile(consoleLog, 'latin1').catch(() => '');
      if (BANNER.test(text)) return true;
      if ((await d.hv.state(name)) === 'gone') return false; // QEMU gave up (e.g. failed to set an MSR)
      await d.clock.sleep(d.pollMs ?? 100);
    }
    return false;
  } catch {
    return false; // QEMU refused to start with KVM
  } finally {
    if (created) {
      await d.hv.destroy(name).catch((e: unknown) => d.leftovers?.add([{ kind: 'domain', name, domain: name }], 'kvm trial', e));
    }
    await rm(consoleLog, { force: true }).catch((e: unknown) =>
      d.leftovers?.add([{ kind: 'console log', name: consoleLog, domain: name }], 'kvm trial', e),
    );
  }
}

/** The virtualization type for every run: fixed by config, or `auto` decided once and kept. */
export function virtTypeChooser(setting: 'auto' | 'kvm' | 'qemu', trial: () => Promise<boolean>, log: Logger): () => Promise<VirtType> {
  if (setting !== 'auto') return () => Promise.resolve(setting);
  let decided: Promise<VirtType> | undefined;
  return () => {
    decided ??= trial().then((ok) => {
      const type: VirtType = ok ? 'kvm' : 'qemu';
      log.info({ virtType: type }, EV.jobVirtType);
      return type;
    });
    return decided;
  };
}
