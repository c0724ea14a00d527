/**
 * Where a JSON or YAML document goes wrong, said without quoting it: a document may hold
 * secrets, and V8's JSON.parse messages quote the characters around the mistake
 * (`Unexpected token 'h', ..."PASSWORD":hunter2}" is not valid JSON`). Pure functions: the
 * position (line and column, 1-based) and the kind of mistake, never the text itself.
 */
import type { YAMLError } from 'yaml';

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

const isDigit = (c: string): boolean => c >= '0' && c <= '9';
const isHex = (c: string): boolean => isDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');

/**
 * The offset of the first JSON syntax error in `text` (RFC 8259), or -1 when there is none.
 * Iterative (an explicit stack), so deep nesting cannot overflow. Where V8 names a position,
 * this is the same one: `{"a": x}` -> 6; `{"a": 1` -> 7 (the end); `"\q"` -> 2; `1.` -> 2.
 */
export function jsonErrorOffset(text: string): number {
  let i = 0;
  const stack: ('{' | '[')[] = [];
  let expect: 'value' | 'key' | 'after' = 'value';
  const skipSpace = (): void => {
    while (i < text.length && ' \t\n\r'.includes(text.charAt(i))) i++;
  };
  /** At a '"': step over the string; false (i at the fault) when it is malformed. */
  const string = (): boolean => {
    i++;
    for (;;) {
      if (i >= text.length) return false;
      const ch = text.charCodeAt(i);
      if (ch === 0x22) {
        i++;
        return true;
      }
      if (ch < 0x20) return false;
      if (ch !== 0x5c) {
        i++;
        continue;
      }
      const esc = text.charAt(i + 1);
      i++;
      if (esc === '' || !'"\\/bfnrtu'.includes(esc)) return false;
      i++;
      if (esc === 'u') {
        for (let k = 0; k < 4; k++, i++) if (!isHex(text.charAt(i))) return false;
      }
    }
  };
  const digits = (): boolean => {
    if (!isDigit(text.charAt(i))) return false;
    while (isDigit(text.charAt(i))) i++;
    return true;
  };
  /** A number: false (i at the fault) when it is malformed. */
  const number = (): boolean => {
    if (text.charAt(i) === '-') i++;
    if (text.charAt(i) === '0') i++;
    else if (!digits()) return false;
    if (text.charAt(i) === '.') {
      i++;
      if (!digits()) return false;
    }
    if (text.charAt(i) === 'e' || text.charAt(i) === 'E') {
      i++;
      if (text.charAt(i) === '+' || text.charAt(i) === '-') i++;
      if (!digits()) return false;
    }
    return true;
  };
  for (;;) {
    skipSpace();
    const c = text.charAt(i);
    if (expect === 'value') {
      if (c === '{' || c === '[') {
        i++;
        skipSpace();
        if (text.charAt(i) === (c === '{' ? '}' : ']')) {
          i++;
          expect = 'after';
        } else {
          stack.push(c);
          expect = c === '{' ? 'key' : 'value';
        }
      } else if (c === '"') {
        if (!string()) return i;
        expect = 'after';
      } else {
        const literal = ['true', 'false', 'null'].find((l) => text.startsWith(l, i));
        if (literal !== undefined) i += literal.length;
        else if (c === '-' || isDigit(c)) {
          if (!number()) return i;
        } else return i;
        expect = 'after';
      }
    } else if (expect === 'key') {
      if (c !== '"' || !string()) return i;
      skipSpace();
      if (text.charAt(i) !== ':') return i;
      i++;
      expect = 'value';
    } else {
      const top = stack.at(-1);
      if (top === undefined) return i < text.length ? i : -1;
      if (c === ',') {
        i++;
        expect = top === '{' ? 'key' : 'value';
      } else if (c === (top === '{' ? '}' : ']')) {
        i++;
        stack.pop();
      } else {
        return i;
      }
    }
  }
}

/** "line 3, column 14: unexpected character" for a text JSON.parse refused. */
export function describeJsonError(text: string): string {
  const offset = jsonErrorOffset(text);
  if (offset < 0) return 'not valid JSON';
  const { line, column } = lineColumn(text, offset);
  return `line ${line}, column ${column}: ${offset >= text.length ? 'unexpected end of input' : 'unexpected character'}`;
}

/** "line 2, column 5: bad indent" for a YAML parse error in `text`: the library's error code and position, not its message (which may quote the text). */
export function describeYamlError(text: string, err: YAMLError): string {
  const { line, column } = lineColumn(text, err.pos[0]);
  return `line ${line}, column ${column}: ${err.code.toLowerCase().replaceAll('_', ' ')}`;
}
