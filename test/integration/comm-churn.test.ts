/**
 * DHCP under registration churn (issue 13 item 4), for real in namespaces this test creates: a
 * guest sends a DHCPDISCOVER every 0.2 s (each waiting up to 3 s for its OFFER) while 1,000
 * instances with taps (veth pairs in the hypervisor namespace) are registered one by one, in
 * routed and in bridged mode. dnsmasq is never restarted (hosts reach it by SIGHUP; routed mode
 * serves every interface holding 169.254.169.254, so new taps need no restart) and no DISCOVER
 * goes unanswered. Numbers (registration time, tries) are reported, not asserted
 * (docs/benchmarks.md).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Guest } from '../support/comm-topology.js';
import { GUESTS, commBed, discoverLoop, registerGuests } from '../support/comm-harness.js';
import { until } from '../support/wait.js';

const N = 1000;
const hex = (n: number): string => n.toString(16).padStart(2, '0');

for (const mode of ['routed', 'bridged'] as const) {
  test(`${mode}: 1,000 registrations with taps restart dnsmasq 0 times and lose no DISCOVER`, async (t) => {
    const bed = await commBed(t, { guests: GUESTS.slice(0, 1).map((g) => ({ tap: g.tap, mac: g.mac })) });
    if (!bed) return;
    const { hv } = bed;
    const [guest] = bed.guests as [Guest];
    const metad = await bed.startMetad({ mode });
    await registerGuests(metad); // alpha (the looping guest) and two more
    const served = async (instance: string): Promise<boolean> => {
      const r = await metad.admin('GET', '/v1/nics');
      const nics = (r.json as { nics: { instance: string; dhcp: boolean }[] }).nics;
      return nics.find((n) => n.instance === instance)?.dhcp === true;
    };
    await until('alpha served', () => served(GUESTS[0].name));
    // The taps exist before their instances are registered (as when Ganeti starts the VMs first).
    const taps = Array.from({ length: N }, (_, i) => `ch${String(i)}`);
    const batch = taps
      .flatMap((tap) => [`link add ${tap} type veth peer name ${tap}p`, `link set ${tap}p up`, `link set ${tap} up`])
      .join('\n');
    const made = await hv.run('ip', ['-batch', '-'], { input: `${batch}\n`, timeoutMs: 120_000 });
    assert.equal(made.code, 0, made.stderr);

    const startsBefore = metad.out().split('"dnsmasq started"').length - 1;
    assert.equal(startsBefore, 1);

    const loop = discoverLoop(guest);
    const t0 = performance.now();
    for (let i = 0; i < N; i++) {
      const r = await metad.admin('PUT', `/v1/instances/churn-${String(i)}`, {
        name: `churn-${String(i)}`,
        uuid: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
        comm: {
          mac: `02:00:00:aa:${hex(i >> 8)}:${hex(i & 255)}`,
          ipv4: `169.254.${String(20 + (i >> 8))}.${String(i & 255)}`,
          tap: taps[i],
        },
      });
      assert.equal(r.status, 201, r.text);
    }
    const ms = performance.now() - t0;
    // The loop ends only once the last registration's host reached dnsmasq.
    await until('the last NIC served', () => served(`churn-${String(N - 1)}`), 60_000);
    const { tries, lost } = await loop.stop();
    const restarts = metad.out().split('"dnsmasq started"').length - 1 - startsBefore;
    t.diagnostic(
      `${mode}: ${String(N)} registrations in ${(ms / 1000).toFixed(1)} s; dnsmasq restarts ${String(restarts)}; DISCOVERs ${String(tries)}, lost ${String(lost.length)} ${JSON.stringify(lost)}`,
    );
    assert.ok(tries >= 10, `only ${String(tries)} DISCOVERs were sent`);
    assert.deepEqual(lost, [], 'DISCOVERs went unanswered');
    assert.equal(restarts, 0, 'dnsmasq was restarted');
    // Every reread was confirmed by dnsmasq (as network.dhcp.user: metad runs as root here).
    assert.doesNotMatch(metad.out(), /did not confirm rereading/);
    assert.match(metad.out(), /"user":"(dnsmasq|nobody)"/);
  });
}
