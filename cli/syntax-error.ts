/**
 * Where a JSON or YAML document goes wrong, said without quoting it: a document may hold
 * secrets, and V8's JSON.parse messages quote the characters around the mistake
 * (`Unexpected token 'h', ..."PASSWORD":hunter2}" is not valid JSON`). Pure functions: the
 * position (line and column, 1-based) and the kind of mistake, never the text itself.
 */
import type { YAMLError } from 'yaml';
import jsonc, { type ParseError } from 'jsonc-parser';

// jsonc-parser's ESM build has extension-less imports Node cannot resolve: use its UMD entry.
const { parse, printParseErrorCode } = jsonc;

export interface LineColumn {
  line: number;
  column: number;
}

/** The 1-based line and column of a character offset. */
export function lineColumn(text: string, offset: number): LineColumn {
  let line = 1;
  let start = 0;
  for (let i = text.indexOf('\n'); i !== -1 && i < offset; i = text.indexOf('\n', i + 1)) {
    line++;
    start = i + 1;
  }
  return { line, column: offset - start + 1 };
}

/**
 * The first JSON syntax error in `text` (RFC 8259: no comments, no trailing commas) as an
 * offset and the parser's error code, or undefined when there is none. jsonc-parser (the
 * parser VS Code uses) reports offsets and codes, never the text: `{"a":x}` -> 5 InvalidSymbol;
 * `{"a":1` -> 6 CloseBraceExpected; a fault inside a string or number is reported at the
 * token's start (`"\\x"` -> 0 InvalidEscapeCharacter).
 */
export function jsonError(text: string): { offset: number; code: string } | undefined {
  const errors: ParseError[] = [];
  parse(text, errors, { disallowComments: true, allowTrailingComma: false, allowEmptyContent: false });
  const first = errors[0];
  return first === undefined ? undefined : { offset: first.offset, code: printParseErrorCode(first.error) };
}

/** "InvalidSymbol" -> "invalid symbol". */
const words = (code: string): string => code.replace(/([a-z])([A-Z])/g, '$1 $2').toLowerCase();

/** "line 3, column 14: unexpected character" for a text JSON.parse refused. */
export function describeJsonError(text: string): string {
  const err = jsonError(text);
  if (err === undefined) return 'not valid JSON';
  const { line, column } = lineColumn(text, err.offset);
  return `line ${line}, column ${column}: ${words(err.code)}`;
}

/** "line 2, column 5: bad indent" for a YAML parse error in `text`: the library's error code and position, not its message (which may quote the text). */
export function describeYamlError(text: string, err: YAMLError): string {
  const { line, column } = lineColumn(text, err.pos[0]);
  return `line ${line}, column ${column}: ${err.code.toLowerCase().replaceAll('_', ' ')}`;
}
