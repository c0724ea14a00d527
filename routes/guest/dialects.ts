/**
 * The guest dialects as data: the path prefix each owns, its handler, and when its paths check
 * an IMDSv2 token. A new dialect is one renderer (routes/render/), one handler
 * (routes/guest/<dialect>.ts) and one entry here; the pipeline (index.ts) names no dialect.
 */
import type { Answer, GuestRequest } from './answer.js';
import { ec2 } from './ec2.js';
import { openstack } from './openstack.js';
import { ganeti } from './ganeti.js';

export interface Dialect {
  readonly name: string;
  /** The first path segment it owns: '/openstack' owns '/openstack' and '/openstack/…'. */
  readonly prefix: string;
  readonly handle: (r: GuestRequest) => Answer | Promise<Answer>;
  /**
   * 'whenSent': a token that is sent must be valid (EC2, where tokens are issued; cloud-init
   * re-PUTs on 401). 'whenRequired': tokens are checked only when the instance requires IMDSv2,
   * and then on every path, or a GET-only SSRF inside the guest could read its user data and
   * secrets through this dialect instead of EC2's.
   */
  readonly tokens: 'whenSent' | 'whenRequired';
}

/** Dialects under a prefix of their own, tried in order. */
export const PREFIXED_DIALECTS: readonly Dialect[] = [
  { name: 'openstack', prefix: '/openstack', handle: openstack, tokens: 'whenRequired' },
  { name: 'ganeti', prefix: '/ganeti', handle: ganeti, tokens: 'whenRequired' },
];

/** EC2 owns every other path: its versions are at the root ('/latest/meta-data/'). */
export const ROOT_DIALECT: Dialect = { name: 'ec2', prefix: '/', handle: ec2, tokens: 'whenSent' };

/** '/openstack/latest/…' -> openstack; '/openstackx' and '/latest/…' -> ec2. */
export function dialectOf(path: string): Dialect {
  for (const d of PREFIXED_DIALECTS) {
    if (path.startsWith(d.prefix) && (path.length === d.prefix.length || path[d.prefix.length] === '/')) return d;
  }
  return ROOT_DIALECT;
}
