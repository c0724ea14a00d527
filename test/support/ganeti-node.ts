/**
 * A Ganeti node's network side for tests, with Ganeti's own code: a mount namespace where
 * /usr/lib/ganeti holds Debian's scripts (kvm-ifup, net-common) and /etc is an overlay whose
 * writes land in the test's dir (the machine's /etc/ganeti is never written), a kvm-ifup-os in
 * /etc/ganeti (metad's hook, or Ganeti's own for a test that installs metad's by docs/ganeti.md's
 * step), metadctl on the node daemon's PATH, and test/support/ganeti_ifup.py
 * (hv_base.GenerateTapName, hv_kvm's _ConfigureNIC) run there inside the test's "hypervisor"
 * network namespace. Used by ganeti-ifup and ganeti-helper-vm.
 */
import assert from 'node:assert/strict';
import { chmodSync, copyFileSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GANETI_PYTHONPATH, GANETI_SCRIPTS } from './ganeti.js';
import type { RunResult } from './netns.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const DIST = fileURLToPath(new URL('../../', import.meta.url));
/** metad's comm NIC hook. */
const METAD_HOOK = join(ROOT, 'ganeti', 'kvm-ifup-os');
const IFUP_PY = join(ROOT, 'test', 'support', 'ganeti_ifup.py');

/** Runs its arguments in a private mount namespace: Ganeti's scripts at /usr/lib/ganeti, the node's /etc/ganeti. */
const NODE_SH = `#!/bin/bash
set -e
node=$1
shift
mount -t overlay overlay -o "lowerdir=$node/lib:/usr/lib" /usr/lib
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$node/etc-up,workdir=$node/etc-work" /etc
exec "$@"
`;

interface IfupAnswer {
  ok: boolean;
  error?: string;
  output?: string;
  tap?: string;
}

/** Where ganeti_ifup.py runs: `run(cmd, args, opts)` inside the hypervisor network namespace. */
interface Runner {
  run(cmd: string, args: readonly string[], opts: { timeoutMs: number; input?: string }): Promise<RunResult>;
}

export interface GanetiNode {
  /** The node's directory: `etc-up/` is the upper layer of its /etc. */
  readonly dir: string;
  /** Runs `args` in the node's mount namespace, inside the hypervisor network namespace. */
  run(args: string[], input?: string): Promise<RunResult>;
  /** Ganeti's code (ganeti_ifup.py) with the node daemon's environment; `adminSocket` replaces metad's. */
  ganeti(op: Record<string, unknown>, adminSocket?: string): Promise<IfupAnswer>;
  /** hv_base.GenerateTapName(): the name of the next communication tap. */
  tapname(): Promise<string | undefined>;
  /** Ganeti's _ConfigureNIC for NIC `seq` of `instance` on `tap`: kvm-ifup, which sources the hook. */
  ifup(instance: Record<string, unknown>, seq: number, tap: string, network: Record<string, unknown>): Promise<IfupAnswer>;
}

/**
 * A node under `<dir>/node` whose hook talks to metad's admin socket `adminSocket`; /etc/ganeti
 * starts with metad's kvm-ifup-os, or with Ganeti's own (`hook: 'ganeti'`, as on a node that ran it).
 */
export function ganetiNode(ns: Runner, dir: string, adminSocket: string, hook: 'metad' | 'ganeti' = 'metad'): GanetiNode {
  const node = join(dir, 'node');
  for (const d of ['lib', 'etc-up/ganeti', 'etc-work', 'bin']) mkdirSync(join(node, d), { recursive: true });
  symlinkSync(GANETI_SCRIPTS, join(node, 'lib', 'ganeti'));
  copyFileSync(hook === 'metad' ? METAD_HOOK : join(GANETI_SCRIPTS, 'kvm-ifup-os'), join(node, 'etc-up', 'ganeti', 'kvm-ifup-os'));
  chmodSync(join(node, 'etc-up', 'ganeti', 'kvm-ifup-os'), 0o755);
  writeFileSync(join(node, 'bin', 'metadctl'), `#!/bin/sh\nexec '${process.execPath}' '${join(DIST, 'cli', 'metadctl.js')}' "$@"\n`);
  chmodSync(join(node, 'bin', 'metadctl'), 0o755);
  const nodeSh = join(node, 'node.sh');
  writeFileSync(nodeSh, NODE_SH, { mode: 0o755 });
  const run = (args: string[], input?: string): Promise<RunResult> =>
    ns.run('unshare', ['-m', 'bash', nodeSh, node, ...args], { timeoutMs: 120_000, ...(input === undefined ? {} : { input }) });
  const ganeti = async (op: Record<string, unknown>, socket = adminSocket): Promise<IfupAnswer> => {
    const env = [
      `PATH=${join(node, 'bin')}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`,
      `PYTHONPATH=${GANETI_PYTHONPATH}`,
      `METAD_ADMIN_SOCKET=${socket}`,
    ];
    // The node's hook must be metad's: Ganeti's own would write /var/run/ganeti and start a dnsmasq.
    const guard = `cmp -s /etc/ganeti/kvm-ifup-os '${METAD_HOOK}' || { echo 'not metad hook' >&2; exit 3; }; exec env -i ${env.join(' ')} /usr/bin/python3 '${IFUP_PY}'`;
    const r = await run(['bash', '-c', guard], JSON.stringify(op));
    assert.equal(r.code, 0, `ganeti_ifup.py: ${r.stderr}`);
    return JSON.parse(r.stdout.trim().split('\n').pop() ?? '') as IfupAnswer;
  };
  return {
    dir: node,
    run,
    ganeti,
    tapname: async () => (await ganeti({ op: 'tapname' })).tap,
    ifup: (instance, seq, tap, network) => ganeti({ op: 'ifup', instance, seq, tap, network }),
  };
}
