/**
 * Build the GuestView a renderer gets from a stored instance. Secret values are included only
 * when asked for (os/parameters.json) AND while the secrets gate is open for the instance (an
 * install job of it is live, or a Ganeti secret window is open: daemon/daemon.ts composes both);
 * `consume` (a GET, never a HEAD) then tells the gate that the instance claimed its secrets and
 * hands out claim-once values this once.
 * The comm NIC's prefix comes from the configured comm ranges.
 */
import type { StoredInstance } from '../../daemon/registry/model.js';
import type { GuestServices } from '../../daemon/services.js';
import { Ipv4Ranges } from '../../daemon/net.js';
import type { GuestView } from '../render/view.js';
import { PACKAGE_CREDENTIAL_NAMES } from '../../daemon/registry/vault.js';

/** Parsed once per config object (the config is frozen and lives as long as the daemon). */
const rangesOf = new WeakMap<object, Ipv4Ranges>();

function commRanges(s: Pick<GuestServices, 'config'>): Ipv4Ranges {
  let r = rangesOf.get(s.config);
  if (!r) rangesOf.set(s.config, (r = new Ipv4Ranges(s.config.guest.commRange)));
  return r;
}

export function guestViewOf(
  s: Pick<GuestServices, 'vault' | 'config' | 'secrets'>,
  inst: StoredInstance,
  withSecrets: boolean,
  consume = false,
): GuestView {
  const name = inst.doc.name;
  const serveSecrets = withSecrets && s.secrets.secretsOpen(name);
  if (serveSecrets && consume) s.secrets.noteClaim(name);
  const view: GuestView = {
    doc: inst.doc,
    privateParams: inst.sensitive.private,
    // The personalization package's credentials are metad's to use (daemon/jobs/package.ts), never the guest's.
    secretParams: serveSecrets ? s.vault.liveValues(name, consume, PACKAGE_CREDENTIAL_NAMES) : {},
    generation: inst.generation,
    createdAt: inst.createdAt,
    commPrefix: commRanges(s).prefixOf(inst.doc.comm.ipv4) ?? 32,
  };
  if (inst.sensitive.iam) view.iam = inst.sensitive.iam;
  return view;
}
