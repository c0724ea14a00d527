/**
 * The fenced examples of a Markdown page, as test/integration/docs-examples.test.ts runs them.
 * A fence's info string is a language and optional annotations:
 *
 *   ```sh                  a script: run with bash (`set -eo pipefail`), must exit 0
 *   ```console             a transcript: every `$ ` line is run, must exit 0
 *   ```console output      … and what follows a `$ ` line is its exact stdout
 *   ```yaml file=NAME      written to NAME in the page's working directory before anything runs
 *   ```yaml config         a metad configuration: `metad check-config` must accept it
 *   ```text                not a command (a synopsis, a diagram, output)
 *   ```sh no-run           must not be run (a real host's systemctl, npm ci, …); keep these few
 *   ```sh host=ID          a step on a real host (sudo, systemctl, apt-get): not run by the docs
 *                          runner, but by the live test that takes it with `hostExample(text, 'ID')`
 *                          and runs its lines as printed (docs-examples.test.ts checks that such a
 *                          test exists); `console output host=ID` is a transcript whose outputs it checks
 *
 * Pure: parsing only.
 */

export interface Example {
  /** 1-based line of the opening fence. */
  line: number;
  lang: string;
  flags: ReadonlySet<string>;
  /** Set by `file=NAME`. */
  file?: string;
  /** Set by `host=ID`: run by a live test, not by the docs runner. */
  host?: string;
  body: string;
}

export interface Command {
  command: string;
  /** The stdout a `console output` transcript shows for it (else undefined). */
  expect?: string;
}

const SCRIPT_LANGS = new Set(['sh', 'bash', 'shell', 'console']);
const DOCUMENT_LANGS = new Set(['yaml', 'yml', 'json']);
const KNOWN_FLAGS = new Set(['no-run', 'output', 'config']);

export function parseExamples(markdown: string): Example[] {
  const out: Example[] = [];
  const lines = markdown.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const open = /^(`{3,}|~{3,})(.*)$/.exec(lines[i] ?? '');
    if (!open) continue;
    const fence = open[1] ?? '```';
    const [lang = '', ...words] = (open[2] ?? '').trim().split(/\s+/).filter(Boolean);
    const body: string[] = [];
    let j = i + 1;
    while (j < lines.length && !(lines[j] ?? '').startsWith(fence)) body.push(lines[j++] ?? '');
    const flags = new Set<string>();
    let file: string | undefined;
    let host: string | undefined;
    for (const w of words) {
      if (w.startsWith('file=')) file = w.slice(5);
      else if (w.startsWith('host=')) host = w.slice(5);
      else flags.add(w);
    }
    out.push({
      line: i + 1,
      lang,
      flags,
      ...(file === undefined ? {} : { file }),
      ...(host === undefined ? {} : { host }),
      body: body.join('\n') + '\n',
    });
    i = j;
  }
  return out;
}

/** Why an example is not runnable, documented or annotated as it must be (undefined: fine). */
export function annotationProblem(ex: Example): string | undefined {
  if (ex.lang === '') return 'give the fence a language (sh, console, yaml, json, text, …)';
  const unknown = [...ex.flags].filter((f) => !KNOWN_FLAGS.has(f));
  if (unknown.length > 0) return `unknown annotation ${unknown.join(' ')}`;
  if (ex.file !== undefined && !/^[\w][\w.-]*$/.test(ex.file)) return 'file= must name a plain file';
  if (ex.host !== undefined && !/^[a-z][a-z0-9-]*$/.test(ex.host)) return 'host= must be an id of [a-z0-9-]';
  if (ex.host !== undefined && !SCRIPT_LANGS.has(ex.lang)) return 'host= is for commands (sh, console)';
  if (ex.host !== undefined && ex.flags.has('no-run')) return 'host= or no-run, not both';
  if (DOCUMENT_LANGS.has(ex.lang) && ex.file === undefined && !ex.flags.has('config') && !ex.flags.has('no-run')) {
    return 'a document must say what it is: file=NAME, config or no-run';
  }
  if (ex.flags.has('output') && ex.lang !== 'console') return '`output` is for console transcripts';
  return undefined;
}

/** Whether the runner executes this example as commands. */
export function isScript(ex: Example): boolean {
  return SCRIPT_LANGS.has(ex.lang) && !ex.flags.has('no-run') && ex.host === undefined;
}

/** The one `host=ID` example of a page (its live test runs it). */
export function hostExample(markdown: string, id: string): Example {
  const found = parseExamples(markdown).filter((e) => e.host === id);
  if (found.length !== 1) throw new Error(`expected one host=${id} example, found ${String(found.length)}`);
  return found[0] as Example;
}

/** The commands of a script example: a `sh` block is one script, a transcript one per `$ ` line. */
export function commandsOf(ex: Example): Command[] {
  if (ex.lang !== 'console') return [{ command: ex.body }];
  const out: Command[] = [];
  let current: { command: string; output: string[] } | undefined;
  const flush = (): void => {
    if (!current) return;
    out.push({ command: current.command, ...(ex.flags.has('output') ? { expect: current.output.join('\n') } : {}) });
  };
  for (const line of ex.body.replace(/\n$/, '').split('\n')) {
    if (line.startsWith('$ ')) {
      flush();
      current = { command: line.slice(2), output: [] };
    } else {
      current?.output.push(line);
    }
  }
  flush();
  return out;
}
