/**
 * EC2 IMDS on the guest door: `/` version list, `/<version>/…` from the pure renderer's tree,
 * and IMDSv2 session tokens (`PUT /latest/api/token`). A directory asked without its trailing
 * slash answers 301 to the slash form (as EC2 does); `//latest/…` is answered directly because
 * the pipeline collapsed the leading slashes before we get here. Token checks on reads happen in
 * the pipeline (routes/guest/index.ts), before the cache, so cached answers are checked too.
 */
import { renderEc2 } from '../render/ec2.js';
import { EC2_VERSIONS, isEc2Version } from '../render/ec2-catalog.js';
import { isDir, listing, lookup } from '../render/tree.js';
import {
  type Answer,
  type GuestRequest,
  bytes,
  cached,
  fail,
  header,
  isRead,
  methodNotAllowed,
  notFound,
  redirect,
  text,
} from './answer.js';
import { parseTtl, TTL_HEADER } from './tokens.js';
import { guestViewOf } from './view.js';

const VERSION_LIST = EC2_VERSIONS.join('\n');

/** The key a token is bound to: the instance's uuid and name. */
export function tokenKey(r: Pick<GuestRequest, 'inst'>): string {
  return `${r.inst.doc.uuid}/${r.inst.doc.name}`;
}

/** `PUT /latest/api/token`: 400 on a bad TTL, 403 with X-Forwarded-For (SSRF guard). */
function issueToken(r: GuestRequest): Answer {
  if (header(r, 'x-forwarded-for') !== undefined) {
    r.note('guestTokenRefused', { reason: 'x-forwarded-for on token PUT' });
    return fail(403);
  }
  const ttl = parseTtl(header(r, TTL_HEADER));
  if (ttl === undefined) return fail(400);
  const token = r.d.tokens.issue(tokenKey(r), r.d.clock.now(), ttl);
  return { status: 200, type: 'text/plain', body: token, headers: { 'X-aws-ec2-metadata-token-ttl-seconds': String(ttl) } };
}

export function ec2(r: GuestRequest): Answer {
  const [version, ...rest] = r.segments;
  if (version === undefined) return isRead(r.method) ? cached(text(VERSION_LIST)) : methodNotAllowed('GET, HEAD');
  if (rest[0] === 'api' && rest[1] === 'token' && rest.length === 2) {
    if (r.method !== 'PUT') return methodNotAllowed('PUT');
    // EC2 issues tokens only under /latest: a dated token path is 403 (botocore then uses v1).
    return version === 'latest' ? issueToken(r) : fail(403);
  }
  if (!isEc2Version(version)) return notFound();
  if (!isRead(r.method)) return methodNotAllowed('GET, HEAD');
  const tree = r.d.cache.value(r.inst.doc.name, r.inst.generation, `ec2:${version}`, () =>
    renderEc2(guestViewOf(r.d, r.inst, false), version, {
      now: r.d.clock.now(),
      randomSeed: Buffer.alloc(0),
      sign: (doc) => r.d.identity.sign(doc),
    }),
  );
  const node = lookup(tree, rest);
  if (node === undefined) return notFound();
  if (isDir(node)) return cached(r.trailingSlash ? text(listing(node)) : redirect(`${r.path}/`));
  return cached(Buffer.isBuffer(node) ? bytes(node) : text(node.toString()));
}
