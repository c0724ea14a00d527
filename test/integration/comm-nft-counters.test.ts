/**
 * The comm network's nftables counters as metrics, for real, in the namespaces of the routed test
 * bed (test/support/comm-harness.ts): a guest that sends from an IPv4 that is not its tap's moves
 * metad_comm_dropped_packets_total{reason="spoofed"} (as the kernel's counter does); a reconcile
 * (which replaces the table whole) and a metad restart leave the count where it was; a held tap's
 * packets count as reason "held"; the set sizes and rule counts are the kernel's.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Guest } from '../support/comm-topology.js';
import { GUESTS, commBed, counter, curl, dhcp, registerGuests, type Metad } from '../support/comm-harness.js';
import { until } from '../support/wait.js';

/** The value of one series in a Prometheus text exposition (undefined: not there). */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

async function scrape(metad: Metad): Promise<string> {
  const r = await metad.admin('GET', '/v1/metrics');
  assert.equal(r.status, 200, r.text);
  return r.text;
}

const SPOOFED = 'metad_comm_dropped_packets_total{reason="spoofed"}';
const HELD = 'metad_comm_dropped_packets_total{reason="held"}';

test('nftables drop counters as metrics: a spoofed source moves them, a reconcile and a restart keep them, held taps count apart', async (t) => {
  const bed = await commBed(t);
  if (!bed) return;
  const { hv, script } = bed;
  const [ga] = bed.guests as [Guest, Guest, Guest];
  let metad = await bed.startMetad({ mode: 'routed' });
  await registerGuests(metad);
  await until('routes for all three guests', async () => {
    const routes = await hv.ip('-4', 'route', 'show', 'proto', '171');
    return GUESTS.every((g) => routes.includes(`${g.ipv4} dev ${g.tap}`));
  });

  await t.test("set sizes and rule counts are the kernel's", async () => {
    const text = await until('set sizes after the registration', async () => {
      const s = await scrape(metad);
      return sample(s, 'metad_comm_set_elements{family="inet",set="taps"}') === 3 ? s : undefined;
    });
    assert.equal(sample(text, 'metad_comm_set_elements{family="inet",set="nic4"}'), 3);
    assert.equal(sample(text, 'metad_comm_set_elements{family="inet",set="held"}'), 0);
    // Rules as `nft -a` prints them: the lines with a handle that open no block (table, chain, set, counter).
    const rules = (await hv.run('nft', ['-a', 'list', 'table', 'inet', 'metad'])).stdout
      .split('\n')
      .filter((l) => /# handle \d+$/.test(l) && !/^\s*(table|chain|set|counter) \S+ (\S+ )?\{/.test(l));
    assert.equal(sample(text, 'metad_comm_rules{family="inet"}'), rules.length, rules.join('\n'));
  });

  let spoofed = 0;
  await t.test(
    'a guest sending from an address that is not its own: the spoofed counter moves, in the kernel and the metrics',
    async () => {
      assert.equal(await dhcp(ga, script), GUESTS[0].ipv4);
      assert.equal((await curl(ga)).body, GUESTS[0].id, 'the own address works (and the neighbour entry is there)');
      const before = await counter(hv, 'inet', 'metad', 'spoofed');
      await ga.ip('addr', 'add', '169.254.9.9/16', 'dev', 'eth0');
      const r = await ga.run(
        'curl',
        ['-s', '--noproxy', '*', '--interface', '169.254.9.9', '--connect-timeout', '1', 'http://169.254.169.254/'],
        {
          timeoutMs: 10_000,
        },
      );
      assert.notEqual(r.code, 0, 'the spoofed connection got through');
      await ga.ip('addr', 'del', '169.254.9.9/16', 'dev', 'eth0');
      const kernel = await counter(hv, 'inet', 'metad', 'spoofed');
      assert.ok(kernel > before, `kernel counter ${String(before)} -> ${String(kernel)}`);
      spoofed = await until('the metric to show the drops', async () => {
        const v = sample(await scrape(metad), SPOOFED) ?? 0;
        return v >= kernel ? v : undefined;
      });
    },
  );

  await t.test('a reconcile (the table replaced whole) and a metad restart keep the count; a held tap counts as held', async () => {
    // nic down: a reconcile that replaces the table, and alpha's tap (still there) is held closed.
    assert.equal((await metad.admin('POST', '/v1/instances/alpha/nic', { tap: 'mtap1', state: 'down' })).status, 204);
    await until('mtap1 held', async () => (await hv.run('nft', ['list', 'set', 'inet', 'metad', 'held'])).stdout.includes('"mtap1"'));
    assert.ok((await counter(hv, 'inet', 'metad', 'spoofed')) >= spoofed, 'the replace zeroed the spoofed counter');
    const heldBefore = await counter(hv, 'inet', 'metad', 'held');
    assert.notEqual((await curl(ga)).code, 0, 'a held tap reached the door');
    assert.ok((await counter(hv, 'inet', 'metad', 'held')) > heldBefore, 'the held tap was not counted as held');
    await until('the held metric', async () => ((sample(await scrape(metad), HELD) ?? 0) > heldBefore ? true : undefined));

    await metad.stop();
    metad = await bed.startMetad({ mode: 'routed' });
    // After its first reconcile (which replaced the table the previous run left).
    const after = await until('the restarted daemon to reconcile and report the drops', async () => {
      const text = await scrape(metad);
      return (sample(text, 'metad_comm_reconciles_total{result="ok"}') ?? 0) >= 1 ? sample(text, SPOOFED) : undefined;
    });
    assert.ok(after >= spoofed, `after the restart: ${String(after)} < ${String(spoofed)}`);
  });
});
