/**
 * The guest door: one koa app, one lean pipeline that every guest request goes through —
 * identify the instance by the connection's source address (never a proxy header), apply its
 * rate limit, then hand the request to its dialect (EC2, OpenStack, Ganeti). Unknown sources get
 * a fast plain 404 and a (sampled) warning. Never listens itself; daemon/main.ts does.
 */
import Koa, { type Context } from 'koa';
import type { Logger } from 'pino';
import type { Services } from '../../daemon/services.js';
import { normalizeAddress } from '../../daemon/net.js';
import { AnswerCache } from './cache.js';
import { RateLimiter } from './rate-limit.js';
import { TokenIssuer } from './tokens.js';
import { type Answer, type GuestDeps, type GuestRequest, fail } from './answer.js';
import { ec2 } from './ec2.js';
import { openstack } from './openstack.js';
import { ganeti } from './ganeti.js';

export interface GuestOptions {
  tokens?: TokenIssuer;
}

/** Logs about unknown sources are sampled: at most one line per address per interval. */
const UNKNOWN_LOG_INTERVAL_MS = 10_000;

export function createGuestApp(s: Services, opts: GuestOptions = {}): Koa {
  const d: GuestDeps = { ...s, cache: new AnswerCache(), tokens: opts.tokens ?? new TokenIssuer() };
  const limiter = new RateLimiter(s.config.guest.rateLimit.ratePerSec, s.config.guest.rateLimit.burst);
  const children = new Map<string, Logger>();
  const unknownSeen = new Map<string, number>();
  s.store.on('removed', (name: string) => {
    d.cache.drop(name);
    limiter.forget(name);
    children.delete(name);
  });
  const childLog = (name: string): Logger => {
    let l = children.get(name);
    if (!l) children.set(name, (l = s.log.child({ instance: name, door: 'guest' })));
    return l;
  };

  const warnUnknown = (ip: string, now: number): void => {
    const last = unknownSeen.get(ip);
    if (last !== undefined && now - last < UNKNOWN_LOG_INTERVAL_MS) return;
    if (unknownSeen.size > 10_000) unknownSeen.clear();
    unknownSeen.set(ip, now);
    s.log.warn({ source: ip }, 'guest request from an unknown source address');
  };

  const dispatch = (r: GuestRequest): Answer | Promise<Answer> => {
    const first = r.segments[0];
    if (first === 'openstack') return openstack(r);
    if (first === 'ganeti') return ganeti(r);
    return ec2(r);
  };

  const app = new Koa();
  app.proxy = false; // X-Forwarded-For and friends are never trusted on the guest door
  app.use(async (ctx: Context) => {
    const now = s.clock.now();
    const ip = normalizeAddress(ctx.req.socket.remoteAddress);
    const inst = s.store.byAddress(ip);
    let answer: Answer;
    if (!inst) {
      warnUnknown(ip, now);
      answer = fail(404);
    } else {
      const name = inst.doc.name;
      const retry = limiter.take(name, now);
      if (retry > 0) {
        answer = fail(429, { 'Retry-After': String(retry) });
      } else {
        const raw = ctx.req.url ?? '/';
        const q = raw.indexOf('?');
        // '//latest/meta-data/x' (the AWS SDK for JavaScript) is served as '/latest/meta-data/x'.
        const path = (q === -1 ? raw : raw.slice(0, q)).replace(/^\/{2,}/, '/');
        const r: GuestRequest = {
          d,
          ctx,
          inst,
          get log() {
            return childLog(name);
          },
          method: ctx.method,
          path,
          segments: path.split('/').filter((x) => x !== ''),
          trailingSlash: path.length > 1 && path.endsWith('/'),
        };
        try {
          answer = await dispatch(r);
        } catch (err) {
          childLog(name).error({ err, path: path.slice(0, 256) }, 'guest request failed');
          answer = fail(500);
        }
        if (answer.status >= 400 && answer.status !== 404) childLog(name).warn({ status: answer.status, method: ctx.method, path: path.slice(0, 256) }, 'guest request refused');
      }
    }
    ctx.status = answer.status;
    if (answer.headers) ctx.set(answer.headers);
    if (answer.body !== undefined) {
      ctx.type = answer.type ?? 'application/octet-stream';
      ctx.body = answer.body;
    }
  });
  app.on('error', () => undefined); // every error is answered inside the pipeline
  return app;
}
