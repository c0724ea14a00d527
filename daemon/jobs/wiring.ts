/**
 * The production edges of the install jobs: the libvirt hypervisor (loaded lazily; without the
 * binding an install request fails with the Debian packages named) and the per-run preparation:
 * the appliance image from config, KVM or TCG, the appliance's own comm tap (created here and
 * given the instance's comm identity by the comm network's reconcile), the instance's disks,
 * the optional overlay, the domain XML. Everything a run creates is named after its domain
 * (daemon/jobs/prepare.ts), so `release` finds it again after a restart.
 */
import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { domainXml } from '../../appliance/domain-xml.js';
import { BoundedHypervisor, type Hypervisor } from '../../appliance/hypervisor.js';
import { readAppliance, type ApplianceImage } from '../../appliance/image.js';
import { LibvirtHypervisor, loadBinding } from '../../appliance/libvirt.js';
import type { Clock } from '../clock.js';
import type { CommController } from '../comm/controller.js';
import { boundedExec, mustExec } from '../comm/exec.js';
import { EV } from '../log/events.js';
import type { Config } from '../config/config.js';
import { DaemonError } from '../errors.js';
import type { InstanceStore } from '../registry/store.js';
import { diskResolver, DiskRefused, type ResolvedDisk } from './disks.js';
import { LeftBehind, type LeftoverItem, type LeftoverSink } from './leftovers.js';
import { DOMAIN_PREFIX, type JobDeps, type Prepared } from './manager.js';
import { imageDirOf, metadataUrl, runNames, runSpec, TAP_PREFIX } from './prepare.js';
import { kvmWorks, virtTypeChooser } from './virt-type.js';

/** One connection for the daemon's life, opened on first use. */
export function defaultHypervisor(uri: string): () => Promise<Hypervisor> {
  let hv: LibvirtHypervisor | undefined;
  return async () => {
    await loadBinding(); // HypervisorUnavailable naming the packages
    hv ??= new LibvirtHypervisor(uri);
    return hv;
  };
}

/**
 * Every call of the hypervisor `get` returns bounded on `clock` (CALL_BOUNDS): recovery, the KVM
 * trial, the leftover retries and the runs all use this one. Calls given up on are logged.
 */
export function boundedHypervisor(get: () => Promise<Hypervisor>, clock: Clock, log: Logger): () => Promise<Hypervisor> {
  let wrapped: { inner: Hypervisor; hv: BoundedHypervisor } | undefined;
  return async () => {
    const inner = await get();
    if (wrapped?.inner !== inner) {
      const hv = new BoundedHypervisor(inner, clock, undefined, (op, name, ms) => log.warn({ op, name, ms }, EV.hypervisorCallTimedOut));
      wrapped = { inner, hv };
    }
    return wrapped.hv;
  };
}

/** How long `qemu-img create` of an overlay may take before it is killed (ms). */
const QEMU_IMG_TIMEOUT_MS = 60_000;

export interface WiringDeps {
  config: Readonly<Config>;
  store: InstanceStore;
  /** The comm network (undefined when network.mode is off: then no install can run). */
  comm: CommController | undefined;
  hypervisor: () => Promise<Hypervisor>;
  clock: Clock;
  log: Logger;
  /** Makes a qcow2 overlay over `base` at `path` (default: qemu-img). */
  makeOverlay?: (base: string, path: string) => Promise<void>;
  /** Where what the KVM trial could not remove is reported. */
  leftovers?: LeftoverSink;
}

function unavailable(message: string): DaemonError {
  return new DaemonError('Unavailable', message);
}

/** What a sweep removed (names) and what it could not (each a leftover, with its error). */
export interface Swept {
  removed: string[];
  failed: { item: LeftoverItem; err: unknown }[];
}

