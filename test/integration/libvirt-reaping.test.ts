/**
 * Issue 12 item 18, measured: how long libvirt's destroy takes depends on who reaps QEMU.
 * libvirt daemonizes QEMU, so its reaper is the nearest subreaper above libvirtd, else PID 1;
 * virDomainDestroy returns only once the killed QEMU has been reaped (it polls the pid, and a
 * zombie still answers). The same bare domain is created and destroyed under a private libvirtd
 * (test/support/libvirtd.ts) run under `tini -s` (a subreaper, as systemd is for its services'
 * orphans) and without one (the machine's PID 1 reaps). Both must destroy the domain and leave
 * no QEMU; the durations are reported (docs/benchmarks.md), not asserted.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { skipOrFail } from '../support/env.js';
import { canUseNetns, createNetns } from '../support/netns.js';
import { libvirtdMissing, netnsPids, startLibvirtd } from '../support/libvirtd.js';
import { LibvirtHypervisor, loadBinding, MISSING_BINDING } from '../../appliance/libvirt.js';
import { QEMU_X86 } from '../../appliance/domain-xml.js';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { hasCommand } from '../support/env.js';
import { REAP_PROBE, reapMs } from '../support/reap-probe.js';

const bareXml = (name: string): string =>
  `<domain type='qemu'><name>${name}</name><memory unit='MiB'>32</memory><vcpu>1</vcpu>` +
  `<os><type arch='x86_64' machine='pc'>hvm</type></os><devices><emulator>${QEMU_X86}</emulator></devices>` +
  `<on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot><on_crash>destroy</on_crash></domain>`;

const RUNS = 5;

for (const subreaper of [true, false]) {
  test(`destroy under libvirtd ${subreaper ? 'with a subreaper (tini -s)' : "without one (the machine's PID 1 reaps)"}: the domain goes, no QEMU is left`, async (t) => {
    const binding = await loadBinding().then(
      () => undefined,
      () => MISSING_BINDING,
    );
    if (skipOrFail(t, canUseNetns().why ?? libvirtdMissing() ?? binding)) return;
    const ns = await createNetns('metadtr');
    const lv = await startLibvirtd(ns, { subreaper }).catch(async (e: unknown) => {
      await ns.destroy();
      throw e;
    });
    const hv = new LibvirtHypervisor(lv.uri);
    t.after(async () => {
      await hv.close();
      await lv.stop();
      await ns.destroy();
    });
    const ms: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const name = `metadt-reap-${String(process.pid)}-${String(i)}`;
      await hv.createTransient(name, bareXml(name));
      assert.equal(await hv.state(name), 'running');
      const t0 = performance.now();
      assert.equal(await hv.destroy(name), 'destroyed');
      ms.push(performance.now() - t0);
      assert.equal(await hv.state(name), 'gone');
    }
    // libvirtd itself (and tini) are the only processes left in the namespace: no QEMU.
    const left = (await netnsPids(ns.name)).length;
    assert.ok(left <= 2, `only libvirtd (and tini) left, found ${String(left)} processes`);
    const sorted = [...ms].sort((a, b) => a - b);
    t.diagnostic(
      `destroy ${subreaper ? 'with subreaper' : 'PID 1 reaps'}: median ${sorted[Math.floor(RUNS / 2)]!.toFixed(0)} ms, ` +
        `runs ${ms.map((x) => x.toFixed(0)).join(', ')} ms`,
    );
  });
}

test("an orphan's zombie: how long until it is reaped by this machine's PID 1, and under tini -s", async (t) => {
  if (skipOrFail(t, hasCommand('tini') ? undefined : 'tini not installed; run .ci/install-deps.sh')) return;
  const run = promisify(execFile);
  const dir = await mkdtemp(join(tmpdir(), 'metad-reap-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const pidFile = join(dir, 'pid');
  const probe = async (cmd: string[]): Promise<number> => {
    const [file = 'sh', ...args] = cmd;
    return reapMs((await run(file, [...args, 'sh', '-c', REAP_PROBE, 'sh', pidFile], { timeout: 60_000 })).stdout);
  };
  const pid1: number[] = [];
  const tini: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    pid1.push(await probe(['env']));
    tini.push(await probe(['tini', '-s', '--']));
  }
  for (const x of [...pid1, ...tini]) assert.ok(Number.isFinite(x), 'the probe saw its orphan reaped');
  t.diagnostic(`zombie lifetime, PID 1 reaps: ${pid1.join(', ')} ms; tini -s reaps: ${tini.join(', ')} ms`);
});
