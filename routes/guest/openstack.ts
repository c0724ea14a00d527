/**
 * OpenStack metadata on the guest door: `/openstack` version list, `/openstack/<v>/` listing and
 * its files from the pure renderer, all cached per instance generation; meta_data.json is cached
 * in two halves and gets a fresh random_seed on every request (Nova draws 512 bytes per request).
 * `password`: GET returns it (empty if none); the guest may POST it once (≤ 1020 bytes).
 */
import { randomBytes } from 'node:crypto';
import { OPENSTACK_VERSIONS, RANDOM_SEED_BYTES, isOpenstackVersion, openstackListing, renderOpenstackFile } from '../render/openstack.js';
import { type Answer, type GuestRequest, bytes, cached, empty, fail, isRead, methodNotAllowed, notFound, text } from './answer.js';
import { guestViewOf } from './view.js';
import { readBody } from '../body.js';
import { DaemonError } from '../../daemon/errors.js';

const MAX_PASSWORD_BYTES = 1020;
const VERSION_LIST = OPENSTACK_VERSIONS.join('\n');

async function password(r: GuestRequest): Promise<Answer> {
  if (isRead(r.method)) return text(r.inst.sensitive.password ?? '');
  if (r.method !== 'POST') return methodNotAllowed('GET, HEAD, POST');
  let body: Buffer;
  try {
    body = await readBody(r.req, MAX_PASSWORD_BYTES);
  } catch (err) {
    // Nova answers an oversized password with 400, not 413.
    if (err instanceof DaemonError && err.code === 'PayloadTooLarge') return fail(400);
    throw err;
  }
  // Bound to the incarnation that asked (404 after a DELETE and a new PUT of the name); a second
  // POST is 409. Both are DaemonErrors, which the pipeline answers with their code's status.
  await r.d.store.setPassword(r.inst.doc.name, body.toString('utf8'), true, r.inst);
  r.note('guestPasswordSet');
  return empty(200);
}

export async function openstack(r: GuestRequest): Promise<Answer> {
  const [, version, name, ...more] = r.segments;
  if (version === undefined) return isRead(r.method) ? cached(text(VERSION_LIST)) : methodNotAllowed('GET, HEAD');
  if (!isOpenstackVersion(version) || more.length > 0) return notFound();
  if (name === 'password') return password(r);
  if (!isRead(r.method)) return methodNotAllowed('GET, HEAD');
  if (name === undefined) return cached(text(openstackListing(guestViewOf(r.d, r.inst, false), version).join('\n')));
  // Rendered with a one-off random seed that doubles as the placeholder the pipeline swaps for
  // fresh bytes on every request: unpredictable, so no admin-set value can collide with it.
  const placeholderSeed = randomBytes(RANDOM_SEED_BYTES);
  const file = renderOpenstackFile(guestViewOf(r.d, r.inst, false), version, name, { now: r.d.clock.now(), randomSeed: placeholderSeed });
  if (!file || file.kind === 'password') return notFound();
  if (file.kind === 'bytes') return cached(bytes(file.value));
  const body = JSON.stringify(file.value);
  if (name !== 'meta_data.json') return cached({ status: 200, type: 'application/json', body });
  return {
    ...cached({ status: 200, type: 'application/json', body }, 'seeded'),
    seedPlaceholder: `"${placeholderSeed.toString('base64')}"`,
  };
}
