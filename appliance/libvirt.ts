/**
 * The libvirt implementation of Hypervisor, and the ONLY file that loads the binding
 * (`@unraid/libvirt`, an N-API module built from source against libvirt-dev). It is an optional
 * dependency loaded lazily with import(): `npm ci && npm start` works on a machine without
 * libvirt's headers, and only an install request fails, naming the Debian packages to install.
 *
 * The binding has no event API and its errors carry only a message, so state is polled by the
 * caller and errors are classified by their text ("Domain not found" = gone; "client socket is
 * closed" / "Broken pipe" = the connection died, e.g. libvirtd restarted: close it, reconnect once).
 */
import { DOMAIN_STATES, HypervisorUnavailable, type DomainState, type Hypervisor } from './hypervisor.js';

/** The few parts of the binding this file uses (typed here: the package may be absent). */
interface NativeDomain {
  readonly __brand?: never;
}
interface NativeHypervisor {
  connectOpen(): Promise<void>;
  connectClose(): Promise<void>;
  connectListAllDomains(flags?: number): Promise<NativeDomain[]>;
  domainCreateXML(xml: string): Promise<NativeDomain>;
  domainLookupByName(name: string): Promise<NativeDomain>;
  domainDestroy(d: NativeDomain): Promise<void>;
  domainGetInfo(d: NativeDomain): Promise<{ state: number }>;
  domainGetName(d: NativeDomain): Promise<string>;
}
interface Binding {
  Hypervisor: new (opts: { uri: string }) => NativeHypervisor;
}

const BINDING = '@unraid/libvirt';
export const MISSING_BINDING =
  `the libvirt binding (${BINDING}) is not installed: install the Debian packages ` +
  'libvirt-dev pkg-config g++ make (apt-get install --no-install-recommends ...), then run npm ci again ' +
  '(with npm_config_nodedir=/usr when offline); the hypervisor side also needs qemu-system-x86 ' +
  'qemu-utils libvirt-daemon libvirt-daemon-driver-qemu';

let binding: Promise<Binding> | undefined;

/** Loads the binding once; rejects with HypervisorUnavailable naming the packages. */
export function loadBinding(specifier = BINDING): Promise<Binding> {
  const load = async (): Promise<Binding> => {
    try {
      return (await import(specifier)) as Binding;
    } catch (e) {
      throw new HypervisorUnavailable(MISSING_BINDING, { cause: e });
    }
  };
  if (specifier !== BINDING) return load();
  binding ??= load().catch((e: unknown) => {
    binding = undefined;
    throw e;
  });
  return binding;
}

export const isNotFound = (e: unknown): boolean => /Domain not found|no domain with matching/i.test(messageOf(e));
export const isConnectionLost = (e: unknown): boolean =>
  /client socket is closed|Broken pipe|Cannot write data|Cannot recv data|End of file while reading|not connected/i.test(messageOf(e));

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

export function stateName(n: number): DomainState {
  return DOMAIN_STATES[n] ?? 'nostate';
}

export class LibvirtHypervisor implements Hypervisor {
  private conn: Promise<NativeHypervisor> | undefined;
  private dropped = 0;

  /** `uri`: e.g. qemu:///system, qemu:///system?socket=/path/libvirt-sock, test:///default. */
  constructor(
    readonly uri: string,
    private readonly specifier = BINDING,
  ) {}

  private connect(): Promise<NativeHypervisor> {
    if (this.conn) return this.conn;
    const p = (async () => {
      const lib = await loadBinding(this.specifier);
      const h = new lib.Hypervisor({ uri: this.uri });
      try {
        await h.connectOpen();
      } catch (e) {
        throw new HypervisorUnavailable(`cannot connect to libvirt at ${this.uri}: ${messageOf(e)}`, { cause: e });
      }
      return h;
    })();
    this.conn = p;
    p.catch(() => {
      if (this.conn === p) this.conn = undefined; // the next call tries again
    });
    return p;
  }

  /**
   * Runs `op` on the connection. A lost connection (libvirtd restarted or killed) is dropped and
   * its handle closed (not leaked), and an idempotent `op` is retried once on a new connection; a
   * create is not (it may have happened: createTransient checks the connection just before). The retry is bounded: one reconnect per call. When the
   * reconnect fails too (libvirtd still down) the call rejects with HypervisorUnavailable at once,
   * and the next call tries again: callers poll (the runner's loop, its destroy retries).
   * Concurrent calls that all hit the dead connection share one new connection.
   */
  private async withConn<T>(op: (h: NativeHypervisor) => Promise<T>, idempotent = true): Promise<T> {
    const c = this.connect();
    const h = await c;
    try {
      return await op(h);
    } catch (e) {
      if (!isConnectionLost(e)) throw e;
      this.drop(c, h);
      if (!idempotent) throw e;
      return op(await this.connect());
    }
  }

  /** Forgets a dead connection (unless another call already replaced it) and frees its handle. */
  private drop(c: Promise<NativeHypervisor>, h: NativeHypervisor): void {
    if (this.conn !== c) return;
    this.conn = undefined;
    this.dropped++;
    void h.connectClose().catch(() => undefined); // a dead socket: closing it cannot fail usefully
  }

  /** How many dead connections were dropped (each reopened by the next call). */
  get reconnects(): number {
    return this.dropped;
  }

  async createTransient(name: string, xml: string): Promise<void> {
    // A connection that died since the last call (libvirtd restarted) is found and replaced by a
    // call that may be repeated, so that the create, which is never repeated, goes out on a live
    // one: otherwise the first install after every libvirtd restart failed ("Broken pipe").
    await this.state(name);
    await this.withConn(async (h) => {
      const d = await h.domainCreateXML(xml);
      const got = await h.domainGetName(d);
      if (got !== name) {
        await h.domainDestroy(d).catch(() => undefined);
        throw new Error(`domain XML names ${got}, expected ${name}`);
      }
    }, false);
  }

  async state(name: string): Promise<DomainState> {
    try {
      return await this.withConn(async (h) => stateName((await h.domainGetInfo(await h.domainLookupByName(name))).state));
    } catch (e) {
      if (isNotFound(e)) return 'gone';
      throw e;
    }
  }

  async destroy(name: string): Promise<'destroyed' | 'gone'> {
    try {
      await this.withConn(async (h) => h.domainDestroy(await h.domainLookupByName(name)));
      return 'destroyed';
    } catch (e) {
      if (isNotFound(e)) return 'gone';
      throw e;
    }
  }

  async list(prefix: string): Promise<string[]> {
    return this.withConn(async (h) => {
      const names: string[] = [];
      for (const d of await h.connectListAllDomains()) {
        try {
          names.push(await h.domainGetName(d));
        } catch (e) {
          if (!isNotFound(e)) throw e; // vanished while listing
        }
      }
      return names.filter((n) => n.startsWith(prefix)).sort();
    });
  }

  async close(): Promise<void> {
    const c = this.conn;
    this.conn = undefined;
    if (c) await (await c.catch(() => undefined))?.connectClose().catch(() => undefined);
  }
}
