/** Placeholder guest app (replaced by the guest door issue). */
import Koa from 'koa';
import type { Services } from '../../daemon/services.js';
export function createGuestApp(_s: Services): Koa {
  const app = new Koa();
  app.use((ctx) => {
    ctx.status = 404;
    ctx.body = 'Not Found';
  });
  return app;
}