/** The production `admit`, `prepare`, `release` and `adopt` of the job manager. */
export function productionAppliance(d: WiringDeps): Required<Pick<JobDeps, 'admit' | 'prepare' | 'release' | 'adopt'>> & {
  sweep: (inUse: () => readonly string[]) => Promise<Swept>;
  removeLeftover: (item: LeftoverItem) => Promise<void>;
} {
  const a = d.config.appliance;
  const exec = boundedExec(d.clock, QEMU_IMG_TIMEOUT_MS);
  const makeOverlay =
    d.makeOverlay ??
    (async (base: string, path: string): Promise<void> => {
      await mustExec(exec, a.qemuImgPath, ['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', path]);
    });

  const comm = (): CommController => {
    if (!a.enabled) throw unavailable('installs are off on this host: /appliance/enabled is false');
    if (d.config.network.mode === 'off' || !d.comm) {
      throw unavailable('install appliances need the comm network: set /network/mode to routed or bridged');
    }
    return d.comm;
  };

  const image = async (): Promise<ApplianceImage> => {
    try {
      return await readAppliance(imageDirOf(a));
    } catch {
      throw unavailable(
        'no appliance image: run `metad appliance build` (or point the config key /appliance/imageDir at a build; default: the current build in /appliance/cacheDir)',
      );
    }
  };

  const runDir = async (): Promise<string> => {
    await mkdir(a.runDir, { recursive: true, mode: 0o700 });
    return a.runDir;
  };

  const virtType = virtTypeChooser(
    a.virtType,
    async () =>
      kvmWorks({
        hv: await d.hypervisor(),
        clock: d.clock,
        image: await image(),
        runDir: await runDir(),
        firmware: a.firmware,
        emulator: a.emulator,
        ...(d.leftovers ? { leftovers: d.leftovers } : {}),
      }),
    d.log,
  );

  const vmRuns = async (c: CommController, tap: string | undefined): Promise<boolean> => tap !== undefined && c.net.linkExists(tap);

  /**
   * The instance's disks, each checked against the storage roots and resolved (daemon/jobs/disks.ts),
   * and none held by another instance whose VM runs (its comm tap exists) or whose install job is
   * queued or live (`busy`). 409 naming the disk's field; the path itself is never echoed.
   */
  const checkDisks = async (c: CommController, instance: string, busy: readonly string[]): Promise<ResolvedDisk[]> => {
    const doc = d.store.mustGet(instance).doc;
    if ((doc.hardware?.disks ?? []).length === 0) return [];
    const resolve = await diskResolver(d.config.storage);
    const out: ResolvedDisk[] = [];
    for (const [i, disk] of (doc.hardware?.disks ?? []).entries()) {
      const field = `/hardware/disks/${String(i)}/path`;
      try {
        out.push(await resolve(disk.path));
      } catch (e) {
        if (!(e instanceof DiskRefused)) throw e;
        throw new DaemonError('Conflict', `an instance disk cannot be used: it ${e.message}`, [{ path: field, message: e.message }]);
      }
    }
    const mine = new Map(out.map((r, i) => [r.key, i]));
    // The disks first, the VM only for an instance that shares one: an install on a host of
    // thousands of instances asks `ip` about the few that matter, not about every tap.
    for (const other of d.store.list()) {
      if (other.doc.name === instance) continue;
      for (const disk of other.doc.hardware?.disks ?? []) {
        const theirs = await resolve(disk.path).catch(() => undefined);
        const i = theirs === undefined ? undefined : mine.get(theirs.key);
        if (i === undefined) continue;
        if (busy.includes(other.doc.name) || (await vmRuns(c, other.doc.comm.tap))) {
          throw new DaemonError('Conflict', "an instance disk is in use by another instance's running VM or install job", [
            { path: `/hardware/disks/${String(i)}/path`, message: 'in use by another instance' },
          ]);
        }
      }
    }
    return out;
  };

  /** Can `instance` be installed now? Checked at the request (409/503) and again when it leaves the queue. */
  const admit = async (instance: string, busy: readonly string[] = []): Promise<ResolvedDisk[]> => {
    const c = comm();
    const doc = d.store.mustGet(instance).doc;
    if (await vmRuns(c, doc.comm.tap)) {
      throw new DaemonError('Conflict', "the instance's own comm tap exists (its VM runs): stop the VM before installing onto its disks", [
        { path: '/comm/tap', message: 'the tap exists' },
      ]);
    }
    const disks = await checkDisks(c, instance, busy);
    await image();
    return disks;
  };

  /** Removes what a run made; rejects with LeftBehind naming each thing that is still there. */
  const release = async (instance: string, domain: string): Promise<void> => {
    const names = runNames(domain, a);
    const left: LeftoverItem[] = [];
    const leave = (kind: LeftoverItem['kind'], name: string) => (): void => {
      left.push({ kind, name, instance, domain });
    };
    if (d.comm) {
      // The tap goes first: the reconcile that drops its rules then finds nothing to hold closed.
      await d.comm.net.deleteTap(names.tap).catch(leave('tap', names.tap));
      await d.comm.releaseJobTap(instance, names.tap).catch(leave('tap identity', names.tap));
    }
    await rm(names.consoleLog, { force: true }).catch(leave('console log', names.consoleLog));
    await rm(names.overlay, { force: true }).catch(leave('overlay', names.overlay));
    if (left.length > 0) throw new LeftBehind(`cleanup left: ${left.map((l) => l.kind).join(', ')}`, left);
  };

  /** One retry of a leftover that `release` or the sweep reported (daemon/jobs/leftovers.ts). */
  const removeLeftover = async (item: LeftoverItem): Promise<void> => {
    switch (item.kind) {
      case 'tap':
        if (d.comm) await d.comm.net.deleteTap(item.name);
        return;
      case 'tap identity':
        if (d.comm && item.instance !== undefined) await d.comm.releaseJobTap(item.instance, item.name);
        return;
      case 'overlay':
      case 'console log':
        await rm(item.name, { force: true });
        return;
      case 'cleanup':
        if (item.instance !== undefined && item.domain !== undefined) await release(item.instance, item.domain);
        return;
      case 'domain':
      case 'recovery':
        throw new Error(`not a leftover of the run's preparation: ${item.kind}`);
    }
  };

  const prepare = async (instance: string, domain: string, busy: readonly string[] = []): Promise<Prepared> => {
    // Checked again now, on what the paths resolve to now: the domain gets the resolved paths.
    const disks = await admit(instance, busy);
    const c = comm();
    const img = await image();
    const type = await virtType();
    const names = runNames(domain, a);
    const doc = d.store.mustGet(instance).doc;
    const xml = domainXml(runSpec({ domain, doc, disks, image: img, type, names, appliance: a, url: metadataUrl(d.config.guest.listen) }));
    try {
      await runDir();
      if (a.baseDisk !== undefined) {
        await mkdir(a.overlayDir, { recursive: true, mode: 0o700 });
        await makeOverlay(a.baseDisk, names.overlay);
      }
      await c.net.createTap(names.tap);
      await c.useJobTap(instance, names.tap);
    } catch (e) {
      // Undo what was made; what cannot be undone goes with the error (a leftover, retried).
      await release(instance, domain).catch((err: unknown) => {
        throw new LeftBehind(e instanceof Error ? e.message : String(e), err instanceof LeftBehind ? err.items : []);
      });
      throw e;
    }
    return { xml, cleanup: () => release(instance, domain) };
  };

  /** After a restart: the running appliance's tap gets its instance's identity back. */
  const adopt = async (instance: string, domain: string): Promise<Prepared> => {
    const tap = runNames(domain, a).tap;
    if (d.comm && d.store.get(instance) && (await d.comm.net.linkExists(tap))) await d.comm.useJobTap(instance, tap);
    return { xml: '', cleanup: () => release(instance, domain) };
  };

  /**
   * At start, after recovery: what earlier runs left and no job in use owns: appliance taps,
   * console logs, overlays (a run whose cleanup failed, or whose record a later job replaced).
   * `inUse` is asked after each listing: a job registers its domain before it creates anything,
   * so a job started meanwhile is never swept.
   */
  const sweep = async (inUse: () => readonly string[]): Promise<Swept> => {
    const removed: string[] = [];
    const failed: Swept['failed'] = [];
    const attempt = async (item: LeftoverItem, remove: () => Promise<void>): Promise<void> => {
      try {
        await remove();
        removed.push(item.name);
      } catch (err) {
        failed.push({ item, err });
      }
    };
    if (d.comm) {
      const net = d.comm.net;
      const found = await net.linksWithPrefix(TAP_PREFIX);
      const taps = new Set(inUse().map((dom) => runNames(dom, a).tap));
      for (const tap of found.filter((t) => !taps.has(t))) await attempt({ kind: 'tap', name: tap }, () => net.deleteTap(tap));
    }
    for (const [dir, suffix, kind] of [
      [a.runDir, '.console.log', 'console log'],
      [a.overlayDir, '.qcow2', 'overlay'],
    ] as const) {
      const found = (await readdir(dir).catch(() => [])).filter((f) => f.startsWith(DOMAIN_PREFIX) && f.endsWith(suffix));
      const files = new Set(inUse().map((dom) => `${dom}${suffix}`));
      for (const f of found.filter((x) => !files.has(x))) {
        const path = join(dir, f);
        await attempt({ kind, name: path }, () => rm(path, { force: true }));
      }
    }
    return { removed, failed };
  };

  return { admit, prepare, release, adopt, sweep, removeLeftover };
}
