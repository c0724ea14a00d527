/**
 * EC2 IMDS on the guest door: `/` version list, `/<version>/…` from the pure renderer's tree,
 * and IMDSv2 session tokens (`PUT /latest/api/token`). A directory asked without its trailing
 * slash answers 301 to the slash form (as EC2 does); `//latest/…` is answered directly because
 * the pipeline collapsed the leading slashes before we get here.
 */
import { EC2_VERSIONS, isEc2Version, renderEc2 } from '../render/ec2.js';
import { isDir, listing, lookup, type Dir } from '../render/tree.js';
import { type Answer, type GuestRequest, bytes, fail, isRead, methodNotAllowed, notFound, redirect, text } from './answer.js';
import { parseTtl, TOKEN_HEADER, TTL_HEADER } from './tokens.js';
import { guestViewOf } from './view.js';

const VERSION_LIST = EC2_VERSIONS.join('\n');
const listings = new WeakMap<Dir, string>();

/** Listing text of a directory, memoised per rendered tree node. */
function listingOf(d: Dir): string {
  let l = listings.get(d);
  if (l === undefined) listings.set(d, (l = listing(d)));
  return l;
}

function tokenKey(r: GuestRequest): string {
  return `${r.inst.doc.uuid}/${r.inst.doc.name}`;
}

/** `PUT /latest/api/token`: 400 on a bad TTL, 403 with X-Forwarded-For (SSRF guard). */
function issueToken(r: GuestRequest): Answer {
  if (r.ctx.get('x-forwarded-for') !== '') {
    r.log.warn({ reason: 'x-forwarded-for on token PUT' }, 'guest token refused');
    return fail(403);
  }
  const ttl = parseTtl(r.ctx.req.headers[TTL_HEADER]);
  if (ttl === undefined) return fail(400);
  const token = r.d.tokens.issue(tokenKey(r), r.d.clock.now(), ttl);
  return { status: 200, type: 'text/plain', body: token, headers: { 'X-aws-ec2-metadata-token-ttl-seconds': String(ttl) } };
}

/**
 * Token check for reads. A token that is present must be valid (else 401, so cloud-init
 * re-PUTs); a missing token is fine unless the instance requires IMDSv2.
 */
function tokenProblem(r: GuestRequest): Answer | undefined {
  const token = r.ctx.req.headers[TOKEN_HEADER];
  if (token === undefined) return r.inst.doc.ec2?.imdsV2 === 'required' ? fail(401) : undefined;
  if (typeof token !== 'string' || !r.d.tokens.verify(tokenKey(r), token, r.d.clock.now())) return fail(401);
  return undefined;
}

export function ec2(r: GuestRequest): Answer {
  const [version, ...rest] = r.segments;
  if (version === undefined) return isRead(r.method) ? text(VERSION_LIST) : methodNotAllowed('GET, HEAD');
  if (rest[0] === 'api' && rest[1] === 'token' && rest.length === 2) {
    if (r.method !== 'PUT') return methodNotAllowed('PUT');
    // EC2 issues tokens only under /latest: a dated token path is 403 (botocore then uses v1).
    return version === 'latest' ? issueToken(r) : fail(403);
  }
  if (!isEc2Version(version)) return notFound();
  if (!isRead(r.method)) return methodNotAllowed('GET, HEAD');
  const bad = tokenProblem(r);
  if (bad) return bad;
  const tree = r.d.cache.get(r.inst.doc.name, r.inst.generation, `ec2:${version}`, () =>
    renderEc2(guestViewOf(r.d, r.inst, false), version, { now: r.d.clock.now(), randomSeed: Buffer.alloc(0), sign: (doc) => r.d.identity.sign(doc) }),
  );
  const node = lookup(tree, rest);
  if (node === undefined) return notFound();
  if (isDir(node)) return r.trailingSlash ? text(listingOf(node)) : redirect(`${r.path}/`);
  return Buffer.isBuffer(node) ? bytes(node) : text(node);
}
