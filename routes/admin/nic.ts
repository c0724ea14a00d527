/**
 * The comm network on the admin door: `POST /v1/instances/:name/nic {"tap", "state": "up"|"down"}`
 * (idempotent; for ifup scripts, Ganeti's kvm-ifup, libvirt's qemu hook) and `GET /v1/nics`
 * (each NIC's tap, address, route, rules and DHCP host as the host holds them). 409 when the
 * comm network is off (network.mode).
 */
import type Router from '@koa/router';
import type { Services } from '../../daemon/services.js';
import type { CommController } from '../../daemon/comm/controller.js';
import { DaemonError, invalid } from '../../daemon/errors.js';
import { EV } from '../../daemon/log/events.js';
import { readJson } from './body.js';

function commOf(s: Services): CommController {
  if (!s.comm) throw new DaemonError('Conflict', 'the comm network is off (set network.mode: routed or bridged)');
  return s.comm;
}

function parseNicBody(body: unknown): { tap: string; state: 'up' | 'down' } {
  const b = (body ?? {}) as Record<string, unknown>;
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw invalid('body must be a JSON object');
  const extra = Object.keys(b).filter((k) => k !== 'tap' && k !== 'state');
  if (extra.length > 0) throw invalid('unknown key in body', [{ path: '/', message: 'only tap and state are allowed' }]);
  if (typeof b.tap !== 'string') throw invalid('tap is required', [{ path: '/tap', message: 'must be a string' }]);
  if (b.state !== 'up' && b.state !== 'down')
    throw invalid('state must be up or down', [{ path: '/state', message: 'must be up or down' }]);
  return { tap: b.tap, state: b.state };
}

export function nicRoutes(router: Router, s: Services): void {
  router.post('/instances/:name/nic', async (ctx) => {
    const name = ctx.params.name ?? ''; // validated by router.param
    const comm = commOf(s);
    const { tap, state } = parseNicBody(await readJson(ctx, s.config.admin.maxBodyBytes));
    if (state === 'up') {
      ctx.body = await comm.attach(name, tap);
      s.log.info({ instance: name, tap }, EV.nicUp);
    } else {
      await comm.detach(name, tap);
      s.log.info({ instance: name, tap }, EV.nicDown);
      ctx.status = 204;
    }
  });

  router.get('/nics', async (ctx) => {
    ctx.body = { nics: await commOf(s).list() };
  });
}
