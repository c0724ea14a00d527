/**
 * A hypervisor as an operator meets it, for running docs/operations.md's host steps as printed: a
 * container booted by a real systemd (test/support/nspawn.ts) inside a test network namespace
 * (with the tripwire of test/support/netns.ts; nothing reaches the machine's own namespace), its
 * /usr the machine's with a writable overlay so that `sudo npm install -g ./metad-*.tgz` installs
 * /usr/bin/metad as on a real host, a sudo user `alice` (NOPASSWD; the container's PAM stack for
 * sudo is pam_permit, standing in for the host's login), and npm pointed at a cache filled here
 * beforehand (the namespace has no network; /usr/etc/npmrc says `offline`).
 *
 * The tarballs are this checkout's build, packed with `npm pack` (as the install's first line does
 * in a fresh clone, which test/integration/npm-install.test.ts runs) under the versions asked for.
 */
import { execFile } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { hasCommand, missingCommand } from './env.js';
import { canUseNetns, createNetns, TRIP_TABLE, type Netns, type RunResult } from './netns.js';
import { bootContainer, containerMissing, type Container } from './nspawn.js';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
/** The operator's login. */
const ADMIN = 'alice';
const NPM_CACHE = '/var/cache/metad-test-npm';

/** Why such a host cannot be booted here (undefined: it can). */
export function operatorHostMissing(): string | undefined {
  const can = canUseNetns();
  if (!can.ok) return can.why;
  if (!hasCommand('npm')) return 'npm not installed';
  return (
    missingCommand([
      ['sudo', 'sudo'],
      ['useradd', 'passwd'],
      ['dnsmasq', 'dnsmasq-base'],
      ['curl', 'curl'],
    ]) ?? containerMissing()
  );
}

export interface Tarballs {
  /** metad-VERSION.tgz per version asked for. */
  readonly files: ReadonlyMap<string, string>;
  /** An npm cache holding every dependency (filled by installing the first tarball once, online). */
  readonly cache: string;
  /** The package as a clone holds it after `npm pack` (systemd/, docs/, …), for the first version. */
  readonly clone: string;
  readonly dir: string;
}

/**
 * This checkout packed as each of `versions` (package.json's version rewritten; nothing else
 * differs), and an npm cache for installing them offline.
 */
