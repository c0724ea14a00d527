/**
 * metadctl against a stub admin API (test/support/admin-stub.ts): what each subcommand sends,
 * the exit codes and the human output.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { file, jsonBody, only, PEM, run, stub, useAdminStub, UUID, VIEW, type Reply } from '../support/admin-stub.js';

useAdminStub();

describe('metadctl register', () => {
  const doc = { name: 'web1', uuid: UUID, comm: { mac: '52:54:00:12:34:56', ipv4: '10.0.0.5' } };

  it('PUTs a JSON file under the name it holds and says "registered" on 201', async () => {
    const r = await run(['register', await file('web1.json', JSON.stringify(doc))]);
    assert.equal(r.code, 0, r.err);
    const req = only();
    assert.equal(req.method, 'PUT');
    assert.equal(req.url, '/v1/instances/web1');
    assert.equal(req.contentType, 'application/json');
    assert.deepEqual(jsonBody(req), doc);
    assert.equal(r.out, 'registered web1\n');
  });

  it('says "replaced" on 200 and reads YAML from stdin with -', async () => {
    stub.routes.set('PUT /v1/instances/web1', { status: 200, json: VIEW });
    const yaml = 'name: web1\nuuid: 6f1c2a4e-8b3d-4c5e-9f10-1a2b3c4d5e6f\ncomm:\n  mac: 52:54:00:12:34:56\n  ipv4: 10.0.0.5\n';
    const r = await run(['register', '-'], { stdin: yaml });
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(jsonBody(only()), doc); // the MAC stays a string (YAML 1.2 core schema)
    assert.equal(r.out, 'replaced web1\n');
  });

  it('prints the raw View with --json (also after the subcommand)', async () => {
    const r = await run(['register', await file('web1b.json', JSON.stringify(doc)), '--json']);
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(JSON.parse(r.out), VIEW);
  });

  it('exits 2 on invalid YAML without sending anything', async () => {
    const r = await run(['register', await file('bad.yaml', 'name: web1\ncomm: [unclosed\n')]);
    assert.equal(r.code, 2);
    assert.equal(stub.requests.length, 0);
    assert.match(r.err, /^metadctl: .*bad\.yaml is not valid JSON or YAML\n/);
  });

  it('exits 2 on an unreadable file, a document without name, or a list', async () => {
    assert.equal((await run(['register', join(stub.dir, 'missing.yaml')])).code, 2);
    const noName = await run(['register', await file('noname.yaml', 'uuid: x\n')]);
    assert.equal(noName.code, 2);
    assert.match(noName.err, /has no "name"/);
    assert.equal((await run(['register', await file('list.yaml', '- a\n- b\n')])).code, 2);
    assert.equal(stub.requests.length, 0);
  });

  it('exits 2 on a bad file even when the socket is missing', async () => {
    const r = await run(['--socket', join(stub.dir, 'none.sock'), 'register', await file('bad2.yaml', '{')], { noSocket: true });
    assert.equal(r.code, 2);
  });
});

describe('metadctl connection and usage errors', () => {
  it('exits 3 when the socket does not exist, naming it and the ways to pick another', async () => {
    const missing = join(stub.dir, 'missing.sock');
    const r = await run(['--socket', missing, 'health'], { noSocket: true });
    assert.equal(r.code, 3);
    assert.ok(r.err.startsWith(`metadctl: cannot connect to ${missing}: no such socket\n`), r.err);
    assert.match(r.err, /--socket/);
    assert.match(r.err, /METAD_ADMIN_SOCKET/);
  });

  it('uses METAD_ADMIN_SOCKET (as metad does) when --socket is not given, then the deprecated METAD_SOCKET, then /run/metad/admin.sock', async () => {
    const r = await run(['health'], { noSocket: true, env: { METAD_ADMIN_SOCKET: stub.socket } });
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out, 'ok (2 instances)\n');
    const both = await run(['health'], {
      noSocket: true,
      env: { METAD_ADMIN_SOCKET: stub.socket, METAD_SOCKET: join(stub.dir, 'old.sock') },
    });
    assert.equal(both.code, 0, 'METAD_ADMIN_SOCKET wins over the alias');
    const alias = await run(['health'], { noSocket: true, env: { METAD_SOCKET: stub.socket } });
    assert.equal(alias.code, 0, alias.err);
    const d = await run(['health'], { noSocket: true, env: { METAD_ADMIN_SOCKET: '' } });
    assert.match(d.err, /\/run\/metad\/admin\.sock/);
  });

  it('exits 2 on unknown commands, missing arguments and bad option values', async () => {
    for (const args of [
      ['frobnicate'],
      ['show'],
      ['params', 'set', 'web1', 'A=1'],
      ['params', 'set', 'web1', '--visibility', 'hidden', 'A=1'],
      ['pipe', 'read', 'web1', '--wait', '61'],
      ['show', 'a', 'b'],
      [],
    ]) {
      const r = await run(args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.err}`);
    }
    assert.equal(stub.requests.length, 0);
  });

  it('--help and --version exit 0; the root help documents the exit codes', async () => {
    const h = await run(['--help']);
    assert.equal(h.code, 0);
    assert.match(h.out, /Exit codes:\n {2}0 {2}success\n {2}1 .*\n {2}2 .*\n {2}3 .*\n {2}4 /);
    const sub = await run(['params', 'set', '--help']);
    assert.equal(sub.code, 0);
    assert.match(sub.out, /Examples:/);
    assert.match(sub.out, /shell history/);
    const v = await run(['--version']);
    assert.equal(v.code, 0);
    assert.match(v.out, /^\d+\.\d+\.\d+/);
  });

  it('exits 4 on 404 and prints the message', async () => {
    const r = await run(['show', 'nope']);
    assert.equal(r.code, 4);
    assert.equal(r.err, 'metadctl: no instance named nope\n');
    assert.equal(r.out, '');
  });

  it('exits 1 on other errors and prints each detail; with --json the error body goes to stdout', async () => {
    const err = {
      code: 'InvalidInput',
      message: 'invalid instance document',
      details: [
        { path: '/comm/mac', message: 'must match pattern' },
        { path: '', message: 'must have required property uuid' },
      ],
    };
    stub.routes.set('PATCH /v1/instances/web1', { status: 400, json: err });
    const r = await run(['patch', 'web1', '-'], { stdin: '{"comm": {"mac": "x"}}' });
    assert.equal(r.code, 1);
    assert.equal(
      r.err,
      'metadctl: invalid instance document\n  /comm/mac: must match pattern\n  (document): must have required property uuid\n',
    );
    const j = await run(['--json', 'patch', 'web1', '-'], { stdin: '{}' });
    assert.equal(j.code, 1);
    assert.deepEqual(JSON.parse(j.out), err);
  });

  it('prints the incident id of a 500', async () => {
    stub.routes.set('GET /v1/health', {
      status: 500,
      json: { code: 'Internal', message: 'internal error', details: [], incidentId: 'inc-42' },
    });
    const r = await run(['health']);
    assert.equal(r.code, 1);
    assert.match(r.err, /inc-42/);
  });
});

describe('metadctl instances', () => {
  it('show prints a readable summary without private or secret values', async () => {
    const r = await run(['show', 'web1']);
    assert.equal(r.code, 0, r.err);
    assert.equal(only().method, 'GET');
    assert.equal(only().url, '/v1/instances/web1');
    assert.equal(
      r.out,
      [
        'Name:         web1',
        `UUID:         ${UUID}`,
        'Hostname:     web1.example.org',
        'Comm:         10.0.0.5  52:54:00:12:34:56  tap tap-web1',
        'Generation:   7',
        'Created:      2025-01-01T00:00:00.000Z',
        'Updated:      2025-01-02T03:04:05.000Z',
        'Parameters:',
        '  public:     MODE=prod',
        '              MOTD="line1\\nline2"',
        '  private:    API_USER, DB_USER  (values not shown)',
        '  secret:     DB_PASSWORD  expires 2099-01-01T00:00:00.000Z  claim-once, not claimed yet',
        '              TOKEN  expires 2099-02-01T00:00:00.000Z',
        'IAM role:     web-role',
        'Password set: no',
        'Pipe:         3 bytes to guest, 0 bytes to host',
        '',
      ].join('\n'),
    );
  });

  it('show --json prints the daemon answer unchanged', async () => {
    const r = await run(['--json', 'show', 'web1']);
    assert.equal(r.code, 0);
    assert.equal(r.out, `${JSON.stringify(VIEW)}\n`);
  });

  it('list prints a table', async () => {
    const r = await run(['list']);
    assert.equal(r.code, 0, r.err);
    assert.equal(only().url, '/v1/instances');
    assert.equal(
      r.out,
      [
        'NAME  UUID                                  COMM IPV4  MAC                TAP       GEN  ORIGIN',
        'db1   00000000-0000-4000-8000-000000000001  10.0.0.10  52:54:00:00:00:10  -         12   admin',
        `web1  ${UUID}  10.0.0.5   52:54:00:12:34:56  tap-web1  7    ganeti`,
        '',
      ].join('\n'),
    );
  });

  it('remove and rm DELETE the instance', async () => {
    for (const cmd of ['remove', 'rm']) {
      stub.requests = [];
      const r = await run([cmd, 'web1']);
      assert.equal(r.code, 0, r.err);
      assert.equal(only().method, 'DELETE');
      assert.equal(only().url, '/v1/instances/web1');
      assert.equal(r.out, 'removed web1\n');
    }
  });

  it('sends a dotted name as it is', async () => {
    stub.routes.set('GET /v1/instances/web1.example.org', { status: 200, json: VIEW });
    const r = await run(['show', 'web1.example.org']);
    assert.equal(r.code, 0, r.err);
    assert.equal(only().url, '/v1/instances/web1.example.org');
  });

  it('patch sends a merge patch from a YAML file', async () => {
    const r = await run(['patch', 'web1', await file('patch.yaml', 'hostname: web1.example.net\nec2:\n  iam: null\n')]);
    assert.equal(r.code, 0, r.err);
    const req = only();
    assert.equal(req.method, 'PATCH');
    assert.equal(req.url, '/v1/instances/web1');
    assert.equal(req.contentType, 'application/merge-patch+json');
    assert.deepEqual(jsonBody(req), { hostname: 'web1.example.net', ec2: { iam: null } });
    assert.equal(r.out, 'patched web1 (generation 7)\n');
  });
});

describe('metadctl params', () => {
  it('show', async () => {
    const r = await run(['params', 'show', 'web1']);
    assert.equal(r.code, 0, r.err);
    assert.equal(only().url, '/v1/instances/web1/params');
    assert.equal(
      r.out,
      'public:  MODE=prod\nprivate: API_USER\nsecret:  DB_PASSWORD  expires 2099-01-01T00:00:00.000Z  claim-once, claimed 2025-01-03T00:00:00.000Z\n',
    );
  });

  it('set PATCHes by default', async () => {
    const r = await run(['params', 'set', 'web1', '--visibility', 'public', 'MODE=prod', 'EMPTY=', 'AT=@@home', 'EQ=a=b']);
    assert.equal(r.code, 0, r.err);
    const req = only();
    assert.equal(req.method, 'PATCH');
    assert.equal(req.url, '/v1/instances/web1/params/public');
    assert.equal(req.contentType, 'application/json');
    assert.deepEqual(jsonBody(req), { values: { MODE: 'prod', EMPTY: '', AT: '@home', EQ: 'a=b' } });
    assert.equal(r.out, 'set public parameters MODE, EMPTY, AT, EQ on web1\n');
  });

  it('set --replace PUTs', async () => {
    const r = await run(['params', 'set', 'web1', '--visibility', 'public', '--replace', 'MODE=prod']);
    assert.equal(r.code, 0, r.err);
    assert.equal(only().method, 'PUT');
    assert.deepEqual(jsonBody(only()), { values: { MODE: 'prod' } });
  });

  it('set reads KEY=@file and KEY=- (one trailing newline dropped), with --ttl and --claim-once', async () => {
    const secretFile = await file('db-password', 's3cr3t\n');
    const r = await run(
      ['params', 'set', 'web1', '--visibility', 'secret', `DB_PASSWORD=@${secretFile}`, 'TOKEN=-', '--ttl', '3600', '--claim-once'],
      {
        stdin: 'tok\n\n',
      },
    );
    assert.equal(r.code, 0, r.err);
    const req = only();
    assert.equal(req.url, '/v1/instances/web1/params/secret');
    assert.deepEqual(jsonBody(req), { values: { DB_PASSWORD: 's3cr3t', TOKEN: 'tok\n' }, ttlSec: 3600, claimOnce: true });
    assert.doesNotMatch(r.out + r.err, /s3cr3t|tok\n/);
  });

  it('set --keep-newline keeps it', async () => {
    const r = await run(['params', 'set', 'web1', '--visibility', 'private', '--keep-newline', `CERT=@${await file('cert', 'x\n')}`]);
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(jsonBody(only()), { values: { CERT: 'x\n' } });
  });

  it('set refuses bad assignments and secret-only options elsewhere (exit 2, nothing sent)', async () => {
    const cases = [
      ['params', 'set', 'web1', '--visibility', 'public', 'NOEQUALS'],
      ['params', 'set', 'web1', '--visibility', 'public', '1BAD=x'],
      ['params', 'set', 'web1', '--visibility', 'public', 'A=1', 'A=2'],
      ['params', 'set', 'web1', '--visibility', 'public', 'A=-', 'B=-'],
      ['params', 'set', 'web1', '--visibility', 'public', `A=@${join(stub.dir, 'no-such-file')}`],
      ['params', 'set', 'web1', '--visibility', 'public', '--ttl', '60', 'A=1'],
      ['params', 'set', 'web1', '--visibility', 'private', '--claim-once', 'A=1'],
      ['params', 'set', 'web1', '--visibility', 'secret', '--ttl', 'soon', 'A=1'],
    ];
    for (const args of cases) {
      const r = await run(args, { stdin: 'x' });
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.err}`);
    }
    assert.equal(stub.requests.length, 0);
  });

  it('unset DELETEs each key, goes on after a 404 and exits 4', async () => {
    const r = await run(['params', 'unset', 'web1', '--visibility', 'public', 'MODE', 'GONE', 'REGION']);
    assert.deepEqual(
      stub.requests.map((q) => `${q.method} ${q.url}`),
      [
        'DELETE /v1/instances/web1/params/public/MODE',
        'DELETE /v1/instances/web1/params/public/GONE',
        'DELETE /v1/instances/web1/params/public/REGION',
      ],
    );
    assert.equal(r.code, 4);
    assert.equal(r.out, 'removed public parameter MODE from web1\nremoved public parameter REGION from web1\n');
    assert.equal(r.err, 'metadctl: public parameter GONE: no public parameter GONE\n');
  });

  it('clear DELETEs the visibility', async () => {
    const r = await run(['params', 'clear', 'web1', '--visibility', 'secret']);
    assert.equal(r.code, 0, r.err);
    assert.equal(only().method, 'DELETE');
    assert.equal(only().url, '/v1/instances/web1/params/secret');
  });
});

describe('metadctl pipe, password, identity-key, health', () => {
  it('pipe send POSTs the argument, or stdin with - or without data', async () => {
    const a = await run(['pipe', 'send', 'web1', 'hello']);
    assert.equal(a.code, 0, a.err);
    assert.equal(only().method, 'POST');
    assert.equal(only().url, '/v1/instances/web1/pipe');
    assert.equal(only().contentType, 'application/octet-stream');
    assert.equal(only().body.toString(), 'hello');
    assert.equal(a.out, 'sent 5 bytes to web1 (5 bytes queued for the guest)\n');
    for (const args of [
      ['pipe', 'send', 'web1', '-'],
      ['pipe', 'send', 'web1'],
    ]) {
      stub.requests = [];
      const r = await run(args, { stdin: Buffer.from([0, 1, 2, 0xff]) });
      assert.equal(r.code, 0, r.err);
      assert.deepEqual([...only().body], [0, 1, 2, 0xff]);
    }
  });

  it('pipe send: 413 exits 1', async () => {
    stub.routes.set('POST /v1/instances/web1/pipe', {
      status: 413,
      json: { code: 'PayloadTooLarge', message: 'pipe buffer full', details: [] },
    });
    const r = await run(['pipe', 'send', 'web1', 'x']);
    assert.equal(r.code, 1);
    assert.equal(r.err, 'metadctl: pipe buffer full\n');
  });

  it('pipe read GETs with ?wait and writes the bytes unchanged', async () => {
    const r = await run(['pipe', 'read', 'web1', '--wait', '5']);
    assert.equal(r.code, 0, r.err);
    assert.equal(only().method, 'GET');
    assert.equal(only().url, '/v1/instances/web1/pipe?wait=5');
    assert.deepEqual([...r.outBuf], [0x68, 0x69, 0x00, 0xff]);
    stub.requests = [];
    await run(['pipe', 'read', 'web1']);
    assert.equal(only().url, '/v1/instances/web1/pipe');
  });

  it('pipe read --follow loops with wait=30 until interrupted', async () => {
    const parts = ['he', '', 'llo'];
    stub.routes.set('GET /v1/instances/web1/pipe', (_req, nth) =>
      nth <= parts.length ? { status: 200, body: parts[nth - 1] ?? '' } : new Promise<Reply>(() => undefined),
    );
    const ac = new AbortController();
    const r = await run(['pipe', 'read', 'web1', '--follow'], {
      signal: ac.signal,
      onStdout: (all) => {
        if (all.toString() === 'hello') setTimeout(() => ac.abort(), 50); // let the next long poll start
      },
    });
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out, 'hello');
    assert.ok(stub.requests.length >= 4);
    for (const q of stub.requests) assert.equal(q.url, '/v1/instances/web1/pipe?wait=30');
  });

  it('password show prints it; clear DELETEs it', async () => {
    const s = await run(['password', 'show', 'web1']);
    assert.equal(s.code, 0, s.err);
    assert.equal(only().url, '/v1/instances/web1/password');
    assert.equal(s.out, 'ZW5jcnlwdGVk\n');
    stub.routes.set('GET /v1/instances/web1/password', { status: 200, json: { password: null } });
    const none = await run(['password', 'show', 'web1']);
    assert.equal(none.code, 0);
    assert.equal(none.out, '');
    assert.match(none.err, /no password set/);
    stub.requests = [];
    const c = await run(['password', 'clear', 'web1']);
    assert.equal(c.code, 0, c.err);
    assert.equal(only().method, 'DELETE');
    assert.equal(only().url, '/v1/instances/web1/password');
  });

  it('identity-key prints the PEM', async () => {
    const r = await run(['identity-key']);
    assert.equal(r.code, 0, r.err);
    assert.equal(only().url, '/v1/identity/public-key');
    assert.equal(r.out, PEM);
  });

  it('health', async () => {
    const r = await run(['health']);
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out, 'ok (2 instances)\n');
    const j = await run(['--json', 'health']);
    assert.deepEqual(JSON.parse(j.out), { status: 'ok', instances: 2 });
  });
});
