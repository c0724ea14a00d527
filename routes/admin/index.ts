/**
 * The admin door: a koa app (never listens itself; daemon/process/main.ts binds it to the unix socket)
 * with the v1 routes of docs/admin-api.md. JSON errors first in the chain; every body is
 * validated by ajv before it reaches the store. Logs names and counts, never values.
 */
import Koa from 'koa';
import Router from '@koa/router';
import type { Services } from '../../daemon/services.js';
import { adminErrors } from '../errors.js';
import { invalid, notFound } from '../../daemon/errors.js';
import { EV } from '../../daemon/log/events.js';
import { isInstanceName } from '../../daemon/registry/model.js';
import { instanceRoutes } from './instances.js';
import { jobRoutes } from './jobs.js';
import { paramRoutes } from './params.js';
import { pipeRoutes } from './pipe.js';
import { healthOf } from './views.js';
import { nicRoutes } from './nic.js';

export function createAdminApp(s: Services): Koa {
  const app = new Koa();
  // strict: '/params/secret/' (an empty key) must not match '/params/:visibility' and clear it all.
  const router = new Router({ prefix: '/v1', strict: true });
  router.param('name', (name, ctx, next) => {
    // Names are validated here too: never let a path parameter reach the store unchecked.
    if (!isInstanceName(name)) throw invalid('invalid instance name', [{ path: '/name', message: 'must be a DNS name' }]);
    return next();
  });
  router.get('/health', async (ctx) => {
    ctx.body = await healthOf(s);
  });
  router.get('/metrics', async (ctx) => {
    if (!s.metrics) throw notFound('no metrics in this daemon');
    const m = await s.metrics.exposition();
    ctx.type = m.contentType;
    ctx.body = m.text;
  });
  router.get('/identity/public-key', (ctx) => {
    ctx.type = 'application/x-pem-file';
    ctx.body = s.identity.publicKeyPem;
  });
  instanceRoutes(router, s);
  paramRoutes(router, s);
  pipeRoutes(router, s);
  nicRoutes(router, s);
  jobRoutes(router, s);

  app.use(async (ctx, next) => {
    const t0 = performance.now();
    try {
      await next();
    } finally {
      // ctx.path is ours to log: names and route shapes, never bodies or query values.
      s.log.debug(
        { method: ctx.method, route: ctx.path.slice(0, 256), status: ctx.status, ms: Math.round((performance.now() - t0) * 10) / 10 },
        EV.adminRequest,
      );
    }
  });
  app.use(adminErrors(s.log));
  app.use(router.routes());
  app.use(router.allowedMethods());
  app.on('error', () => undefined); // errors are answered and logged by adminErrors
  return app;
}