export async function packTarballs(versions: readonly string[]): Promise<Tarballs> {
  const dir = mkdtempSync(join(tmpdir(), 'metad-tarballs-'));
  chmodSync(dir, 0o755);
  try {
    const env = { ...process.env, npm_config_audit: 'false', npm_config_fund: 'false', npm_config_update_notifier: 'false' };
    const packed = (
      await run('npm', ['pack', '--ignore-scripts', '--silent', '--pack-destination', dir], { cwd: ROOT, env })
    ).stdout.trim();
    await run('tar', ['-C', dir, '-xzf', join(dir, packed)]);
    rmSync(join(dir, packed));
    const pkgDir = join(dir, 'package');
    const pkgJson = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8')) as Record<string, unknown>;
    const files = new Map<string, string>();
    for (const v of versions) {
      writeFileSync(join(pkgDir, 'package.json'), `${JSON.stringify({ ...pkgJson, version: v }, null, 2)}\n`);
      const out = (
        await run('npm', ['pack', '--ignore-scripts', '--silent', '--pack-destination', dir], { cwd: pkgDir, env })
      ).stdout.trim();
      files.set(v, join(dir, out));
    }
    const first = files.get(versions[0] ?? '') ?? '';
    // The clone: the first version's package files and its tarball (one, so `./metad-*.tgz` is it).
    const clone = join(dir, 'clone');
    mkdirSync(clone);
    await run('tar', ['-C', clone, '--strip-components=1', '-xzf', first]);
    copyFileSync(first, join(clone, first.slice(dir.length + 1)));
    rmSync(pkgDir, { recursive: true, force: true });
    const cache = join(dir, 'npm-cache');
    const prefix = join(dir, 'prefix');
    await run('npm', ['install', '-g', '--prefix', prefix, '--cache', cache, first], { env, maxBuffer: 64 << 20, timeout: 600_000 });
    rmSync(prefix, { recursive: true, force: true });
    return { files, cache, clone, dir };
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}

export interface OperatorHost {
  readonly c: Container;
  /** The container's network namespace (the hypervisor's). */
  readonly hv: Netns;
  /** A host dir the container sees at the same path (read-only), for files the test hands in. */
  readonly share: string;
  /** A script run by `alice` in a new login (her groups read afresh), in `cwd`. */
  asAdmin(script: string, cwd?: string): Promise<RunResult>;
  /** A command run by root in the container. */
  asRoot(cmd: string, ...args: string[]): Promise<RunResult>;
  /** metad's journal lines, parsed. */
  journal(): Promise<{ msg: string; [k: string]: unknown }[]>;
  destroy(): Promise<void>;
}

const SUDOERS = `Defaults env_reset
Defaults secure_path="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
root ALL=(ALL:ALL) ALL
${ADMIN} ALL=(ALL:ALL) NOPASSWD: ALL
`;
// The container's /etc is empty: the host's PAM stack for sudo is the operator's own business.
const PAM_SUDO = 'auth sufficient pam_permit.so\naccount sufficient pam_permit.so\nsession sufficient pam_permit.so\n';

export interface HostOptions {
  /** Host dirs bound read-only at the same path (tarballs, a clone). */
  readonly binds?: readonly string[];
  /** Host dirs bound writable at the same path. */
  readonly rwBinds?: readonly string[];
  /** Extra sysusers.d lines (groups, users a packaged service would create). */
  readonly sysusers?: string;
  /** Interfaces (nft patterns) the hypervisor may send on besides loopback, e.g. `md-*`. */
  readonly allowOut?: readonly string[];
  /** The npm cache of packTarballs (bound writable; npm runs offline against it), when npm runs. */
  readonly npmCache?: string;
  /** Host dirs whose contents are laid over the container's /usr (e.g. a package's extracted usr/). */
  readonly usrTrees?: readonly string[];
  /** The machine's /var (its dpkg database: a package's dependencies are met) under a writable
   * overlay: `dpkg -i` works, and changes nothing outside the container. */
  readonly dpkg?: boolean;
}

/** The machine's /var over an upper dir in `dir` (nspawn creates one missing level of an
 * overlay's mount point, and the container's / is empty: /var/lib/dpkg alone cannot be one). */
function dpkgOverlay(dir: string): readonly [string, string] {
  const upper = join(dir, 'var-upper');
  mkdirSync(join(upper, 'lib', 'dpkg'), { recursive: true, mode: 0o755 });
  // The machine's stat overrides name its groups (ssl-cert, …), which the container's own /etc
  // does not have: dpkg would refuse to run at all.
  writeFileSync(join(upper, 'lib', 'dpkg', 'statoverride'), '', { mode: 0o644 });
  return ['/var', upper];
}

export async function bootOperatorHost(o: HostOptions): Promise<OperatorHost> {
  const undo: (() => Promise<void> | void)[] = [];
  const destroy = async (): Promise<void> => {
    for (const step of undo.splice(0).reverse()) await step();
  };
  try {
    const dir = mkdtempSync(join(tmpdir(), 'metad-ophost-'));
    undo.push(() => rmSync(dir, { recursive: true, force: true }));
    chmodSync(dir, 0o755);
    const share = join(dir, 'share');
    mkdirSync(share, { mode: 0o755 });
    const upper = join(dir, 'usr-upper');
    mkdirSync(join(upper, 'etc'), { recursive: true, mode: 0o755 });
    writeFileSync(
      join(upper, 'etc', 'npmrc'),
      `cache=${NPM_CACHE}\noffline=true\nnodedir=/usr\naudit=false\nfund=false\nupdate-notifier=false\n`,
    );
    for (const tree of o.usrTrees ?? []) await run('cp', ['-a', `${tree}/.`, upper]);
    writeFileSync(join(dir, 'sudoers'), SUDOERS, { mode: 0o440 });
    writeFileSync(join(dir, 'pam-sudo'), PAM_SUDO, { mode: 0o644 });
    // Name lookups stay on the host: /etc/hosts first, and a resolver that is nobody (the container
    // would otherwise get the machine's resolv.conf and glibc's default of asking DNS first).
    writeFileSync(join(dir, 'nsswitch.conf'), 'passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n');
    writeFileSync(join(dir, 'resolv.conf'), 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n');
    writeFileSync(join(dir, 'sysusers.conf'), `u ${ADMIN} - "metad operator" /home/${ADMIN} /bin/bash\n${o.sysusers ?? ''}`);

    const hv = await createNetns('metadop');
    undo.push(() => hv.destroy());
    for (const dev of o.allowOut ?? []) {
      const r = await hv.run('nft', ['insert', 'rule', 'inet', TRIP_TABLE, 'out', 'oifname', dev, 'accept']);
      if (r.code !== 0) throw new Error(`nft: ${r.stderr}`);
    }
    const c = await bootContainer({
      netnsPath: `/run/netns/${hv.name}`,
      // nspawn grants CAP_NET_ADMIN only with networking of its own; the unit asks for it.
      capabilities: ['CAP_NET_ADMIN'],
      binds: [
        [join(dir, 'sudoers'), '/etc/sudoers'],
        [join(dir, 'pam-sudo'), '/etc/pam.d/sudo'],
        [join(dir, 'nsswitch.conf'), '/etc/nsswitch.conf'],
        [join(dir, 'resolv.conf'), '/etc/resolv.conf'],
        [join(dir, 'sysusers.conf'), '/etc/sysusers.d/metad-operator.conf'],
        [share, share],
        // Debian's alternatives (awk, editor, …) point through /etc/alternatives.
        ['/etc/alternatives', '/etc/alternatives'],
        ...(o.binds ?? []).map((b) => [b, b] as const),
      ],
      rwBinds: [...(o.npmCache === undefined ? [] : [[o.npmCache, NPM_CACHE] as const]), ...(o.rwBinds ?? []).map((b) => [b, b] as const)],
      overlays: [['/usr', upper], ...(o.dpkg ? [dpkgOverlay(dir)] : [])],
    });
    undo.push(() => c.destroy());
    const must = async (cmd: string, ...args: string[]): Promise<void> => {
      const r = await c.run(cmd, args);
      if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
    };
    await must('install', '-d', '-m', '0750', '-o', ADMIN, '-g', ADMIN, `/home/${ADMIN}`);
    // A container image's policy-rc.d (exit 101: "start no services") would keep a package's
    // maintainer scripts from starting or stopping its unit; a host has none.
    if (o.dpkg) await must('rm', '-f', '/usr/sbin/policy-rc.d');
    // sudo looks its host name up (the container's /etc is empty).
    await must('sh', '-c', 'printf "127.0.0.1 localhost\\n127.0.1.1 %s\\n" "$(hostname)" > /etc/hosts');
    const host: OperatorHost = {
      c,
      hv,
      share,
      asAdmin: (script, cwd = `/home/${ADMIN}`) =>
        c.run(
          'env',
          [`HOME=/home/${ADMIN}`, `USER=${ADMIN}`, `LOGNAME=${ADMIN}`, 'bash', '-c', `set -eo pipefail\ncd '${cwd}'\n${script}`],
          { user: ADMIN, timeoutMs: 300_000 },
        ),
      asRoot: (cmd, ...args) => c.run(cmd, args, { timeoutMs: 120_000 }),
      async journal() {
        const r = await c.run('journalctl', ['-u', 'metad', '-o', 'cat', '--no-pager']);
        return r.stdout
          .split('\n')
          .filter((l) => l.startsWith('{"'))
          .map((l) => JSON.parse(l) as { msg: string });
      },
      destroy,
    };
    return host;
  } catch (e) {
    await destroy();
    throw e;
  }
}
