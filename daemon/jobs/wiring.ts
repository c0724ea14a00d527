/**
 * The production edges of the install jobs: the libvirt hypervisor (loaded lazily; without the
 * binding an install request fails with the Debian packages named) and the per-run preparation.
 */
import type { Hypervisor } from '../../appliance/hypervisor.js';
import { LibvirtHypervisor, loadBinding } from '../../appliance/libvirt.js';
import { DaemonError } from '../errors.js';
import type { Prepared } from './manager.js';

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
 * The daemon does not yet assemble a run (appliance image from config, the instance's comm tap
 * from the comm network, disks, domain XML): a run fails here, before anything is created, and
 * the job ends `failed` with this reason. Tests and the boot test inject their own `prepare`.
 */
export function unpreparedAppliance(): Promise<Prepared> {
  return Promise.reject(
    new DaemonError(
      'Unavailable',
      'this daemon cannot assemble install appliances yet (appliance image and comm tap wiring are not built)',
    ),
  );
}
