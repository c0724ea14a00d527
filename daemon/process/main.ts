/**
 * The process edge: opens the sockets. `runDaemon` builds the graph with createDaemon, binds the
 * admin app to its unix socket (daemon/process/admin-socket.ts), the Ganeti feed to Ganeti's config
 * socket when configured, and the guest app to its listeners, and
 * returns a handle whose `close()` shuts it all down (signals: daemon/process/signals.ts).
 */
import http from 'node:http';
import net from 'node:net';
import { unlink } from 'node:fs/promises';
import type { Logger } from 'pino';
import { createDaemon, type Daemon } from '../daemon.js';
import type { Config } from '../config/config.js';
import { EC2_METADATA_IPV6, normalizeAddress } from '../net.js';
import { EV } from '../log/events.js';
import { VERSION } from '../version.js';
import { linkLocalDoors } from '../comm/link-doors.js';
import { SocketGuard } from './socket-guard.js';
import { listenAdminSocket } from './admin-socket.js';
import { planReload, type ReloadPlan } from '../config/reload.js';

export interface Running {
  daemon: Daemon;
  adminServer: http.Server;
  guestServers: http.Server[];
  /** Addresses actually bound (port 0 resolves to a real port). */
  guestAddresses: { host: string; port: number }[];
  /** The metrics listener's address (`metrics.listen`), when one is configured. */
  metricsAddress?: { host: string; port: number };
  /** Apply a re-read configuration (SIGHUP): the live keys change now, the others are reported. */
  reload(next: Readonly<Config>): ReloadPlan;
  close(): Promise<void>;
}

function listen(server: http.Server, target: { host: string; port: number }): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    // A deep accept queue: a boot storm of a thousand guests connecting at once must not see
    // SYNs dropped (the default 511 overflowed in bench/suites/storm.ts; the kernel caps this).
    server.listen({ port: target.port, host: target.host, backlog: 4096 }, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** After the door half-closes a guest socket, the client has this long to close its side. */
const CLOSE_GRACE_MS = 1000;
/** How often the socket guard looks at the guest sockets. */
const GUARD_INTERVAL_MS = 250;

/** How each guest server takes new timeouts and caps on a configuration reload. */
const retune = new WeakMap<http.Server, (g: Readonly<Config>['guest']) => void>();

/**
 * Guest listener hardening: header/request timeouts, a global and a per-source connection cap,
 * and a socket guard (daemon/process/socket-guard.ts): no socket outlives its timeout by more than
 * CLOSE_GRACE_MS, nor a stalled answer by more than requestTimeoutMs, whatever the client does.
 */
export function createGuestServer(d: Daemon, cfg: Readonly<Config>, log: Logger): http.Server {
  const g = cfg.guest;
  const server = http.createServer(
    {
      headersTimeout: g.headersTimeoutMs,
      requestTimeout: g.requestTimeoutMs,
      keepAliveTimeout: g.keepAliveTimeoutMs,
      // How often node checks those timeouts (default 30 s): a slowloris lives at most this much longer.
      connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(g.headersTimeoutMs / 2))),
    },
    d.guestHandler,
  );
  server.maxConnections = g.maxConnections;
  server.keepAliveTimeout = g.keepAliveTimeoutMs;
  const perSource = new Map<string, number>();
  const guard = new SocketGuard<net.Socket>(CLOSE_GRACE_MS, g.requestTimeoutMs);
  let perSourceLimit = g.maxConnectionsPerSource;
  retune.set(server, (next) => {
    server.headersTimeout = next.headersTimeoutMs;
    server.requestTimeout = next.requestTimeoutMs;
    server.keepAliveTimeout = next.keepAliveTimeoutMs;
    server.maxConnections = next.maxConnections;
    perSourceLimit = next.maxConnectionsPerSource;
    guard.setStallMs(next.requestTimeoutMs);
  });
  const guestLog = d.services.guestLog;
  const sweep = setInterval(() => {
    guard.check(Date.now());
    guestLog.flush(); // the summary of a window that ended with no guest event after it
  }, GUARD_INTERVAL_MS);
  sweep.unref();
  server.once('close', () => clearInterval(sweep));
  server.on('connection', (sock) => {
    const ip = normalizeAddress(sock.remoteAddress);
    const n = (perSource.get(ip) ?? 0) + 1;
    if (n > perSourceLimit) {
      guestLog.note('guestConnCap', ip, { source: ip, limit: perSourceLimit }, log);
      sock.destroy();
      return;
    }
    perSource.set(ip, n);
    guard.add(sock);
    sock.once('close', () => {
      guard.remove(sock);
      const left = (perSource.get(ip) ?? 1) - 1;
      if (left <= 0) perSource.delete(ip);
      else perSource.set(ip, left);
    });
  });
  // A timeout or a parse error: answer 400 and half-close; the guard destroys the socket
  // CLOSE_GRACE_MS later if the client never closes its side.
  server.on('clientError', (_err, sock) => {
    if (sock.writable) sock.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    else sock.destroy();
  });
  return server;
}

