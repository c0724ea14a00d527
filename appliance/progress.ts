/**
 * The agent's progress lines (docs/guest-api.md, "Install progress lines"):
 *   metad-progress v1 step=<step> status=<status> [key=value ...]
 * Pure parsing; anything else on the pipe is not a progress line (undefined).
 */

export interface ProgressLine {
  step: string;
  status: string;
  /** Every other key=value field, as sent. */
  fields: Record<string, string>;
}

const PREFIX = 'metad-progress v1 ';
const TOKEN = /^[A-Za-z0-9._:/@+,=-]{1,200}$/;
const KEY = /^[a-z][a-z0-9_]{0,31}$/;

export function parseProgress(line: string): ProgressLine | undefined {
  if (!line.startsWith(PREFIX)) return undefined;
  const fields: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const word of line.slice(PREFIX.length).trim().split(/ +/)) {
    const eq = word.indexOf('=');
    if (eq <= 0 || !TOKEN.test(word)) return undefined;
    const key = word.slice(0, eq);
    if (!KEY.test(key) || key in fields) return undefined;
    fields[key] = word.slice(eq + 1);
  }
  const { step, status, ...rest } = fields;
  if (step === undefined || status === undefined) return undefined;
  return { step, status, fields: { ...rest } };
}

/** Splits pipe bytes into complete lines; the unterminated tail is returned for the next call. */
export function splitLines(buffered: string, chunk: string): { lines: string[]; rest: string } {
  const all = buffered + chunk;
  const parts = all.split('\n');
  const rest = parts.pop() ?? '';
  return { lines: parts.map((l) => l.replace(/\r$/, '')).filter((l) => l !== ''), rest };
}
