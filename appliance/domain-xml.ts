/**
 * libvirt domain XML for one install appliance run. Pure: the same spec gives the same bytes.
 *
 * The domain is transient (domainCreateXML) and every exit ends it: on_poweroff, on_reboot and
 * on_crash are all `destroy`, so a guest that powers off, reboots or crashes is simply gone.
 * It boots the appliance's uncompressed PVH kernel + initramfs directly with qboot as firmware
 * (no disk to boot from), or, without a kernel, the first disk with a BIOS (SeaBIOS: Ganeti's
 * helper VM booting the install image dumped on vda); the instance's disks are attached as virtio disks vda, vdb, … in index
 * order, then the optional per-run qcow2 overlay of a disk-based appliance. The comm NIC is an
 * `ethernet` interface on a tap that already exists (created by metad, `managed='no'`), the
 * serial console goes to a file, and there is no graphics, USB or balloon device.
 */

export type VirtType = 'qemu' | 'kvm';

export interface DomainDisk {
  /** A regular file or a block device (`/dev/...`). */
  path: string;
  format: 'raw' | 'qcow2';
}

export interface DomainSpec {
  name: string;
  uuid?: string;
  /** 'qemu' = TCG (any machine), 'kvm' = hardware acceleration. */
  type: VirtType;
  memoryMiB: number;
  vcpus: number;
  /** Kernel, initramfs and command line go together; without them the first disk is booted. */
  kernel?: string;
  initrd?: string;
  cmdline?: string;
  /** Firmware ROM passed as -bios; qboot boots a PVH kernel fastest, SEABIOS boots a disk. */
  firmware: string;
  /** The instance's disks, in index order (vda, vdb, …). */
  disks: readonly DomainDisk[];
  /** A disk-based appliance's per-run qcow2 overlay (attached after the instance's disks). */
  overlay?: string;
  /** Host directories shared read-only (virtio 9p), by mount tag (the Debian variant's `appliance.shares`). */
  shares?: readonly DomainShare[];
  /** The comm NIC on its tap; omitted only for the KVM trial boot (daemon/jobs/virt-type.ts). */
  nic?: DomainNic;
  /** NICs before the comm NIC (eth0, eth1, …; the comm NIC comes last, as in Ganeti's helper VM). */
  otherNics?: readonly DomainNic[];
  /** File that receives the serial console. */
  consoleLog: string;
  emulator: string;
}

interface DomainShare {
  /** The host directory (absolute). */
  source: string;
  /** The 9p mount tag the guest mounts it by (`share0`, …). */
  tag: string;
}

interface DomainNic {
  /** An existing tap (`managed='no'`). */
  tap: string;
  mac: string;
}

export const QBOOT_ROM = '/usr/share/qemu/qboot.rom';
export const SEABIOS = '/usr/share/seabios/bios-256k.bin';
export const QEMU_X86 = '/usr/bin/qemu-system-x86_64';
const MAX_DISKS = 26;

