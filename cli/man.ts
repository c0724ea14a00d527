/**
 * Manual pages from the command trees themselves: each section is exactly what `--help` prints
 * for that command (commander's own output, 80 columns, no colour), so the man page cannot drift
 * from the help. `npm run man` writes docs/man/metad.8 and docs/man/metadctl.8; a test keeps
 * them equal to this output and checks that groff renders them without a warning.
 */
import type { Command } from 'commander';

/** What `cmd --help` prints, captured. */
export function helpOf(cmd: Command): string {
  let out = '';
  cmd.configureOutput({ writeOut: (s) => (out += s), getOutHelpWidth: () => 80, getOutHasColors: () => false });
  cmd.outputHelp();
  return out;
}

/** Text as roff sees it: backslashes and minus signs escaped, no line starting with a control character. */
function roff(text: string): string {
  return text
    .replace(/\\/g, '\\e')
    .replace(/-/g, '\\-')
    .split('\n')
    .map((l) => (/^[.']/.test(l) ? `\\&${l}` : l))
    .join('\n');
}

function preformatted(text: string): string[] {
  return ['.nf', roff(text.replace(/\n+$/, '')), '.fi'];
}

/** Every command below `cmd`, depth first, with its full name ('nic up'). */
function commandsOf(cmd: Command, prefix: string[] = []): { name: string; cmd: Command }[] {
  return cmd.commands
    .filter((c) => c.name() !== 'help')
    .flatMap((c) => [{ name: [...prefix, c.name()].join(' '), cmd: c }, ...commandsOf(c, [...prefix, c.name()])]);
}

export interface ManOptions {
  readonly section: number;
  readonly version: string;
  readonly seeAlso: readonly string[];
}

/** The man page of `program` (roff, man macros). */
export function manPage(program: Command, o: ManOptions): string {
  const name = program.name();
  const lines = [
    `.\\" Generated from ${name} --help by cli/man.ts (npm run man); do not edit.`,
    `.TH ${name.toUpperCase()} ${String(o.section)} "" "metad ${o.version}" "System Administration"`,
    '.SH NAME',
    `${name} \\- ${roff(program.description())}`,
    '.SH SYNOPSIS',
    `.B ${name}`,
    roff(program.usage()),
    '.SH DESCRIPTION',
    ...preformatted(helpOf(program)),
    '.SH COMMANDS',
  ];
  for (const c of commandsOf(program)) lines.push(`.SS "${name} ${roff(c.name)}"`, ...preformatted(helpOf(c.cmd)));
  lines.push('.SH SEE ALSO', o.seeAlso.map((s) => `.BR ${s.replace(/\((\d)\)$/, ' ($1)')}`).join(',\n'), '');
  return lines.join('\n');
}
