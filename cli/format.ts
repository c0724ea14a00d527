/**
 * Human output of metadctl. Pure functions from the daemon's answers (docs/admin-api.md) to
 * text. Values the daemon never sends (private and secret values, IAM credentials) cannot be
 * printed; public values and names are escaped when they hold control characters so that a
 * value cannot rewrite the admin's terminal.
 */
import type { InstanceSummary, InstanceView, ParamsView, SecretInfo } from './api-types.js';

// eslint-disable-next-line no-control-regex
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]|^\s|\s$/;

/** A string as it may be shown on a terminal: quoted JSON-style when it holds control characters or edge blanks. */
function display(value: unknown): string {
  if (value === undefined || value === null || value === '') return '-';
  const s =
    typeof value === 'string' ? value : typeof value === 'number' || typeof value === 'boolean' ? String(value) : JSON.stringify(value);
  return UNSAFE.test(s) ? JSON.stringify(s) : s;
}

/** Left-aligned columns separated by two spaces, under a header (printed even with no rows); the last column is not padded. */
export function formatTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].map((l) => `${l}\n`).join('');
}

export function formatList(instances: readonly InstanceSummary[]): string {
  return formatTable(
    ['NAME', 'UUID', 'COMM IPV4', 'MAC', 'TAP', 'GEN', 'ORIGIN'],
    instances.map((s) => [
      display(s.name),
      display(s.uuid),
      display(s.commIpv4),
      display(s.commMac),
      display(s.tap),
      display(s.generation),
      display(s.origin),
    ]),
  );
}

function isPast(iso: string, now: number): boolean {
  const t = Date.parse(iso);
  return Number.isFinite(t) && t <= now;
}

/** `NAME  expires T  claim-once  claimed T` */
function formatSecretInfo(s: SecretInfo, now = Date.now()): string {
  const parts = [display(s.name), `expires ${display(s.expiresAt)}${isPast(s.expiresAt, now) ? ' (expired)' : ''}`];
  if (s.claimOnce) parts.push(s.claimedAt ? `claim-once, claimed ${display(s.claimedAt)}` : 'claim-once, not claimed yet');
  else if (s.claimedAt) parts.push(`claimed ${display(s.claimedAt)}`);
  return parts.join('  ');
}

/** `label:` padded, then the first value; further values aligned under it. */
function field(label: string, values: readonly string[], width: number, indent = ''): string {
  const head = `${indent}${label}:`.padEnd(width + indent.length);
  if (values.length === 0) return `${head}-\n`;
  return values.map((v, i) => `${i === 0 ? head : ' '.repeat(head.length)}${v}\n`).join('');
}

function bytes(n: number): string {
  return `${n} byte${n === 1 ? '' : 's'}`;
}

function publicLines(values: Record<string, string> | undefined, names: readonly string[] | undefined): string[] {
  const v = values ?? {};
  const keys = [...new Set([...(names ?? []), ...Object.keys(v)])].sort();
  return keys.map((k) => (Object.prototype.hasOwnProperty.call(v, k) ? `${display(k)}=${v[k] === '' ? '' : display(v[k])}` : display(k)));
}

/** The `show` summary. */
export function formatView(view: InstanceView, now = Date.now()): string {
  const doc = view.instance;
  const st = view.status;
  const W = 14;
  const comm = [display(doc.comm.ipv4), display(doc.comm.mac), ...(doc.comm.tap ? [`tap ${display(doc.comm.tap)}`] : [])].join('  ');
  let out = '';
  out += field('Name', [display(doc.name)], W);
  out += field('UUID', [display(doc.uuid)], W);
  out += field('Hostname', [display(doc.hostname)], W);
  out += field('Comm', [comm], W);
  if (doc.origin === 'ganeti') out += field('Origin', ["ganeti (fed by Ganeti's node daemon)"], W);
  if (doc.os?.name) out += field('OS', [[doc.os.name, doc.os.variant].filter(Boolean).map(display).join(' ')], W);
  out += field('Generation', [display(st.generation)], W);
  out += field('Created', [display(st.createdAt)], W);
  out += field('Updated', [display(st.updatedAt)], W);
  out += 'Parameters:\n';
  const P = W - 2; // values line up with the fields above
  out += field('public', publicLines(doc.params?.public, st.params.public), P, '  ');
  const priv = st.params.private.map(display);
  out += field('private', priv.length ? [`${priv.join(', ')}  (values not shown)`] : [], P, '  ');
  out += field(
    'secret',
    st.params.secret.map((s) => formatSecretInfo(s, now)),
    P,
    '  ',
  );
  out += field('IAM role', [st.iamRole ? display(st.iamRole) : 'none'], W);
  out += field('Password set', [st.password ? 'yes' : 'no'], W);
  out += field('Pipe', [`${bytes(st.pipe.toGuestBytes)} to guest, ${bytes(st.pipe.toHostBytes)} to host`], W);
  return out;
}

/** `params show`. */
export function formatParams(p: ParamsView, now = Date.now()): string {
  let out = '';
  const W = 9;
  out += field('public', publicLines(p.public, undefined), W);
  out += field('private', p.private.map(display), W);
  out += field(
    'secret',
    p.secret.map((s) => formatSecretInfo(s, now)),
    W,
  );
  return out;
}
