/**
 * What metadctl refuses before (or instead of) sending, against the stub admin API
 * (test/support/admin-stub.ts): invalid instance names (exit 2 for every command), documents
 * larger than the daemon accepts (exit 2, "document larger than N bytes").
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MIN_MAX_BODY_BYTES } from '../../cli/client.js';
import { configSchema } from '../../daemon/config.js';
import { file, run, stub, useAdminStub, VIEW } from '../support/admin-stub.js';

useAdminStub();

describe('metadctl: invalid instance names', () => {
  const BAD = ['UPPER', 'a_b', 'we b', 'web-', 'a/../b', 'a..b', `${'a'.repeat(63)}.`.repeat(4) + 'abc', 'x'.repeat(64)];
  const commands = (name: string): string[][] => [
    ['show', name],
    ['remove', name],
    ['params', 'show', name],
    ['params', 'set', name, '--visibility', 'public', 'A=1'],
    ['params', 'unset', name, '--visibility', 'public', 'A'],
    ['params', 'clear', name, '--visibility', 'secret'],
    ['pipe', 'send', name, 'hi'],
    ['pipe', 'read', name],
    ['password', 'show', name],
    ['password', 'clear', name],
  ];

  it('are a usage error (exit 2) for every command, nothing is sent and the name is not echoed', async () => {
    for (const name of BAD) {
      for (const args of [...commands(name), ['patch', name, await file('p.json', '{}')]]) {
        const r = await run(args);
        assert.equal(r.code, 2, `${args.slice(0, 2).join(' ')} ${JSON.stringify(name)}: ${r.err}`);
        assert.match(r.err, /^metadctl: invalid instance name\n/);
        assert.ok(!r.err.includes(name), 'the argument is not echoed');
      }
    }
    assert.deepEqual(stub.requests, []);
  });

  it('in a registered document too', async () => {
    for (const name of BAD) {
      const r = await run(['register', await file('bad-name.json', JSON.stringify({ ...VIEW.instance, name }))]);
      assert.equal(r.code, 2, r.err);
    }
    assert.deepEqual(stub.requests, []);
  });
});

describe('metadctl: documents larger than the daemon accepts', () => {
  const big = { ...VIEW.instance, hostname: 'x'.repeat(3000) };

  it('are refused before sending when the daemon announces its limit (GET /v1/health)', async () => {
    stub.routes.set('GET /v1/health', { status: 200, json: { status: 'ok', instances: 2, limits: { maxBodyBytes: 2048, pipeMaxBytes: 1024 } } });
    for (const args of [['register', await file('big.json', JSON.stringify(big))], ['patch', 'web1', await file('big-patch.json', JSON.stringify({ hostname: big.hostname }))]]) {
      const r = await run(args);
      assert.equal(r.code, 2, r.err);
      assert.match(r.err, /^metadctl: document larger than 2048 bytes \(\d+ bytes\)\n/);
    }
    assert.deepEqual(
      stub.requests.map((q) => `${q.method} ${q.url}`),
      ['GET /v1/health', 'GET /v1/health'],
      'only the limit was asked for',
    );
  });

  it("give the same message and exit code on the daemon's 413 when it does not announce a limit", async () => {
    stub.routes.set('PUT /v1/instances/web1', { status: 413, json: { code: 'PayloadTooLarge', message: 'body larger than 2048 bytes', details: [] } });
    const r = await run(['register', await file('big2.json', JSON.stringify(big))]);
    assert.equal(r.code, 2, r.err);
    assert.match(r.err, /^metadctl: document larger than the daemon accepts \(\d+ bytes\)\n/);
  });

  it('small documents are sent without asking for the limit', async () => {
    const r = await run(['patch', 'web1', await file('small.json', '{"hostname": "h"}')]);
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(
      stub.requests.map((q) => `${q.method} ${q.url}`),
      ['PATCH /v1/instances/web1'],
    );
  });

  it('MIN_MAX_BODY_BYTES is the smallest admin.maxBodyBytes the config accepts', () => {
    assert.equal(MIN_MAX_BODY_BYTES, configSchema.properties.admin.properties.maxBodyBytes.minimum);
  });
});
