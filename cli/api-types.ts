/**
 * The admin API's JSON, as types derived from the admin door's own view functions
 * (routes/admin/views.ts), so that the client and metadctl's output cannot drift from what
 * the daemon sends. Types only: nothing of the daemon is loaded at run time.
 */
import type { healthOf, paramsOf, summaryOf, viewOf } from '../routes/admin/views.js';

/** GET /v1/instances: one row. */
export type InstanceSummary = ReturnType<typeof summaryOf>;
/** GET/PUT/PATCH /v1/instances/{name}. */
export type InstanceView = ReturnType<typeof viewOf>;
/** GET /v1/instances/{name}/params (and the PUT/PATCH answers). */
export type ParamsView = ReturnType<typeof paramsOf>;
/** One secret of a ParamsView: name, state, expiry, claim. */
export type SecretInfo = ParamsView['secret'][number];
/** GET /v1/health. */
export type Health = Awaited<ReturnType<typeof healthOf>>;
export interface InstanceList {
  instances: InstanceSummary[];
}

/** The body of PUT/PATCH /v1/instances/{name}/params/{visibility}. */
export interface ParamsWrite {
  values: Record<string, string | null>;
  ttlSec?: number;
  claimOnce?: boolean;
}

/** An install job record (POST/GET /v1/instances/{name}/install, GET /v1/jobs, the watch stream). */
export type { JobRecord } from '../daemon/jobs/record.js';
export type { GanetiSecretsRecord } from '../daemon/feeds/ganeti-secrets.js';
