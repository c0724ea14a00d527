#!/usr/bin/env -S node --max-semi-space-size=2
/**
 * `metad`: the daemon's entry point. `metad serve [--config FILE] [--demo]` runs it,
 * `metad check-config FILE` validates a config and prints the effective one (defaults filled).
 * The one daemon module that reads process.env (config gets it as a value). The shebang's
 * --max-semi-space-size=2 keeps the young generation small: loading 10k state files otherwise
 * leaves ~20 MiB of retained semi-space (RSS 115 -> 94 MiB at 10k instances, guest throughput
 * unchanged; bench/suites/registry.ts).
 */
// First: from here on SIGUSR1 can never open node's inspector (daemon/process/no-inspector.ts).
import './process/no-inspector.js';
// Then: a SIGHUP during the start is ignored, not fatal (daemon/process/hold-sighup.ts).
import './process/hold-sighup.js';
import { accessSync, constants, existsSync, realpathSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Command, CommanderError, Option } from 'commander';
import { ConfigError, loadConfig, type Config } from './config/config.js';
import { createLogger } from './log/logger.js';
import { runDaemon } from './process/main.js';
import { handleSignals } from './process/signals.js';
import { notifyReady } from './process/notify.js';
import { MkdirError } from './mkdirs.js';
import { metricsReference } from './metrics/catalogue.js';
import { LOCK_FILE, lockStateDir, StateDirBusy } from './process/state-lock.js';
import { demoBanner, demoConfig, registerDemo } from './process/demo.js';
import { VERSION } from './version.js';
import { instanceSchema } from './registry/model.js';
import { EV, loggingDoc } from './log/events.js';
import { configReference } from './config/doc.js';
import { networkPreflight } from './comm/preflight.js';
import { teardownCommNetwork } from './comm/teardown.js';
import { appliancePreflight, installsOff } from './jobs/preflight.js';
import { buildCurrentAppliance } from './jobs/image-cache.js';
import { loadBinding } from '../appliance/libvirt.js';
import { buildInstallImage } from '../appliance/image.js';

