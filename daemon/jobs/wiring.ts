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
 * Until the comm network creates and registers an instance's tap (issue 7), the daemon cannot
 * give an appliance the instance's comm NIC: a run fails here, before anything is created.
 */
export function unpreparedAppliance(): Promise<Prepared> {
  return Promise.reject(new DaemonError('Unavailable', 'install appliances need the comm network tap of the instance, which this daemon does not create yet'));
}
