/**
 * Install jobs on the admin door (docs/admin-api.md, "Install jobs"): start, status, abort,
 * list (with the Ganeti secret windows: daemon/feeds/ganeti-secrets.ts), and a watch stream (NDJSON: the record now, then every change, closed once it ended).
 * The records are the job manager's, and every record it makes or changes has passed
 * daemon/jobs/record.ts's scrubRecord: no line with a secret value the job held, no control
 * character, no hypervisor text. Records read back at start are scrubbed again (without secret values: a restart has lost them).
 */
import { PassThrough } from 'node:stream';
import type Router from '@koa/router';
import type { Context } from 'koa';
import type { Services } from '../../daemon/services.js';
import { invalid, notFound } from '../../daemon/errors.js';
import { isEnded, type JobRecord } from '../../daemon/jobs/record.js';
import type { GanetiSecretsRecord } from '../../daemon/feeds/ganeti-secrets.js';
import { readJson } from './body.js';

/** `{}` or `{"timeoutSec": N}`; an empty body is `{}`. */
async function timeoutOf(ctx: Context, limit: number): Promise<number | undefined> {
  if (!ctx.request.type && !ctx.request.length) return undefined;
  const body = await readJson(ctx, limit);
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw invalid('body must be a JSON object');
  const extra = Object.keys(body).filter((k) => k !== 'timeoutSec');
  if (extra.length > 0) throw invalid('unknown field in body', [{ path: '/', message: 'only timeoutSec is allowed' }]);
  const t = (body as { timeoutSec?: unknown }).timeoutSec;
  if (t === undefined) return undefined;
  if (typeof t !== 'number' || !Number.isInteger(t) || t < 1)
    throw invalid('timeoutSec must be a positive integer', [{ path: '/timeoutSec', message: 'positive integer' }]);
  return t;
}

export function jobRoutes(router: Router, s: Services): void {
  const mustJob = (name: string): JobRecord => {
    const r = s.jobs.status(name);
    if (!r) throw notFound('no install job for this instance');
    return r;
  };

  router.post('/instances/:name/install', async (ctx) => {
    const name = ctx.params.name ?? '';
    const timeoutSec = await timeoutOf(ctx, s.config.admin.maxBodyBytes);
    const doc = s.store.mustGet(name).doc;
    // The request's timeoutSec wins; else the instance's own install.timeoutSec (capped), else the default.
    // No hypervisor: the manager answers Unavailable with the packages or libvirt URI to fix.
    ctx.body = await s.jobs.start(name, { timeoutSec, instanceTimeoutSec: doc.install?.timeoutSec });
    ctx.status = 202;
  });

  router.get('/instances/:name/install', (ctx) => {
    ctx.body = mustJob(ctx.params.name ?? '');
  });

  const abort = (ctx: Context & { params: Record<string, string | undefined> }): void => {
    const name = ctx.params.name ?? '';
    const r = mustJob(name);
    ctx.body = isEnded(r) ? r : s.jobs.abort(name);
  };
  router.post('/instances/:name/install/abort', abort);
  router.delete('/instances/:name/install', abort);

  // Install jobs and, with the Ganeti feed, each fed instance's latest secret window (kind
  // `ganeti-secrets`: names, states and times, never a value), by instance.
  router.get('/jobs', (ctx) => {
    const all: (JobRecord | GanetiSecretsRecord)[] = [...s.jobs.list(), ...(s.ganetiSecrets?.list() ?? [])];
    ctx.body = { jobs: all.sort((a, b) => a.instance.localeCompare(b.instance)) };
  });

  router.get('/instances/:name/install/watch', (ctx) => {
    const name = ctx.params.name ?? '';
    const first = mustJob(name);
    const out = new PassThrough();
    const send = (r: JobRecord): void => {
      out.write(JSON.stringify(r) + '\n');
      if (isEnded(r)) finish();
    };
    const onChange = (r: JobRecord): void => {
      if (r.instance === name) send(r);
    };
    const finish = (): void => {
      s.jobs.off('change', onChange);
      out.end();
    };
    ctx.res.once('close', finish); // the client went away (or the answer ended)
    ctx.type = 'application/x-ndjson';
    ctx.body = out;
    s.jobs.on('change', onChange);
    send(first);
  });
}
