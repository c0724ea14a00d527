/**
 * The production edges of the install jobs: the libvirt hypervisor (loaded lazily; without the
 * binding an install request fails with the Debian packages named) and the per-run preparation:
 * the appliance image from config, KVM or TCG, the appliance's own comm tap (created here and
 * given the instance's comm identity by the comm network's reconcile), the instance's disks,
 * the optional overlay, the domain XML. Everything a run creates is named after its domain
 * (daemon/jobs/prepare.ts), so `release` finds it again after a restart.
 */
import { constants } from 'node:fs';
import { access, mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { domainXml, type VirtType } from '../../appliance/domain-xml.js';
import { BoundedHypervisor, type Hypervisor } from '../../appliance/hypervisor.js';
import { readAppliance, type ApplianceImage } from '../../appliance/image.js';
import { LibvirtHypervisor, loadBinding } from '../../appliance/libvirt.js';
import type { Clock } from '../clock.js';
import type { CommController } from '../comm/controller.js';
import { boundedExec, mustExec } from '../comm/exec.js';
import { EV } from '../log/events.js';
import { VERSION } from '../version.js';
import type { Config } from '../config/config.js';
import { DaemonError } from '../errors.js';
import type { InstanceStore } from '../registry/store.js';
import { diskResolver, DiskRefused, type ResolvedDisk } from './disks.js';
import { checkOsImage, writeOsImage } from './os-image.js';
import { LeftBehind, type LeftoverItem, type LeftoverSink } from './leftovers.js';
import type { JobDeps, PreparedRun } from './manager.js';
import { DOMAIN_PREFIX, imageDirOf, metadataUrl, runNames, runSpec, TAP_PREFIX, type SpecInputs } from './prepare.js';
import { kvmWorks, virtTypeChooser } from './virt-type.js';
import { debianRootOf, resolveShares, variantOf } from './variant.js';

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

/**
 * The production runs of the job manager: `admit`, `prepare`, `release` and `adopt` (handed to
 * it by `jobHooks`), and for the daemon the start-up `sweep` and the leftover retries
 * (`removeLeftover`) of the same runs.
 */
export class ProductionAppliance {
  private readonly a: Config['appliance'];
  /** Makes a qcow2 overlay over `base` at `path`: WiringDeps.makeOverlay, else qemu-img (bounded). */
  private readonly makeOverlay: (base: string, path: string) => Promise<void>;
  /** KVM or TCG, decided once (daemon/jobs/virt-type.ts). */
  private readonly virtType: () => Promise<VirtType>;

  constructor(private readonly d: WiringDeps) {
    const a = (this.a = d.config.appliance);
    const exec = boundedExec(d.clock, QEMU_IMG_TIMEOUT_MS);
    this.makeOverlay =
      d.makeOverlay ??
      (async (base: string, path: string): Promise<void> => {
        await mustExec(exec, a.qemuImgPath, ['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', path]);
      });
    this.virtType = virtTypeChooser(
      a.virtType,
      async () =>
        kvmWorks({
          hv: await d.hypervisor(),
          clock: d.clock,
          image: await this.image(),
          runDir: await this.runDir(),
          firmware: a.firmware,
          emulator: a.emulator,
          ...(d.leftovers ? { leftovers: d.leftovers } : {}),
        }),
      d.log,
    );
  }

  /** What the job manager takes (JobDeps), bound to this wiring. */
  jobHooks(): Required<Pick<JobDeps, 'admit' | 'prepare' | 'release' | 'adopt'>> {
    return {
      admit: (instance, busy) => this.admit(instance, busy),
      prepare: (instance, domain, busy, deadlineAt) => this.prepare(instance, domain, busy, deadlineAt),
      release: (instance, domain) => this.release(instance, domain),
      adopt: (instance, domain) => this.adopt(instance, domain),
    };
  }

  /** Where OS images from URLs are fetched to (metad's own, 0700; each file lives for one run). */
  private imageDownloads(): string {
    return join(this.d.config.stateDir, 'images');
  }

  private comm(): CommController {
    if (!this.a.enabled) throw unavailable('installs are off on this host: /appliance/enabled is false');
    if (this.d.config.network.mode === 'off' || !this.d.comm) {
      throw unavailable('install appliances need the comm network: set /network/mode to routed or bridged');
    }
    return this.d.comm;
  }

  private async image(): Promise<ApplianceImage> {
    try {
      return await readAppliance(imageDirOf(this.a));
    } catch {
      throw unavailable(
        'no appliance image: run `metad appliance build` (or point the config key /appliance/imageDir at a build; default: the current build in /appliance/cacheDir)',
      );
    }
  }

  private async runDir(): Promise<string> {
    await mkdir(this.a.runDir, { recursive: true, mode: 0o700 });
    return this.a.runDir;
  }

  private async vmRuns(c: CommController, tap: string | undefined): Promise<boolean> {
    return tap !== undefined && c.net.linkExists(tap);
  }

  /**
   * The instance's disks, each checked against the storage roots and resolved (daemon/jobs/disks.ts),
   * and none held by another instance whose VM runs (its comm tap exists) or whose install job is
   * queued or live (`busy`). 409 naming the disk's field; the path itself is never echoed.
   */
  private async checkDisks(c: CommController, instance: string, busy: readonly string[]): Promise<ResolvedDisk[]> {
    const { store, config } = this.d;
    const doc = store.mustGet(instance).doc;
    if ((doc.hardware?.disks ?? []).length === 0) return [];
    const resolve = await diskResolver(config.storage);
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
    for (const other of store.list()) {
      if (other.doc.name === instance) continue;
      for (const disk of other.doc.hardware?.disks ?? []) {
        const theirs = await resolve(disk.path).catch(() => undefined);
        const i = theirs === undefined ? undefined : mine.get(theirs.key);
        if (i === undefined) continue;
        if (busy.includes(other.doc.name) || (await this.vmRuns(c, other.doc.comm.tap))) {
          throw new DaemonError('Conflict', "an instance disk is in use by another instance's running VM or install job", [
            { path: `/hardware/disks/${String(i)}/path`, message: 'in use by another instance' },
          ]);
        }
      }
    }
    return out;
  }

  /** Can `instance` be installed now? Checked at the request (409/503) and again when it leaves the queue. */
  async admit(instance: string, busy: readonly string[] = []): Promise<ResolvedDisk[]> {
    const c = this.comm();
    const doc = this.d.store.mustGet(instance).doc;
    if (await this.vmRuns(c, doc.comm.tap)) {
      throw new DaemonError('Conflict', "the instance's own comm tap exists (its VM runs): stop the VM before installing onto its disks", [
        { path: '/comm/tap', message: 'the tap exists' },
      ]);
    }
    const disks = await this.checkDisks(c, instance, busy);
    if (doc.install?.mode === 'self_install' && disks.length === 0)
      throw new DaemonError('Conflict', "self_install boots the instance's first disk: it has none", [
        { path: '/install/mode', message: 'no disk' },
      ]);
    const osImage = doc.install?.image;
    if (osImage !== undefined) {
      if (disks.length === 0)
        throw new DaemonError('Conflict', 'image: the instance has no disk to write it to', [
          { path: '/install/image', message: 'no disk' },
        ]);
      await checkOsImage(osImage, this.d.config.storage.imageRoots);
    }
    await this.image();
    return disks;
  }

  /** Removes what a run made; rejects with LeftBehind naming each thing that is still there. */
  async release(instance: string, domain: string): Promise<void> {
    const names = runNames(domain, this.a);
    const comm = this.d.comm;
    const left: LeftoverItem[] = [];
    const leave = (kind: LeftoverItem['kind'], name: string) => (): void => {
      left.push({ kind, name, instance, domain });
    };
    if (comm) {
      // The tap goes first: the reconcile that drops its rules then finds nothing to hold closed.
      await comm.net.deleteTap(names.tap).catch(leave('tap', names.tap));
      await comm.releaseJobTap(instance, names.tap).catch(leave('tap identity', names.tap));
    }
    await rm(names.consoleLog, { force: true }).catch(leave('console log', names.consoleLog));
    // An OS image a run fetched (normally deleted as soon as it is written; after a crash, here).
    const image = join(this.imageDownloads(), `${domain}.image`);
    await rm(image, { force: true }).catch(leave('image', image));
    await rm(names.overlay, { force: true }).catch(leave('overlay', names.overlay));
    if (left.length > 0) throw new LeftBehind(`cleanup left: ${left.map((l) => l.kind).join(', ')}`, left);
  }

  /** One retry of a leftover that `release` or the sweep reported (daemon/jobs/leftovers.ts). */
  async removeLeftover(item: LeftoverItem): Promise<void> {
    const comm = this.d.comm;
    switch (item.kind) {
      case 'tap':
        if (comm) await comm.net.deleteTap(item.name);
        return;
      case 'tap identity':
        if (comm && item.instance !== undefined) await comm.releaseJobTap(item.instance, item.name);
        return;
      case 'overlay':
      case 'console log':
      case 'image':
        await rm(item.name, { force: true });
        return;
      case 'cleanup':
        if (item.instance !== undefined && item.domain !== undefined) await this.release(item.instance, item.domain);
        return;
      case 'domain':
      case 'recovery':
        throw new Error(`not a leftover of the run's preparation: ${item.kind}`);
    }
  }

  /** One run of `instance` as `domain`: checked again, then the overlay and the tap made; the XML and the cleanup. */
  async prepare(instance: string, domain: string, busy: readonly string[] = [], deadlineAt = Infinity): Promise<PreparedRun> {
    const a = this.a;
    // Checked again now, on what the paths resolve to now: the domain gets the resolved paths.
    const disks = await this.admit(instance, busy);
    // The variant (and, for Debian, its shares and root) before anything is written or made.
    const checked = this.d.store.mustGet(instance).doc;
    const variant =
      checked.install?.mode === 'self_install' ? 'busybox' : await variantOf(this.d.config.os.searchPath, checked.os?.name, a.variant);
    let base = a.baseDisk;
    let debian: SpecInputs['debian'];
    if (variant === 'debian') {
      debian = { shares: await resolveShares(a.shares) };
      base = debianRootOf(a);
      await access(base, constants.R_OK).catch(() => {
        throw unavailable(
          'no Debian appliance root disk: run `metad appliance build --variant debian` (or point /appliance/debianRoot at a build)',
        );
      });
    }
    const osImage = checked.install?.image;
    const disk0 = disks[0];
    if (osImage !== undefined && disk0 !== undefined) {
      // Before anything else is made: a refused image leaves nothing to undo. A download ends
      // at the job's hard deadline (on the injected clock).
      const remainingMs = (): number => Math.min(deadlineAt - this.d.clock.now(), 2 ** 31 - 1);
      const deadline = new AbortController();
      const stopTimer = new AbortController();
      void this.d.clock.sleep(Math.max(0, remainingMs()), stopTimer.signal).then(
        () => deadline.abort(),
        () => undefined,
      );
      try {
        const { bytes } = await writeOsImage({
          spec: osImage,
          roots: this.d.config.storage.imageRoots,
          disk: { real: disk0.real, format: checked.hardware?.disks?.[0]?.format ?? 'raw' },
          qemuImg: a.qemuImgPath,
          execFor: (ms) => boundedExec(this.d.clock, ms),
          remainingMs,
          download: {
            dir: this.imageDownloads(),
            file: `${domain}.image`,
            settings: a.package,
            signal: deadline.signal,
            userAgent: `metad/${VERSION}`,
          },
        });
        this.d.log.info({ instance, domain, bytes }, EV.jobImageWritten);
      } finally {
        stopTimer.abort();
      }
    }
    const c = this.comm();
    const img = await this.image();
    const type = await this.virtType();
    const names = runNames(domain, a);
    const doc = this.d.store.mustGet(instance).doc;
    const url = metadataUrl(this.d.config.guest.listen);
    const spec = runSpec({ domain, doc, disks, image: img, type, names, appliance: a, url, ...(debian ? { debian } : {}) });
    const xml = domainXml(spec);
    try {
      await this.runDir();
      // The overlay the domain attaches (runSpec decides: a disk-based run), made over its base.
      if (spec.overlay !== undefined && base !== undefined) {
        await mkdir(a.overlayDir, { recursive: true, mode: 0o700 });
        await this.makeOverlay(base, spec.overlay);
      }
      await c.net.createTap(names.tap);
      await c.useJobTap(instance, names.tap);
    } catch (e) {
      // Undo what was made; what cannot be undone goes with the error (a leftover, retried).
      await this.release(instance, domain).catch((err: unknown) => {
        throw new LeftBehind(e instanceof Error ? e.message : String(e), err instanceof LeftBehind ? err.items : []);
      });
      throw e;
    }
    return { xml, cleanup: () => this.release(instance, domain), disks: disks.map((x) => x.real) };
  }

  /** After a restart: the running appliance's tap gets its instance's identity back. */
  async adopt(instance: string, domain: string): Promise<PreparedRun> {
    const { comm, store } = this.d;
    const tap = runNames(domain, this.a).tap;
    if (comm && store.get(instance) && (await comm.net.linkExists(tap))) await comm.useJobTap(instance, tap);
    return { xml: '', cleanup: () => this.release(instance, domain) };
  }

  /**
   * At start, after recovery: what earlier runs left and no job in use owns: appliance taps,
   * console logs, overlays (a run whose cleanup failed, or whose record a later job replaced).
   * `inUse` is asked after each listing: a job registers its domain before it creates anything,
   * so a job started meanwhile is never swept.
   */
  async sweep(inUse: () => readonly string[]): Promise<Swept> {
    const a = this.a;
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
    if (this.d.comm) {
      const net = this.d.comm.net;
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
  }
}
