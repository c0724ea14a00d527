/**
 * The socket guard (daemon/process/socket-guard.ts), driven by explicit times: a half-closed socket is
 * destroyed after the grace, a socket whose output is stuck after the stall time, and a socket
 * that is merely quiet (a long-poll, keep-alive) is left alone.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SocketGuard, type GuardedSocket } from '../../daemon/process/socket-guard.js';

class FakeSocket implements GuardedSocket {
  writableEnded = false;
  writableLength = 0;
  bytesWritten = 0;
  destroyed = false;
  destroy(): void {
    this.destroyed = true;
  }
}

test('socket guard: a half-closed socket the client never closes is destroyed after the grace', () => {
  const g = new SocketGuard<FakeSocket>(1000, 5000);
  const s = new FakeSocket();
  g.add(s);
  assert.equal(g.check(0), 0);
  s.writableEnded = true; // the door answered 400 and half-closed
  assert.equal(g.check(100), 0, 'first seen done writing at t=100');
  assert.equal(g.check(1099), 0);
  assert.equal(s.destroyed, false);
  assert.equal(g.check(1100), 1);
  assert.equal(s.destroyed, true);
  assert.equal(g.size, 0);
});

test('socket guard: output that does not leave for the stall time destroys the socket', () => {
  const g = new SocketGuard<FakeSocket>(1000, 5000);
  const s = new FakeSocket();
  g.add(s);
  s.writableLength = 70_000;
  s.bytesWritten = 10;
  assert.equal(g.check(0), 0, 'progress since add: not stalled');
  assert.equal(g.check(10), 0, 'stalled from t=10');
  s.bytesWritten = 20; // the client read a little: the stall starts over
  assert.equal(g.check(4000), 0, 'progress seen');
  assert.equal(g.check(4001), 0, 'stalled again from t=4001');
  assert.equal(g.check(9000), 0);
  assert.equal(s.destroyed, false);
  assert.equal(g.check(9001), 1);
  assert.equal(s.destroyed, true);
});

test('socket guard: a quiet socket with nothing queued (long-poll, keep-alive) is left alone', () => {
  const g = new SocketGuard<FakeSocket>(1000, 5000);
  const s = new FakeSocket();
  g.add(s);
  for (let t = 0; t <= 120_000; t += 250) assert.equal(g.check(t), 0);
  assert.equal(s.destroyed, false);
  g.remove(s);
  assert.equal(g.size, 0);
  const gone = new FakeSocket();
  g.add(gone);
  gone.destroyed = true; // closed by node itself
  assert.equal(g.check(0), 0);
  assert.equal(g.size, 0, 'a socket destroyed elsewhere is forgotten');
});
