/**
 * OS parameter routes: per visibility, replace (PUT), merge (PATCH, null removes), clear and
 * delete one. public/private go to the store (private sealed at rest); secret to the vault.
 */
import type Router from '@koa/router';
import type { RouterContext } from '@koa/router';
import type { Services } from '../../daemon/services.js';
import { VISIBILITIES, type Visibility, type ParamValues } from '../../daemon/registry/model.js';
import { validateParamsBody, validateParamsPatch } from '../../daemon/registry/validate.js';
import { invalid, notFound } from '../../daemon/errors.js';
import { readJson } from './body.js';
import { paramsOf } from './views.js';
import { EV } from '../../daemon/log/events.js';
import { pathParam } from './path.js';

function visibilityOf(ctx: RouterContext): Visibility {
  const v = pathParam(ctx, 'visibility');
  if (!VISIBILITIES.includes(v as Visibility)) {
    throw invalid('unknown visibility', [{ path: '/visibility', message: 'must be public, private or secret' }]);
  }
  return v as Visibility;
}

type Edit = ParamValues | ((old: ParamValues) => ParamValues);

/** Store public/private values; a function edit runs inside the instance's write queue. */
async function store(s: Services, name: string, vis: 'public' | 'private', values: Edit): Promise<void> {
  if (vis === 'public') await s.store.setPublic(name, values);
  else await s.store.setPrivate(name, values);
}

export function paramRoutes(router: Router, s: Services): void {
  const limit = s.config.admin.maxBodyBytes;
  const base = '/instances/:name/params';

  router.get(base, (ctx) => {
    ctx.body = paramsOf(s, s.store.mustGet(pathParam(ctx, 'name')));
  });

  const write =
    (mode: 'replace' | 'merge') =>
    async (ctx: RouterContext): Promise<void> => {
      const name = pathParam(ctx, 'name');
      const vis = visibilityOf(ctx);
      s.store.mustGet(name);
      const raw = await readJson(ctx, limit);
      const body = mode === 'replace' ? validateParamsBody(raw) : validateParamsPatch(raw);
      if (vis !== 'secret' && (body.ttlSec !== undefined || body.claimOnce !== undefined)) {
        throw invalid('ttlSec and claimOnce apply to secret parameters only', [{ path: '/ttlSec', message: 'only for visibility secret' }]);
      }
      const opts = { ttlSec: body.ttlSec, claimOnce: body.claimOnce };
      if (vis === 'secret') {
        // In the instance's queue: ordered with PUT/PATCH secrets, and never for a removed instance.
        await s.store.exclusive(name, () => {
          if (mode === 'replace') s.vault.replace(name, body.values as ParamValues, opts);
          else s.vault.merge(name, body.values, opts);
        });
      } else {
        await store(s, name, vis, (old) => {
          const next = new Map(Object.entries(mode === 'replace' ? {} : old));
          for (const [k, v] of Object.entries(body.values)) {
            if (v === null) next.delete(k);
            else next.set(k, v);
          }
          return Object.fromEntries(next);
        });
      }
      s.log.info({ instance: name, visibility: vis, mode, count: Object.keys(body.values).length }, EV.paramsUpdated);
      ctx.body = paramsOf(s, s.store.mustGet(name));
    };
  router.put(`${base}/:visibility`, write('replace'));
  router.patch(`${base}/:visibility`, write('merge'));

  router.delete(`${base}/:visibility`, async (ctx) => {
    const name = pathParam(ctx, 'name');
    const vis = visibilityOf(ctx);
    if (vis === 'secret') await s.store.exclusive(name, () => s.vault.wipe(name));
    else await store(s, name, vis, {});
    s.log.info({ instance: name, visibility: vis }, EV.paramsCleared);
    ctx.status = 204;
  });

  router.delete(`${base}/:visibility/:param`, async (ctx) => {
    const name = pathParam(ctx, 'name');
    const key = pathParam(ctx, 'param');
    const vis = visibilityOf(ctx);
    if (vis === 'secret') {
      await s.store.exclusive(name, () => {
        if (!s.vault.remove(name, key)) throw notFound('no such parameter');
      });
    } else {
      await store(s, name, vis, (values) => {
        if (!Object.hasOwn(values, key)) throw notFound('no such parameter');
        return Object.fromEntries(Object.entries(values).filter(([k]) => k !== key));
      });
    }
    s.log.info({ instance: name, visibility: vis }, EV.paramRemoved);
    ctx.status = 204;
  });
}