/** XML text/attribute escaping (all five predefined entities). */
function xmlEscape(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&${{ '&': 'amp', '<': 'lt', '>': 'gt', '"': 'quot', "'": 'apos' }[c] ?? ''};`);
}

/** Virtio disk target name for position i: 0 -> vda, 25 -> vdz. */
export function diskTarget(i: number): string {
  if (!Number.isInteger(i) || i < 0 || i >= MAX_DISKS) throw new RangeError(`disk position ${i} out of range`);
  return `vd${String.fromCharCode(97 + i)}`;
}

function check(spec: DomainSpec): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(spec.name)) throw new Error('domain name must match [A-Za-z0-9][A-Za-z0-9_.-]{0,63}');
  if (!Number.isInteger(spec.memoryMiB) || spec.memoryMiB < 64) throw new Error('memoryMiB must be an integer >= 64');
  if (!Number.isInteger(spec.vcpus) || spec.vcpus < 1 || spec.vcpus > 64) throw new Error('vcpus must be an integer in 1..64');
  for (const n of [...(spec.otherNics ?? []), ...(spec.nic ? [spec.nic] : [])]) {
    if (!/^[a-z0-9][a-z0-9_.-]{0,14}$/i.test(n.tap)) throw new Error('tap name must be 1..15 characters [A-Za-z0-9_.-]');
    if (!/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i.test(n.mac)) throw new Error('bad MAC address');
  }
  const direct = [spec.kernel, spec.initrd, spec.cmdline].filter((x) => x !== undefined).length;
  if (direct !== 0 && direct !== 3) throw new Error('kernel, initrd and cmdline go together');
  if (spec.disks.length + (spec.overlay ? 1 : 0) > MAX_DISKS) throw new Error(`at most ${MAX_DISKS} disks`);
  for (const p of [
    spec.kernel ?? '/',
    spec.initrd ?? '/',
    spec.firmware,
    spec.consoleLog,
    spec.emulator,
    ...spec.disks.map((d) => d.path),
    spec.overlay ?? '/',
    ...(spec.shares ?? []).map((x) => x.source),
  ]) {
    if (!p.startsWith('/')) throw new Error('paths must be absolute');
  }
  for (const x of spec.shares ?? []) if (!SHARE_TAG.test(x.tag)) throw new Error('share tag must be 1..31 characters [a-z0-9]');
}

const SHARE_TAG = /^[a-z0-9]{1,31}$/;
/** A share's place in the Debian root: absolute, no `.`/`..` component, no space (one kernel argument). */
const SHARE_TARGET = /^(\/[A-Za-z0-9_+-][A-Za-z0-9._+-]*)+$/;

function diskXml(d: DomainDisk, target: string): string {
  const block = d.path.startsWith('/dev/');
  const source = block ? `<source dev='${xmlEscape(d.path)}'/>` : `<source file='${xmlEscape(d.path)}'/>`;
  return [
    `    <disk type='${block ? 'block' : 'file'}' device='disk'>`,
    `      <driver name='qemu' type='${d.format}' discard='unmap'/>`,
    `      ${source}`,
    `      <target dev='${target}' bus='virtio'/>`,
    `    </disk>`,
  ].join('\n');
}

export function domainXml(spec: DomainSpec): string {
  check(spec);
  const e = xmlEscape;
  const disks = spec.disks.map((d, i) => diskXml(d, diskTarget(i)));
  if (spec.overlay) disks.push(diskXml({ path: spec.overlay, format: 'qcow2' }, diskTarget(spec.disks.length)));
  // TCG: 'maximum' exposes every feature QEMU can emulate; KVM: the host CPU as it is.
  const cpu = spec.type === 'kvm' ? `<cpu mode='host-passthrough'/>` : `<cpu mode='maximum'/>`;
  return [
    `<domain type='${spec.type}'>`,
    `  <name>${e(spec.name)}</name>`,
    ...(spec.uuid ? [`  <uuid>${e(spec.uuid)}</uuid>`] : []),
    `  <memory unit='MiB'>${spec.memoryMiB}</memory>`,
    `  <vcpu>${spec.vcpus}</vcpu>`,
    `  <os>`,
    `    <type arch='x86_64' machine='pc'>hvm</type>`,
    `    <loader type='rom'>${e(spec.firmware)}</loader>`,
    ...(spec.kernel !== undefined
      ? [
          `    <kernel>${e(spec.kernel)}</kernel>`,
          `    <initrd>${e(spec.initrd ?? '')}</initrd>`,
          `    <cmdline>${e(spec.cmdline ?? '')}</cmdline>`,
        ]
      : [`    <boot dev='hd'/>`]),
    `  </os>`,
    `  <features><acpi/></features>`,
    `  ${cpu}`,
    `  <clock offset='utc'/>`,
    `  <on_poweroff>destroy</on_poweroff>`,
    `  <on_reboot>destroy</on_reboot>`,
    `  <on_crash>destroy</on_crash>`,
    `  <devices>`,
    `    <emulator>${e(spec.emulator)}</emulator>`,
    ...disks,
    // Read-only for the guest whatever the host's modes say; `squash`: the guest cannot chown or
    // make device nodes there (it may not write at all).
    ...(spec.shares ?? []).flatMap((x) => [
      `    <filesystem type='mount' accessmode='squash'>`,
      `      <source dir='${e(x.source)}'/>`,
      `      <target dir='${x.tag}'/>`,
      `      <readonly/>`,
      `    </filesystem>`,
    ]),
    ...[...(spec.otherNics ?? []), ...(spec.nic ? [spec.nic] : [])].flatMap((n) => [
      `    <interface type='ethernet'>`,
      `      <mac address='${n.mac.toLowerCase()}'/>`,
      `      <target dev='${e(n.tap)}' managed='no'/>`,
      `      <model type='virtio'/>`,
      `    </interface>`,
    ]),
    `    <serial type='file'>`,
    `      <source path='${e(spec.consoleLog)}'/>`,
    `      <target port='0'/>`,
    `    </serial>`,
    `    <controller type='usb' model='none'/>`,
    `    <memballoon model='none'/>`,
    `  </devices>`,
    `</domain>`,
    '',
  ].join('\n');
}

/**
 * Kernel command line for the agent (appliance/agent/agent.sh reads the metad.* words).
 * `claimSec`: the job's claim deadline, relative (the appliance has no trustworthy wall clock):
 * the agent keeps retrying metad until that many seconds after its boot, which is a little
 * after the job's own claim deadline, so the agent never gives up while the job still waits.
 */
export function applianceCmdline(opts: {
  ipv4: string;
  url?: string;
  timeoutSec?: number;
  claimSec?: number;
  personalize?: boolean;
  /** The Debian variant: its root disk (`vdX`) and where each share's tag is mounted inside it. */
  root?: string;
  shares?: readonly { tag: string; target: string }[];
}): string {
  if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(opts.ipv4)) throw new Error('bad IPv4 address');
  // cryptomgr.notests: no self-test of every crypto algorithm at boot (about 0.3 s under TCG;
  // the appliance's kernel is Debian's, whose algorithms are tested where it is built).
  const words = ['console=ttyS0', 'panic=-1', 'loglevel=4', 'cryptomgr.notests', `metad.ip=${opts.ipv4}`];
  if (opts.url !== undefined) {
    if (!/^http:\/\/[A-Za-z0-9.:[\]-]+$/.test(opts.url)) throw new Error('bad metadata URL');
    words.push(`metad.url=${opts.url}`);
  }
  if (opts.timeoutSec !== undefined) words.push(`metad.timeout=${Math.max(1, Math.floor(opts.timeoutSec))}`);
  if (opts.claimSec !== undefined) words.push(`metad.claim=${Math.max(1, Math.ceil(opts.claimSec))}`);
  if (opts.personalize === true) words.push('metad.package=1');
  if (opts.root !== undefined) {
    if (!/^vd[a-z]$/.test(opts.root)) throw new Error('bad root disk');
    words.push(`metad.root=${opts.root}`);
  }
  for (const x of opts.shares ?? []) {
    if (!SHARE_TAG.test(x.tag) || !SHARE_TARGET.test(x.target)) throw new Error('bad share');
    words.push(`metad.share=${x.tag}:${x.target}`);
  }
  return words.join(' ');
}
