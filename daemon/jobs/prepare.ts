/**
 * One install run as data (pure, no I/O): the names of what a run creates, all derived from the
 * job's domain name (DOMAIN_PREFIX + a short id) so that a restarted daemon finds them again
 * (`release`), and the domain spec from the instance document, the appliance image and the
 * appliance settings.
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { applianceCmdline, diskTarget, SEABIOS, type DomainSpec, type VirtType } from '../../appliance/domain-xml.js';
import type { Config } from '../config/config.js';
import type { PublicDoc } from '../registry/model.js';
import { APPLIANCE_TAP_PREFIX, METADATA_IPV4, tapNameProblem } from '../net.js';

type ApplianceConfig = Config['appliance'];

/** What a run creates besides the domain, by name. */
export interface RunNames {
  /** The appliance's comm tap (15 characters: `mdi` + 12 hex digits of the domain's hash). */
  tap: string;
  /** The serial console log on the runtime dir (tmpfs). */
  consoleLog: string;
  /** The per-run qcow2 overlay (used only with a disk-based appliance, `baseDisk`). */
  overlay: string;
}

/** Every appliance domain's name starts with this (restart recovery lists domains by it, the sweep files). */
export const DOMAIN_PREFIX = 'metad-install-';

/** Every appliance tap's name starts with this (a sweep at start finds leftovers by it; guests' taps may not). */
export const TAP_PREFIX = APPLIANCE_TAP_PREFIX;

/**
 * The appliance tap's name from the domain name: short enough for the kernel (15), never one
 * of libvirt's reserved prefixes, and the same after a restart.
 */
export function applianceTap(domain: string): string {
  const tap = TAP_PREFIX + createHash('sha256').update(domain).digest('hex').slice(0, 12);
  const problem = tapNameProblem(tap);
  if (problem) throw new Error(`derived tap name ${problem}`); // cannot happen: prefix and charset are fixed
  return tap;
}

export function runNames(domain: string, a: Pick<ApplianceConfig, 'runDir' | 'overlayDir'>): RunNames {
  return {
    tap: applianceTap(domain),
    consoleLog: join(a.runDir, `${domain}.console.log`),
    overlay: join(a.overlayDir, `${domain}.qcow2`),
  };
}

/** Where the image is: `imageDir`, or the `current` build in the cache dir. */
export function imageDirOf(a: Pick<ApplianceConfig, 'imageDir' | 'cacheDir'>): string {
  return a.imageDir ?? join(a.cacheDir, 'current');
}

/** The guest door URL the agent uses (its default, port 80, needs no kernel argument). */
export function metadataUrl(listen: readonly { host: string; port?: number }[]): string | undefined {
  const port = listen.find((l) => l.host === METADATA_IPV4)?.port ?? 80;
  return port === 80 ? undefined : `http://${METADATA_IPV4}:${String(port)}`;
}

export interface SpecInputs {
  domain: string;
  doc: PublicDoc;
  /** The instance's disks as checked and resolved (daemon/jobs/disks.ts), in index order. */
  disks?: readonly { real: string }[];
  image: { kernel: string; initrd: string };
  type: VirtType;
  names: RunNames;
  appliance: ApplianceConfig;
  url?: string | undefined;
  /**
   * The Debian variant: its root disk is the run's overlay (attached after the instance's disks)
   * and these host directories (resolved) are shared read-only at their targets inside it.
   */
  debian?: { shares: readonly { source: string; target: string }[] };
}

/**
 * The domain of one run: the instance's memory (at least the configured appliance memory,
 * which is also the default) and vCPUs (default from config, at most 64), its disks in index
 * order, the comm NIC on the appliance tap with the instance's MAC, the agent's command line
 * with the instance's comm IPv4 and the claim deadline (how long the agent keeps retrying
 * metad), and the overlay when the appliance is disk-based (the Debian variant's root: the agent
 * is told which disk it is and where each share goes). A `self_install` instance's run boots
 * its own first disk with SeaBIOS instead (no kernel, command line or overlay).
 */
export function runSpec(i: SpecInputs): DomainSpec {
  const a = i.appliance;
  const hw = i.doc.hardware ?? {};
  const common = {
    name: i.domain,
    type: i.type,
    memoryMiB: Math.max(hw.memoryMiB ?? a.memoryMiB, a.memoryMiB),
    vcpus: Math.min(hw.vcpus ?? a.vcpus, 64),
    disks: (hw.disks ?? []).map((d, n) => ({ path: i.disks?.[n]?.real ?? d.path, format: d.format ?? 'raw' })),
    nic: { tap: i.names.tap, mac: i.doc.comm.mac.toLowerCase() },
    consoleLog: i.names.consoleLog,
    emulator: a.emulator,
  };
  // self_install: the instance's own first disk, booted by the BIOS; no appliance, no overlay.
  if (i.doc.install?.mode === 'self_install') return { ...common, firmware: SEABIOS };
  const shares = (i.debian?.shares ?? []).map((x, n) => ({ ...x, tag: `share${String(n)}` }));
  return {
    ...common,
    kernel: i.image.kernel,
    initrd: i.image.initrd,
    cmdline: applianceCmdline({
      ipv4: i.doc.comm.ipv4,
      timeoutSec: a.agentTimeoutSec,
      claimSec: a.claimDeadlineMs / 1000,
      personalize: i.doc.install?.packageUrl !== undefined,
      ...(i.url ? { url: i.url } : {}),
      ...(i.debian ? { root: diskTarget(common.disks.length), shares } : {}),
    }),
    firmware: a.firmware,
    ...(a.baseDisk !== undefined || i.debian ? { overlay: i.names.overlay } : {}),
    ...(shares.length > 0 ? { shares: shares.map(({ source, tag }) => ({ source, tag })) } : {}),
  };
}