/**
 * The guest door's listeners: guest.listen, plus fd00:ec2::254 (on the same port as
 * 169.254.169.254) when the comm network serves it; the anchor holds it by then.
 */
function guestTargets(cfg: Readonly<Config>): { host: string; port: number }[] {
  const out = cfg.guest.listen.map((l) => ({ host: l.host, port: l.port }));
  if (cfg.network.mode === 'routed' && cfg.network.ec2Ipv6 && !out.some((l) => l.host === EC2_METADATA_IPV6)) {
    out.push({ host: EC2_METADATA_IPV6, port: cfg.guest.listen.find((l) => l.host === '169.254.169.254')?.port ?? 80 });
  }
  return out;
}

/** The optional TCP metrics listener: `GET /metrics` and nothing else (no admin route, no guest door). */
function createMetricsServer(d: Daemon): http.Server {
  const server = http.createServer({ headersTimeout: 10_000, requestTimeout: 10_000 }, (req, res) => {
    const path = (req.url ?? '').split('?')[0];
    const metrics = d.services.metrics;
    if (path !== '/metrics' || !metrics) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('Not Found\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('Method Not Allowed\n');
      return;
    }
    metrics.exposition().then(
      (m) => res.writeHead(200, { 'content-type': m.contentType }).end(req.method === 'HEAD' ? undefined : m.text),
      () => res.writeHead(500, { 'content-type': 'text/plain' }).end('Internal Server Error\n'),
    );
  });
  server.maxConnections = 64;
  return server;
}

export async function runDaemon(cfg: Readonly<Config>, log: Logger): Promise<Running> {
  const daemon = await createDaemon(cfg, { log });
  const adminCallback = daemon.adminApp.callback();
  const adminServer = http.createServer((req, res) => void adminCallback(req, res));
  const sock = cfg.admin.socket;
  await listenAdminSocket(adminServer, sock, parseInt(cfg.admin.socketMode, 8));
  const guestServers: http.Server[] = [];
  const guestAddresses: { host: string; port: number }[] = [];
  let metricsServer: http.Server | undefined;
  let metricsAddress: { host: string; port: number } | undefined;
  try {
    await daemon.ganeti?.listen(); // Ganeti's config socket and pid file (daemon/feeds/ganeti.ts)
    for (const l of guestTargets(cfg)) {
      const server = createGuestServer(daemon, cfg, log);
      await listen(server, { host: l.host, port: l.port });
      const a = server.address() as net.AddressInfo;
      guestAddresses.push({ host: a.address, port: a.port });
      guestServers.push(server);
    }
    if (cfg.metrics.listen) {
      metricsServer = createMetricsServer(daemon);
      await listen(metricsServer, cfg.metrics.listen);
      const a = metricsServer.address() as net.AddressInfo;
      metricsAddress = { host: a.address, port: a.port };
    }
  } catch (err) {
    // Leave nothing half-open behind: no listening admin socket, no stale socket file.
    for (const s of [adminServer, ...guestServers, ...(metricsServer ? [metricsServer] : [])]) s.close();
    await unlink(sock).catch(() => undefined);
    await daemon.stop();
    throw err;
  }
  const comm = daemon.services.comm;
  const port = cfg.guest.listen.find((l) => l.host === '169.254.169.254')?.port ?? 80;
  const linkDoors = comm ? linkLocalDoors(comm, () => createGuestServer(daemon, cfg, log), port, log) : undefined;
  log.info(
    {
      version: VERSION,
      adminSocket: sock,
      guest: guestAddresses,
      ...(metricsAddress ? { metrics: metricsAddress } : {}),
      instances: daemon.services.store.size,
    },
    EV.started,
  );
  // With the comm network on and installs enabled, an operator expects installs: say at once when they cannot run.
  if (cfg.network.mode !== 'off' && cfg.appliance.enabled) {
    const installs = await daemon.services.installs?.();
    if (installs?.available === false) log.warn({ reason: installs.reason }, EV.installsUnavailable);
  }
  const close = async (): Promise<void> => {
    await linkDoors?.close();
    const all = [adminServer, ...guestServers, ...(metricsServer ? [metricsServer] : [])];
    await Promise.all(
      all.map(
        (s) =>
          new Promise<void>((resolve) => {
            s.close(() => resolve());
            s.closeAllConnections();
          }),
      ),
    );
    await daemon.stop();
    await unlink(sock).catch(() => undefined);
  };
  let running = cfg;
  const reload = (next: Readonly<Config>): ReloadPlan => {
    const plan = planReload(running, next);
    running = plan.effective;
    daemon.reconfigure(running);
    for (const s of guestServers) retune.get(s)?.(running.guest);
    return plan;
  };
  return { daemon, adminServer, guestServers, guestAddresses, ...(metricsAddress ? { metricsAddress } : {}), reload, close };
}
