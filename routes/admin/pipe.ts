/**
 * Host side of the pipe and the OpenStack password: the admin sends bytes to the guest and
 * reads (consuming) what the guest wrote, optionally waiting up to 60 s for data.
 */
import type Router from '@koa/router';
import type { Services } from '../../daemon/services.js';
import { invalid } from '../../daemon/errors.js';
import { readBody } from '../body.js';
import { parseWaitMs } from '../../daemon/registry/pipes.js';
import { EV } from '../../daemon/log/events.js';
import { pathParam } from './path.js';

/** `?wait=SECONDS` -> milliseconds; 400 when not a number in 0..60. */
function waitMs(q: unknown): number {
  const ms = parseWaitMs(q);
  if (ms === undefined) throw invalid('wait must be a number of seconds between 0 and 60', [{ path: '/wait', message: 'out of range' }]);
  return ms;
}

export function pipeRoutes(router: Router, s: Services): void {
  router.post('/instances/:name/pipe', async (ctx) => {
    const name = pathParam(ctx, 'name');
    s.store.mustGet(name);
    const data = await readBody(ctx.req, s.config.pipe.maxBytes);
    // Re-checked after the body arrived: a pipe is never recreated for a removed instance.
    const q = await s.store.exclusive(name, () => {
      const queue = s.pipes.get(name).toGuest;
      queue.push(data);
      return queue;
    });
    s.log.info({ instance: name, bytes: data.length }, EV.pipeHostSent);
    ctx.status = 202;
    ctx.body = { queuedBytes: q.size };
  });

  router.get('/instances/:name/pipe', async (ctx) => {
    const name = pathParam(ctx, 'name');
    s.store.mustGet(name);
    const ms = waitMs(ctx.query.wait);
    const q = s.pipes.get(name).toHost;
    const ac = new AbortController();
    ctx.req.on('close', () => ac.abort());
    await q.waitForData(ms, s.clock, ac.signal);
    ctx.type = 'application/octet-stream';
    // A reader that went away must not consume: the bytes stay for the next read.
    ctx.body = ac.signal.aborted || !s.store.get(name) ? Buffer.alloc(0) : q.take();
  });

  router.get('/instances/:name/password', (ctx) => {
    ctx.body = { password: s.store.mustGet(pathParam(ctx, 'name')).sensitive.password ?? null };
  });
  router.delete('/instances/:name/password', async (ctx) => {
    const name = pathParam(ctx, 'name');
    await s.store.setPassword(name, null, false);
    s.log.info({ instance: name }, EV.passwordCleared);
    ctx.status = 204;
  });
}
