/**
 * OpenStack metadata on the guest door: `/openstack` version list, `/openstack/<v>/` listing and
 * its files from the pure renderer. meta_data.json is cached per instance generation with its
 * random_seed spliced in fresh on every request (Nova draws 512 random bytes per request).
 * `password`: GET returns it (empty if none); the guest may POST it once (≤ 1020 bytes).
 */
import { randomBytes } from 'node:crypto';
import { OPENSTACK_VERSIONS, RANDOM_SEED_BYTES, isOpenstackVersion, openstackListing, renderOpenstackFile } from '../render/openstack.js';
import { type Answer, type GuestRequest, bytes, empty, fail, isRead, methodNotAllowed, notFound, text } from './answer.js';
import { guestViewOf } from './view.js';
import { readGuestBody } from './body.js';

export const MAX_PASSWORD_BYTES = 1020;
const VERSION_LIST = OPENSTACK_VERSIONS.join('\n');
const FILE_NAMES = new Set(['meta_data.json', 'user_data', 'vendor_data.json', 'vendor_data2.json', 'network_data.json']);
/** base64 of 512 zero bytes: the placeholder the cached JSON carries where the seed goes. */
const SEED_PLACEHOLDER = Buffer.alloc(RANDOM_SEED_BYTES).toString('base64');

interface Rendered {
  /** JSON text split around the seed placeholder (one part when the version has no seed). */
  parts: string[];
  type: string;
  bytes?: Buffer;
}

function render(r: GuestRequest, version: string, name: string): Rendered | null {
  if (!isOpenstackVersion(version)) return null;
  const file = renderOpenstackFile(guestViewOf(r.d, r.inst, false), version, name, { now: r.d.clock.now(), randomSeed: Buffer.alloc(RANDOM_SEED_BYTES) });
  if (!file || file.kind === 'password') return null;
  if (file.kind === 'bytes') return { parts: [], type: 'application/octet-stream', bytes: file.value };
  return { parts: JSON.stringify(file.value).split(`"${SEED_PLACEHOLDER}"`), type: 'application/json' };
}

async function password(r: GuestRequest): Promise<Answer> {
  if (isRead(r.method)) return text(r.inst.sensitive.password ?? '');
  if (r.method !== 'POST') return methodNotAllowed('GET, HEAD, POST');
  const body = await readGuestBody(r.ctx, MAX_PASSWORD_BYTES);
  if (body === null) return fail(400);
  if (r.inst.sensitive.password !== undefined) return fail(409);
  try {
    await r.d.store.setPassword(r.inst.doc.name, body.toString('utf8'), true);
  } catch (err) {
    if ((err as { status?: number }).status === 409) return fail(409);
    throw err;
  }
  r.log.info('guest set its password');
  return empty(200);
}

export async function openstack(r: GuestRequest): Promise<Answer> {
  const [, version, name, ...more] = r.segments;
  if (version === undefined) return isRead(r.method) ? text(VERSION_LIST) : methodNotAllowed('GET, HEAD');
  if (!isOpenstackVersion(version) || more.length > 0) return notFound();
  if (name === 'password') return password(r);
  if (!isRead(r.method)) return methodNotAllowed('GET, HEAD');
  if (name === undefined) return text(openstackListing(guestViewOf(r.d, r.inst, false), version).join('\n'));
  // Only known file names reach the cache: a guest cannot fill it with made-up paths.
  if (!FILE_NAMES.has(name)) return notFound();
  const file = r.d.cache.get(r.inst.doc.name, r.inst.generation, `os:${version}:${name}`, () => render(r, version, name));
  if (!file) return notFound();
  if (file.bytes) return bytes(file.bytes);
  const body = file.parts.length === 1 ? file.parts[0]! : file.parts.join(`"${randomBytes(RANDOM_SEED_BYTES).toString('base64')}"`);
  return { status: 200, type: file.type, body };
}
