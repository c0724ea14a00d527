/**
 * What metadctl refuses before (or instead of) sending, against the stub admin API
 * (test/support/admin-stub.ts): invalid instance names (exit 2 for every command), documents
 * larger than the daemon accepts (exit 2, "document larger than N bytes").
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MIN_MAX_BODY_BYTES } from '../../cli/client.js';
import { configSchema } from '../../daemon/config/schema.js';
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
    stub.routes.set('GET /v1/health', {
      status: 200,
      json: { status: 'ok', instances: 2, limits: { maxBodyBytes: 2048, pipeMaxBytes: 1024 } },
    });
    for (const args of [
      ['register', await file('big.json', JSON.stringify(big))],
      ['patch', 'web1', await file('big-patch.json', JSON.stringify({ hostname: big.hostname }))],
    ]) {
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
    stub.routes.set('PUT /v1/instances/web1', {
      status: 413,
      json: { code: 'PayloadTooLarge', message: 'body larger than 2048 bytes', details: [] },
    });
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

describe('metadctl: no user-supplied value reaches stderr (positions and field paths only)', () => {
  const SECRET = 'hunter2';
  const clean = (r: { out: string; err: string }, what: string): void => {
    assert.ok(!r.out.includes(SECRET) && !r.err.includes(SECRET), `${what}: ${r.err}`);
  };

  it('malformed JSON and YAML documents: line and column, never the text', async () => {
    const cases: [string, string, RegExp][] = [
      [
        'bad.json',
        `{"name":"web1","params":{"secret":{"PASSWORD":${SECRET}}}}`,
        /bad\.json is not valid JSON: line 1, column 47: invalid symbol\n/,
      ],
      ['bad2.json', `{\n  "name": "web1",\n  "params": {"secret": {"PASSWORD": "${SECRET}`, /line 3, column \d+: unexpected end of string/],
      ['bad3.json', `{"params": {"secret": {"PASSWORD": "${SECRET}"}}}}}`, /line 1, column \d+: end of file expected/],
      [
        'bad4.yaml',
        `{"params": {"secret": {"PASSWORD": "${SECRET}"}}}}}`,
        /not valid JSON or YAML\n {2}as JSON: line 1, column \d+: end of file expected\n {2}as YAML: line 1, column \d+: /,
      ],
      [
        'bad5.yaml',
        `name: web1\nparams:\n  secret:\n    PASSWORD: ${SECRET}\n   - ${SECRET}\n`,
        /not valid JSON or YAML\n {2}as YAML: line \d+, column \d+: [a-z ]+\n/,
      ],
      ['bad6.yaml', `name: web1\nparams: {secret: {PASSWORD: *${SECRET}}}\n`, /metadctl: /],
      ['bad7.yaml', `name: web1\nparams: {secret: {PASSWORD: "${SECRET}\n`, /as YAML: line \d+, column \d+/],
    ];
    for (const [name, text, want] of cases) {
      for (const args of [
        ['register', await file(name, text)],
        ['patch', 'web1', await file(name, text)],
      ]) {
        const r = await run(args);
        assert.equal(r.code, 2, `${name}: ${r.err}`);
        assert.match(r.err, want, name);
        clean(r, name);
      }
      // On stdin (no .json name) a text may be valid YAML after all (bad.json is): then it is sent.
      clean(await run(['register', '-'], { stdin: text }), `${name} on stdin`);
    }
  });

  it('params set: a bad assignment is named by its position', async () => {
    for (const [args, want] of [
      [[SECRET], /^metadctl: assignment 1: expected KEY=VALUE/],
      [['A=1', SECRET], /^metadctl: assignment 2: expected KEY=VALUE/],
      [[`=${SECRET}`], /^metadctl: assignment 1: expected KEY=VALUE/],
      [[`PW:${SECRET}=x`], /^metadctl: assignment 1: invalid parameter name\n/],
      [[`${SECRET} x=1`], /^metadctl: assignment 1: invalid parameter name\n/],
    ] as [string[], RegExp][]) {
      const r = await run(['params', 'set', 'web1', '--visibility', 'secret', ...args]);
      assert.equal(r.code, 2, r.err);
      assert.match(r.err, want);
      clean(r, args.join(' '));
    }
    assert.deepEqual(stub.requests, []);
  });

  it('bad option values, unknown options and commands are not echoed', async () => {
    for (const args of [
      ['params', 'set', 'web1', '--visibility', 'secret', '--ttl', SECRET, 'A=1'],
      ['params', 'set', 'web1', '--visibility', SECRET, 'A=1'],
      ['pipe', 'read', 'web1', '--wait', SECRET],
      [`--password=${SECRET}`, 'list'],
      [`-${SECRET}`, 'list'],
      [SECRET],
      ['params', SECRET],
    ]) {
      const r = await run(args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.err}`);
      assert.match(r.err, /^metadctl: /);
      clean(r, args.join(' '));
    }
    assert.deepEqual(stub.requests, []);
  });
});
