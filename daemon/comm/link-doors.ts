/**
 * IPv6 guest doors: one listener on fe80::a9fe:a9fe%TAP per live comm tap (a link-local address
 * only accepts on its own link, so a wildcard [::] listener would be the only alternative, and it
 * would expose port 80 on every host address). Opened and closed after each reconcile; a request
 * arrives as `fe80::…%TAP` and the store identifies it by the tap (daemon/registry/store.ts byAddress).
 */
import type http from 'node:http';
import type { Logger } from 'pino';
import { EV } from '../log/events.js';
import type { CommController } from './controller.js';
import { METADATA_IPV6 } from '../net.js';
import type { LiveTap } from './network.js';

export interface LinkDoors {
  /** Taps with an open listener. */
  readonly taps: ReadonlySet<string>;
  close(): Promise<void>;
}

function listen(server: http.Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port }, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

function closeServer(server: http.Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

/** Follow the controller's reconciles: a listener per live tap, none for taps that went. */
export function linkLocalDoors(comm: CommController, makeServer: () => http.Server, port: number, log: Logger): LinkDoors {
  const open = new Map<string, http.Server>();
  let chain = Promise.resolve();
  let closed = false;
  // Keyed by tap and ifindex: a tap deleted and created again under its name is a new link, and a
  // socket bound to the old one would never see its traffic.
  const sync = async (live: readonly LiveTap[]): Promise<void> => {
    const want = new Map(live.map((l) => [`${l.tap}#${String(l.ifindex)}`, l.tap]));
    for (const [key, server] of open) {
      if (want.has(key) && !closed) continue;
      open.delete(key);
      await closeServer(server);
    }
    if (closed) return;
    for (const [key, tap] of want) {
      if (open.has(key)) continue;
      const server = makeServer();
      try {
        await listen(server, `${METADATA_IPV6}%${tap}`, port);
        open.set(key, server);
      } catch (err) {
        // The tap went meanwhile, or IPv6 is off on it: the next reconcile tries again.
        log.warn({ tap, code: (err as NodeJS.ErrnoException).code }, EV.commLinkDoorFailed);
      }
    }
  };
  const onReconciled = (live: readonly LiveTap[]): void => {
    chain = chain.then(() => sync(live)).catch(() => undefined);
  };
  comm.on('reconciled', onReconciled);
  onReconciled(comm.liveTaps);
  return {
    get taps() {
      return new Set([...open.keys()].map((k) => k.slice(0, k.lastIndexOf('#'))));
    },
    async close() {
      closed = true;
      comm.off('reconciled', onReconciled);
      onReconciled([]);
      await chain;
    },
  };
}
