/**
 * Ganeti's OS packages: the host files the public parameters `os-install-package` (what Ganeti's
 * `ExportOS` wrote: the OS definition and its environment, private parameters included) and
 * `os-package` name, which the guest door serves that one instance (routes/guest/ganeti.ts).
 *
 * A path in a parameter is an attack surface: whoever can set public parameters (an admin-door
 * client: `metadctl params set`) could name /etc/shadow or another instance's package. So:
 *   - the value is honoured only as Ganeti's node daemon pushed it: the Ganeti feed records each
 *     instance's package parameters here (`FedPackages`, memory only), and the guest door serves
 *     a package only while the instance's current value is the one Ganeti pushed for that very
 *     instance (same name and uuid). An admin's value is never followed;
 *   - and even then the path must be absolute, without control characters, resolve (realpath)
 *     strictly inside one of `ganeti.packageRoots`, and open (O_NOFOLLOW | O_NONBLOCK) as a
 *     regular file within `ganeti.packageMaxBytes` that neither group nor others may write.
 */
import { openUnderRoots, type OpenedFile } from './host-file.js';

/** The guest paths (under `/ganeti/<v>/os/`) and the public parameter each serves, as in ganeti-metad. */
export const OS_PACKAGE_PARAMS = { 'os-install-package': 'os-install-package', package: 'os-package' } as const;
export type OsPackageParam = (typeof OS_PACKAGE_PARAMS)[keyof typeof OS_PACKAGE_PARAMS];
const PARAMS: readonly OsPackageParam[] = Object.values(OS_PACKAGE_PARAMS);

interface Fed {
  uuid: string;
  values: Partial<Record<OsPackageParam, string>>;
}

/** What the Ganeti feed pushed for each instance's package parameters (memory only: a restart waits for the next push). */
export class FedPackages {
  private readonly fed = new Map<string, Fed>();

  /** A push of `name` was stored: remember its package parameters (none: forget them). */
  record(name: string, uuid: string, publicParams: Readonly<Record<string, string>> | undefined): void {
    const values: Fed['values'] = {};
    for (const p of PARAMS) {
      const v = publicParams?.[p];
      if (v !== undefined) values[p] = v;
    }
    if (Object.keys(values).length === 0) this.fed.delete(name);
    else this.fed.set(name, { uuid, values });
  }

  forget(name: string): void {
    this.fed.delete(name);
  }

  /** True when `value` is what Ganeti pushed as `param` for this name and uuid. */
  isFed(name: string, uuid: string, param: OsPackageParam, value: string): boolean {
    const f = this.fed.get(name);
    return f !== undefined && f.uuid === uuid && f.values[param] === value;
  }
}

/**
 * Open the package at `path` if it may be served: `{problem}` says why not (never the path).
 * ('/tmp/tmpa1b2.tgz', ['/tmp']) -> the open file; ('/etc/shadow', ['/tmp']) -> outside the roots.
 */
export async function openOsPackage(path: string, roots: readonly string[], maxBytes: number): Promise<OpenedFile | { problem: string }> {
  return openUnderRoots(path, roots, maxBytes, 'ganeti.packageRoots');
}
