/** Number formatting and the aligned result table (stdout). */

/** A number with about 3 significant digits (thousands separated). */
export function fmt(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  const a = Math.abs(n);
  if (Number.isInteger(n)) return n.toLocaleString('en-US');
  const digits = a >= 100 ? 0 : a >= 10 ? 1 : a >= 1 ? 2 : 3;
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** Print an aligned table (numeric columns right-aligned) to stdout, or through `out`. */
export function printTable(headers: string[], rows: string[][], out: (line: string) => void = (l) => process.stdout.write(`${l}\n`)): void {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const numeric = headers.map(
    (_, i) => rows.length > 0 && rows.every((r) => /^[-+]?[\d,.]+( |x|$)/.test(r[i] ?? '') || (r[i] ?? '') === ''),
  );
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (numeric[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  out(line(headers));
  out(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of rows) out(line(headers.map((_, i) => r[i] ?? '')));
}