/** The `metad` command tree; actions record their exit code in `state` (docs/man/metad.8 comes from the same tree). */
export function metadProgram(state: { code: number } = { code: 0 }): Command {
  const program = new Command('metad')
    .description('Hypervisor-side instance metadata daemon (EC2 IMDS, OpenStack, Ganeti)')
    .version(VERSION)
    .exitOverride()
    .showHelpAfterError();
  program
    .command('serve')
    .description('run the daemon in the foreground (logs JSON to stdout)')
    .option('-c, --config <file>', 'config file (JSON or YAML); env METAD_CONFIG')
    .option('--demo', 'quick start: loopback guest door, temp state dir, a sample instance')
    .option('--port <port>', 'guest port for --demo (0: any free port)', '8169')
    .addHelpText(
      'after',
      '\nEnvironment: METAD_CONFIG, METAD_STATE_DIR, METAD_KEY_FILE, METAD_ADMIN_SOCKET, METAD_LOG_LEVEL\n\nExamples:\n  metad serve --config /etc/metad/config.yaml\n  metad serve --demo',
    )
    .action(async (opts: { config?: string; demo?: boolean; port: string }) => {
      state.code = await serve(opts);
    });
  program
    .command('check-config')
    .description('validate a config file and print the effective configuration')
    .argument('<file>', 'config file (JSON or YAML)')
    .action(async (file: string) => {
      try {
        const cfg = loadChecked({ file });
        const access = accessProblems(cfg);
        if (access.length > 0) throw new ConfigError(access);
        // Install appliances: warnings (metadata still works without them; installs would fail),
        // and none on a host that never installs.
        for (const w of appliancePreflight(cfg)) process.stderr.write(`metad: warning: ${w}\n`);
        if (installsOff(cfg) === undefined) {
          const missing = await loadBinding().then(
            () => undefined,
            (e: unknown) => (e instanceof Error ? e.message : String(e)),
          );
          if (missing !== undefined) process.stderr.write(`metad: warning: installs unavailable: ${missing}\n`);
        }
        process.stdout.write(`${JSON.stringify(cfg, null, 2)}\n`);
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        process.stderr.write(`metad: ${err.message}\n`);
        state.code = 2;
      }
    });
  const appliance = program.command('appliance').description('install appliances');
  appliance
    .command('build')
    .description('build the install appliance into /appliance/cacheDir and make it the current one (appliance/build.sh)')
    .addOption(
      new Option(
        '--variant <name>',
        "busybox: the kernel and initramfs (seconds); debian: also the Debian root disk the 'debian' variant runs OS scripts in (appliance/build-debian.sh: mmdebstrap from this host's apt sources, a few minutes; made current as <cacheDir>/current-debian)",
      )
        .choices(['busybox', 'debian'])
        .default('busybox'),
    )
    .option(
      '--manifest <file>',
      "with --variant debian: rebuild another build's Debian root from its manifest.json (its suite, every package at the version listed; the apt sources must still have them)",
    )
    .option('-c, --config <file>', 'config file (JSON or YAML); env METAD_CONFIG')
    .addHelpText(
      'after',
      '\nExamples:\n  sudo metad appliance build\n  sudo metad appliance build --variant debian\n  sudo metad appliance build --variant debian --manifest /srv/metad/debian-manifest.json',
    )
    .action(async (opts: { config?: string; variant: 'busybox' | 'debian'; manifest?: string }) => {
      if (opts.manifest !== undefined && opts.variant !== 'debian') {
        process.stderr.write('metad: --manifest goes with --variant debian\n');
        state.code = 2;
        return;
      }
      const manifest = opts.manifest === undefined ? undefined : resolve(opts.manifest);
      state.code = await applianceTool(opts, (cfg) => buildCurrentAppliance(cfg.appliance.cacheDir, opts.variant, manifest));
    });
  appliance
    .command('install-image')
    .description(
      "write the appliance as a bootable raw disk image for Ganeti's helper VM (gnt-cluster modify --install-image); builds the appliance first when needed (appliance/install-image.sh)",
    )
    .requiredOption('-o, --out <file>', 'the image file to write (replaced atomically)')
    .option(
      '--nic <name>',
      "the comm NIC inside the helper VM: an interface name such as eth1, or 'last' (Ganeti puts the comm NIC last)",
      'last',
    )
    .option('-c, --config <file>', 'config file (JSON or YAML); env METAD_CONFIG')
    .addHelpText(
      'after',
      '\nExamples:\n  sudo metad appliance install-image --out /srv/ganeti/metad-install.img\n  sudo gnt-cluster modify --install-image=/srv/ganeti/metad-install.img',
    )
    .action(async (opts: { config?: string; out: string; nic: string }) => {
      state.code = await applianceTool(opts, async (cfg) =>
        buildInstallImage(await buildCurrentAppliance(cfg.appliance.cacheDir), resolve(opts.out), opts.nic),
      );
    });
  program
    .command('network')
    .description('the comm network on this host')
    .command('teardown')
    .description(
      'remove what the comm network leaves when metad stops: the anchor or bridge, its nftables tables, its routes (metad must be stopped)',
    )
    .option('-c, --config <file>', 'config file (JSON or YAML); env METAD_CONFIG')
    .addHelpText('after', '\nExamples:\n  sudo systemctl stop metad && sudo metad network teardown --config /etc/metad/config.yaml')
    .action(async (opts: { config?: string }) => {
      state.code = await teardown(opts);
    });
  program
    .command('log-events')
    .description('print the catalogue of log messages and their fields (docs/logging.md)')
    .action(() => {
      process.stdout.write(loggingDoc());
    });
  program
    .command('metrics-reference')
    .description('print the catalogue of Prometheus metrics (docs/metrics.md)')
    .action(() => {
      process.stdout.write(metricsReference());
    });
  program
    .command('config-reference')
    .description('print the reference of every configuration key (docs/configuration.md)')
    .action(() => {
      process.stdout.write(configReference());
    });
  program
    .command('schema')
    .description('print the JSON Schema of an instance document (docs/instance.schema.json)')
    .action(() => {
      process.stdout.write(`${JSON.stringify(instanceSchema, null, 2)}\n`);
    });
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const state = { code: 0 };
  try {
    await metadProgram(state).parseAsync(argv, { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    throw err;
  }
  return state.code;
}

/**
 * The configuration as `serve` starts with it and `check-config` judges it: the file, then what
 * the comm network needs on this host (tools, CAP_NET_ADMIN). Both exit 2 on a problem, and exit
 * 2 is what the unit's RestartPreventExitStatus keeps from restarting (a failing ExecStartPre
 * check would be restarted for ever: the exemption only applies to the main process).
 */
/**
 * What the user running check-config could not do that `serve` needs (run check-config as the
 * daemon's user to see it): write the state dir (or create it), read the key file. Ownership and
 * mode are the usual cause: say which path and what to run.
 */
function accessProblems(cfg: Readonly<Config>): string[] {
  const uid = String(process.getuid?.() ?? '?');
  const fix = `(chown -R <the daemon's user>: on it; check-config run by that user checks it)`;
  const out: string[] = [];
  let dir = cfg.stateDir;
  while (!existsSync(dir) && dirname(dir) !== dir) dir = dirname(dir); // the nearest part that exists
  try {
    accessSync(dir, constants.W_OK | constants.X_OK);
  } catch {
    out.push(
      `/stateDir: ${dir === cfg.stateDir ? cfg.stateDir : `${dir} (to create ${cfg.stateDir})`} is not writable by this user (uid ${uid}) ${fix}`,
    );
  }
  const key = cfg.keyFile ?? join(cfg.stateDir, 'private.key');
  if (existsSync(key)) {
    try {
      accessSync(key, constants.R_OK);
    } catch {
      out.push(`${cfg.keyFile === undefined ? '/stateDir' : '/keyFile'}: ${key} is not readable by this user (uid ${uid}) ${fix}`);
    }
  }
  return out;
}

function loadChecked(source: Parameters<typeof loadConfig>[0]): Readonly<Config> {
  const cfg = loadConfig(source, process.env);
  const network = networkPreflight(cfg);
  if (network.length > 0) throw new ConfigError(network);
  return cfg;
}

/** The config a one-shot command (appliance build, network teardown) runs with; undefined (and said) when invalid. */
function toolConfig(opts: { config?: string }): Readonly<Config> | undefined {
  try {
    return loadConfig({ file: opts.config ?? (process.env.METAD_CONFIG || undefined) }, process.env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`metad: ${err.message}\n`);
    return undefined;
  }
}

/**
 * An `appliance` subcommand: the config (2 when it is invalid), then `run`, whose result (a path)
 * goes to stdout; a failure is one line on stderr and 1.
 */
async function applianceTool(opts: { config?: string }, run: (cfg: Readonly<Config>) => Promise<string>): Promise<number> {
  const cfg = toolConfig(opts);
  if (cfg === undefined) return 2;
  try {
    process.stdout.write(`${await run(cfg)}\n`);
    return 0;
  } catch (err) {
    process.stderr.write(`metad: ${(err as Error).message}\n`);
    return 1;
  }
}

/** `metad network teardown`: only while no daemon holds the state dir (it would set it all up again). */
async function teardown(opts: { config?: string }): Promise<number> {
  const cfg = toolConfig(opts);
  if (cfg === undefined) return 2;
  let lock;
  try {
    // Only a lock file a daemon made: one created here (root's, 0600) would lock metad's own user out.
    if (existsSync(join(cfg.stateDir, LOCK_FILE))) lock = lockStateDir(cfg.stateDir);
  } catch (err) {
    const why = err instanceof StateDirBusy ? `metad is running (${err.message}): stop it first` : (err as Error).message;
    process.stderr.write(`metad: ${why}\n`);
    return 1;
  }
  try {
    for (const line of await teardownCommNetwork(cfg)) process.stdout.write(`${line}\n`);
    return 0;
  } catch (err) {
    process.stderr.write(`metad: network teardown: ${(err as Error).message}\n`);
    return 1;
  } finally {
    lock?.release();
  }
}

async function serve(opts: { config?: string; demo?: boolean; port: string }): Promise<number> {
  const port = Number(opts.port);
  const file = opts.config ?? process.env.METAD_CONFIG;
  // How the configuration is read, at start and again on SIGHUP (the demo's temp dir is made once).
  const demo = opts.demo ? demoConfig(port) : undefined;
  const source = demo ? { raw: demo } : { file: file || undefined };
  const reread = (): Readonly<Config> => loadConfig(source, process.env);
  let cfg;
  try {
    cfg = loadChecked(source);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`metad: ${err.message}\n`);
    return 2;
  }
  const log = createLogger({ level: cfg.log.level });
  try {
    const running = await runDaemon(cfg, log);
    handleSignals(running, log, reread);
    if (opts.demo) {
      await registerDemo(running.daemon.services, log);
      process.stderr.write(demoBanner(cfg.admin.socket, running.guestAddresses[0]?.port ?? port));
    }
    notifyReady(process.env, log);
    return await new Promise<number>(() => undefined); // runs until a signal exits the process
  } catch (err) {
    log.fatal({ err }, EV.startFailed);
    log.flush();
    process.stderr.write(`metad: cannot start: ${(err as Error).message}${startHint(err)}\n`);
    return 1;
  }
}

/** What to do about the usual start failures (said once, on stderr). */
function startHint(err: unknown): string {
  if (err instanceof MkdirError) return "\n  hint: stateDir (and the admin socket's directory) must be creatable on a writable file system";
  if (err instanceof StateDirBusy)
    return '\n  hint: another metad runs on this state dir (one daemon per state dir); stop it first, or give this one its own stateDir';
  const e = err as NodeJS.ErrnoException & { address?: string; port?: number };
  switch (e.code) {
    case 'EADDRNOTAVAIL':
      return `\n  hint: ${e.address ?? 'the guest address'} is not on any interface here; the comm network must add it (or set guest.listen)`;
    case 'EACCES':
      return e.port !== undefined && e.port < 1024
        ? `\n  hint: port ${e.port} needs root or CAP_NET_BIND_SERVICE (the systemd unit grants it)`
        : `\n  hint: ${e.path === undefined ? '' : `${e.path} is not accessible to this user (uid ${String(process.getuid?.() ?? '?')}): `}the state dir, the key file and the socket directory must belong to the daemon's user (e.g. chown -R metad: /var/lib/metad; check-config run as that user checks them)`;
    case 'EADDRINUSE':
      return `\n  hint: something else already listens on ${e.address ?? ''}${e.port === undefined ? '' : `:${e.port}`}`;
    default:
      return '';
  }
}

const self = process.argv[1] ? pathToFileURL(realpathSync(process.argv[1])).href : '';
if (import.meta.url === self) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`metad: ${(err as Error).stack ?? String(err)}\n`);
      process.exit(1);
    },
  );
}
