/**
 * docs/configuration.md, generated from the config schema (`metad config-reference`; a test
 * keeps the file equal). Every key of the schema must carry a `description`.
 */
import { ENV_OVERRIDES } from './config.js';
import { configSchema } from './schema.js';
import { LIVE_KEYS } from './reload.js';

/** The parts of a JSON schema node the reference reads. */
interface Node {
  readonly type?: string;
  readonly description?: string;
  readonly default?: unknown;
  readonly properties?: Readonly<Record<string, Node>>;
  readonly items?: Node;
  readonly required?: readonly string[];
  readonly minimum?: number;
  readonly maximum?: number;
  readonly minItems?: number;
  readonly enum?: readonly string[];
  readonly pattern?: string;
  readonly format?: string;
}

interface Row {
  key: string;
  node: Node;
  required: boolean;
}

/** Every key, depth first in schema order: `guest`, `guest.listen`, `guest.listen[].host`, … */
export function configKeys(node: Node = configSchema, prefix = ''): Row[] {
  const rows: Row[] = [];
  for (const [name, child] of Object.entries(node.properties ?? {})) {
    const key = `${prefix}${name}`;
    rows.push({ key, node: child, required: node.required?.includes(name) ?? false });
    if (child.properties) rows.push(...configKeys(child, `${key}.`));
    if (child.items?.properties) rows.push(...configKeys(child.items, `${key}[].`));
  }
  return rows;
}

const FORMATS: Record<string, string> = { ip: 'IP address', 'ipv4-cidr': 'IPv4 CIDR' };

function typeText(n: Node, required: boolean): string {
  const parts: string[] = [];
  if (n.format) parts.push(FORMATS[n.format] ?? n.format);
  else if (n.enum) parts.push(`one of ${n.enum.map((v) => `\`${v}\``).join(', ')}`);
  else if (n.type === 'array')
    parts.push(
      `list of ${n.items?.type === 'object' ? 'objects' : `${(n.items?.format && FORMATS[n.items.format]) ?? n.items?.type ?? 'value'}s`}`,
    );
  else parts.push(n.type ?? 'any');
  if (n.minimum !== undefined && n.maximum !== undefined) parts.push(`${String(n.minimum)}–${String(n.maximum)}`);
  else if (n.minimum !== undefined) parts.push(`≥ ${String(n.minimum)}`);
  else if (n.maximum !== undefined) parts.push(`≤ ${String(n.maximum)}`);
  if (n.minItems !== undefined) parts.push(`at least ${String(n.minItems)}`);
  if (n.pattern) parts.push(`matching \`${n.pattern}\``);
  if (required) parts.push('required');
  return parts.join(', ');
}

function defaultText(n: Node): string {
  if (n.default === undefined || n.type === 'object') return '—';
  return `\`${JSON.stringify(n.default)}\``;
}

/** Whether a SIGHUP applies a change of the key (objects: their keys say). */
function reloadText(key: string, n: Node): string {
  if (n.type === 'object') return '';
  return LIVE_KEYS.includes(key) ? 'live' : 'restart';
}

const cell = (text: string): string => text.replaceAll('|', '\\|').replaceAll('\n', ' ');

export function configReference(): string {
  const envRows = ENV_OVERRIDES.map((o) => `| \`${o.env}\` | \`${o.key.join('.')}\` |`);
  const keyRows = configKeys().map(
    ({ key, node, required }) =>
      `| \`${key}\` | ${cell(typeText(node, required))} | ${cell(defaultText(node))} | ${reloadText(key, node)} | ${cell(node.description ?? '')} |`,
  );
  return [
    '# metad configuration reference',
    '',
    'Generated from the config schema in daemon/config/schema.ts by `metad config-reference`; a test keeps',
    'this file equal to it.',
    '',
    'metad reads one file, JSON (`*.json`) or YAML 1.2, named by `metad serve --config FILE` or by',
    '`METAD_CONFIG`; without one, every key takes its default. Unknown keys are refused.',
    '`metad check-config FILE` validates a file the way `serve` does, lists every problem at once',
    '(each line names its key as a JSON pointer, e.g. `/guest/listen/0/host`), and prints the',
    'effective configuration with the defaults filled in.',
    '',
    '```yaml config',
    '# /etc/metad/config.yaml',
    'guest:',
    '  listen:',
    '    - { host: 169.254.169.254, port: 80 }',
    '  commRange: [169.254.0.0/16]',
    '```',
    '',
    '## Environment overrides',
    '',
    'Set and non-empty, these win over the file.',
    '',
    '| variable | sets |',
    '|---|---|',
    '| `METAD_CONFIG` | the config file (`metad serve` without `--config`) |',
    ...envRows,
    '',
    '## Keys',
    '',
    'A key `a.b` is `b` inside the object `a`; `a[].b` is `b` in each element of the list `a`.',
    'SIGHUP (`systemctl reload metad`) re-reads the file: a change to a `live` key takes effect at',
    'once, a change to a `restart` key is logged and waits for the next start.',
    '',
    '| key | type | default | SIGHUP | meaning |',
    '|---|---|---|---|---|',
    ...keyRows,
    '',
  ].join('\n');
}
