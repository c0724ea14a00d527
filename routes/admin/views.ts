/**
 * What the admin door shows of an instance: the document without private/secret values and
 * IAM credentials, plus a status block with names only. Pure.
 */
import type { StoredInstance } from '../../daemon/registry/model.js';
import type { Services } from '../../daemon/services.js';
import { VERSION } from '../../daemon/version.js';

/** Job states that hold a running appliance (or one being started). */
const RUNNING = new Set(['pending', 'booting', 'running']);

/**
 * GET /v1/health: liveness, the running daemon's version (which an upgrade or rollback checks), the body limits a client must respect (metadctl checks them before
 * sending), what install runs left behind that is not removed yet (retried: daemon/jobs/leftovers.ts), the comm
 * network's mode, its last reconcile and metad's dnsmasq, and the install jobs running and queued.
 */
export async function healthOf(s: Pick<Services, 'store' | 'config' | 'leftovers' | 'installs' | 'jobs' | 'network'>) {
  const states = s.jobs.list().map((j) => j.state);
  return {
    status: 'ok' as const,
    version: VERSION,
    instances: s.store.size,
    limits: { maxBodyBytes: s.config.admin.maxBodyBytes, pipeMaxBytes: s.config.pipe.maxBytes },
    installs: (await s.installs?.()) ?? { available: false, reason: 'no install jobs in this daemon' },
    leftovers: s.leftovers?.list() ?? [],
    network: { mode: s.config.network.mode, ...(s.network?.() ?? {}) },
    jobs: { running: states.filter((st) => RUNNING.has(st)).length, queued: states.filter((st) => st === 'queued').length },
  };
}

export function summaryOf(i: StoredInstance) {
  return {
    name: i.doc.name,
    uuid: i.doc.uuid,
    hostname: i.doc.hostname ?? null,
    commIpv4: i.doc.comm.ipv4,
    commMac: i.doc.comm.mac,
    tap: i.doc.comm.tap ?? null,
    generation: i.generation,
    /** Who feeds it: `ganeti` (the Ganeti feed, daemon/feeds/ganeti.ts) or `admin` (the admin door). */
    origin: i.doc.origin ?? ('admin' as const),
    updatedAt: i.updatedAt,
  };
}

export function paramsOf(s: Pick<Services, 'vault'>, i: StoredInstance) {
  return {
    public: { ...(i.doc.params?.public ?? {}) },
    private: Object.keys(i.sensitive.private).sort(),
    secret: s.vault.info(i.doc.name),
  };
}

export function viewOf(s: Pick<Services, 'vault' | 'pipes'>, i: StoredInstance) {
  return {
    instance: i.doc,
    status: {
      createdAt: i.createdAt,
      updatedAt: i.updatedAt,
      generation: i.generation,
      params: { ...paramsOf(s, i), public: Object.keys(i.doc.params?.public ?? {}).sort() },
      iamRole: i.sensitive.iam?.role ?? null,
      password: i.sensitive.password !== undefined,
      pipe: s.pipes.sizes(i.doc.name),
    },
  };
}
