/**
 * A bare client of Ganeti's UDS framing (JSON messages ended by ETX, 0x03), for tests that send
 * what Ganeti's own client never would: split frames, several requests on one connection, bytes
 * that are no JSON. The tests of what Ganeti really sends run Ganeti's own Python client
 * (test/support/ganeti.ts).
 */
import net from 'node:net';

export interface LuxiAnswer {
  success: boolean;
  result: unknown;
}

export class LuxiConnection {
  private buf = Buffer.alloc(0);
  private readonly answers: LuxiAnswer[] = [];
  private waiter: (() => void) | undefined;
  /** Resolves when the server has closed the connection. */
  readonly closed: Promise<void>;

  private constructor(private readonly sock: net.Socket) {
    sock.on('data', (c: Buffer) => {
      this.buf = Buffer.concat([this.buf, c]);
      for (let i = this.buf.indexOf(3); i >= 0; i = this.buf.indexOf(3)) {
        this.answers.push(JSON.parse(this.buf.subarray(0, i).toString('utf8')) as LuxiAnswer);
        this.buf = this.buf.subarray(i + 1);
      }
      this.waiter?.();
    });
    this.closed = new Promise((resolve) => {
      sock.once('close', () => {
        resolve();
        this.waiter?.();
      });
    });
    sock.on('error', () => undefined);
  }

  static open(path: string): Promise<LuxiConnection> {
    return new Promise((resolve, reject) => {
      const sock = net.connect(path);
      sock.once('connect', () => resolve(new LuxiConnection(sock)));
      sock.once('error', reject);
    });
  }

  /** Raw bytes, as they are. */
  write(bytes: string | Buffer): void {
    this.sock.write(bytes);
  }

  /** One request, framed. */
  send(method: string, args: unknown[]): void {
    this.write(`${JSON.stringify({ method, args })}\u0003`);
  }

  /** The next answer; rejects when the connection closes first. */
  async next(): Promise<LuxiAnswer> {
    for (;;) {
      const a = this.answers.shift();
      if (a) return a;
      if (this.sock.destroyed || this.sock.readableEnded) throw new Error('connection closed without an answer');
      await new Promise<void>((r) => (this.waiter = r));
    }
  }

  async call(method: string, args: unknown[]): Promise<LuxiAnswer> {
    this.send(method, args);
    return this.next();
  }

  close(): void {
    this.sock.destroy();
  }
}

/** One request on a connection of its own, as Ganeti's node daemon makes it. */
export async function luxiCall(path: string, method: string, args: unknown[]): Promise<LuxiAnswer> {
  const c = await LuxiConnection.open(path);
  try {
    return await c.call(method, args);
  } finally {
    c.close();
  }
}
