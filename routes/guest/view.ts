/**
 * Build the GuestView a renderer gets from a stored instance. Secret values are included only
 * when asked for (os/parameters.json); `consume` then hands out claim-once values this once.
 */
import type { StoredInstance } from '../../daemon/model.js';
import type { Services } from '../../daemon/services.js';
import type { GuestView } from '../render/view.js';

export function guestViewOf(s: Pick<Services, 'vault'>, inst: StoredInstance, withSecrets: boolean, consume = false): GuestView {
  const view: GuestView = {
    doc: inst.doc,
    privateParams: inst.sensitive.private,
    secretParams: withSecrets ? s.vault.liveValues(inst.doc.name, consume) : {},
    generation: inst.generation,
    createdAt: inst.createdAt,
  };
  if (inst.sensitive.iam) view.iam = inst.sensitive.iam;
  return view;
}
