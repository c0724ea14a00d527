/**
 * A stand-in for the `@unraid/libvirt` binding (the parts appliance/libvirt.ts uses), loaded
 * through LibvirtHypervisor's `specifier`, with a libvirtd a test can stop, start and restart.
 * It fails the way the real binding does (measured, see the virtualization notes): a handle
 * opened before a restart fails its first call with "Cannot write data: Broken pipe" and every
 * later one with "internal error: client socket is closed"; opening while libvirtd is down fails
 * with "Connection refused". Domains outlive a restart (qemu does). `daemon.open` counts the
 * handles opened and not closed: a dropped connection that is never closed is a leak.
 */
interface FakeDomain {
  readonly name: string;
}

export const daemon = {
  up: true,
  /** Incremented by every (re)start: a handle from an older epoch is dead. */
  epoch: 0,
  opened: 0,
  open: new Set<Hypervisor>(),
  domains: new Map<string, number>(),
  /** Domain creations that reached the daemon. */
  creates: 0,
  /** The next create reaches the daemon (the domain is made) but its answer is lost: the daemon
   * restarts before replying, and the call fails as a lost connection does while reading. */
  loseNextCreateReply: false,
  reset(): void {
    this.up = true;
    this.epoch++;
    this.opened = 0;
    this.open.clear();
    this.domains.clear();
    this.creates = 0;
    this.loseNextCreateReply = false;
  },
  stop(): void {
    this.up = false;
    this.epoch++;
  },
  start(): void {
    this.up = true;
  },
  restart(): void {
    this.stop();
    this.start();
  },
};

export class Hypervisor {
  private epoch = -1;
  private failures = 0;
  constructor(readonly opts: { uri: string }) {}

  private alive(): void {
    if (this.epoch === daemon.epoch && daemon.up) return;
    throw new Error(this.failures++ === 0 ? 'Cannot write data: Broken pipe' : 'internal error: client socket is closed');
  }

  private lookup(name: string): FakeDomain {
    if (!daemon.domains.has(name)) throw new Error(`Domain not found: no domain with matching name '${name}'`);
    return { name };
  }

  connectOpen(): Promise<void> {
    if (!daemon.up) return Promise.reject(new Error("Failed to connect socket to '/fake/libvirt-sock': Connection refused"));
    this.epoch = daemon.epoch;
    daemon.opened++;
    daemon.open.add(this);
    return Promise.resolve();
  }

  connectClose(): Promise<void> {
    daemon.open.delete(this);
    return Promise.resolve();
  }

  async connectListAllDomains(): Promise<FakeDomain[]> {
    await Promise.resolve();
    this.alive();
    return [...daemon.domains.keys()].map((name) => ({ name }));
  }

  async domainCreateXML(xml: string): Promise<FakeDomain> {
    await Promise.resolve();
    this.alive();
    const name = /<name>([^<]+)<\/name>/.exec(xml)?.[1] ?? '';
    if (daemon.domains.has(name)) throw new Error(`operation failed: domain '${name}' already exists`);
    daemon.creates++;
    daemon.domains.set(name, 1);
    if (daemon.loseNextCreateReply) {
      daemon.loseNextCreateReply = false;
      daemon.restart();
      throw new Error('End of file while reading data: Input/output error');
    }
    return { name };
  }

  async domainLookupByName(name: string): Promise<FakeDomain> {
    await Promise.resolve();
    this.alive();
    return this.lookup(name);
  }

  async domainDestroy(d: FakeDomain): Promise<void> {
    await Promise.resolve();
    this.alive();
    this.lookup(d.name);
    daemon.domains.delete(d.name);
  }

  async domainGetInfo(d: FakeDomain): Promise<{ state: number }> {
    await Promise.resolve();
    this.alive();
    return { state: daemon.domains.get(this.lookup(d.name).name) ?? 0 };
  }

  async domainGetName(d: FakeDomain): Promise<string> {
    await Promise.resolve();
    this.alive();
    return d.name;
  }
}
