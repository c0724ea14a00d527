/**
 * cli/syntax-error.ts: every document JSON.parse refuses gets a position and a kind of mistake
 * (never its text), valid JSON gets none, and positions are 1-based line/column.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { describeJsonError, jsonError, lineColumn } from '../../cli/syntax-error.js';

const VALID = [
  '{}',
  '[]',
  ' 0 ',
  '-1.5e+3',
  '"a\\u00e9\\n"',
  'true',
  'null',
  '{"a": [1, {"b": null}], "c": "\\""}',
  '[[[[[]]]]]',
  '{"": ""}',
  `${'['.repeat(5000)}${']'.repeat(5000)}`,
];
/** text, offset, code: a fault inside a string or number is placed at the token's start. */
const INVALID: [string, number, string][] = [
  ['', 0, 'ValueExpected'],
  ['{', 1, 'CloseBraceExpected'],
  ['{"a":1', 6, 'CloseBraceExpected'],
  ['{"a" 1}', 5, 'ColonExpected'],
  ['{"a":x}', 5, 'InvalidSymbol'],
  ['[1,]', 3, 'ValueExpected'],
  ['[1 2]', 3, 'CommaExpected'],
  ['{"a":1,}', 7, 'PropertyNameExpected'],
  ['{a:1}', 1, 'InvalidSymbol'],
  ['"abc', 0, 'UnexpectedEndOfString'],
  ['"a\u0001"', 0, 'InvalidCharacter'],
  ['"\\x"', 0, 'InvalidEscapeCharacter'],
  ['"\\u12g4"', 0, 'InvalidUnicode'],
  ['01', 1, 'EndOfFileExpected'],
  ['1 2', 2, 'EndOfFileExpected'],
  ['{"a":1}}', 7, 'EndOfFileExpected'],
  ['tru', 0, 'InvalidSymbol'],
  ['1.', 0, 'UnexpectedEndOfNumber'],
  ['[1e+]', 1, 'UnexpectedEndOfNumber'],
  ['{"a":1} // c', 8, 'InvalidCommentToken'],
  ["{'a':1}", 1, 'InvalidSymbol'],
];

test('jsonError: none for valid JSON; for each text JSON.parse refuses, the offset and the code', () => {
  for (const text of VALID) assert.equal(jsonError(text), undefined, text.slice(0, 40));
  for (const [text, offset, code] of INVALID) {
    assert.throws(() => JSON.parse(text) as unknown, SyntaxError, text);
    assert.deepEqual(jsonError(text), { offset, code }, JSON.stringify(text));
  }
});

test('lineColumn and describeJsonError: 1-based positions and the kind of mistake, never the text', () => {
  assert.deepEqual(lineColumn('ab\ncd\nef', 0), { line: 1, column: 1 });
  assert.deepEqual(lineColumn('ab\ncd\nef', 4), { line: 2, column: 2 });
  assert.deepEqual(lineColumn('ab\ncd\nef', 6), { line: 3, column: 1 });
  assert.equal(describeJsonError('{\n  "a": 1,\n  "b": x\n}'), 'line 3, column 8: invalid symbol');
  const secret = describeJsonError('{\n  "PASSWORD": "hunter2');
  assert.equal(secret, 'line 2, column 15: unexpected end of string');
  assert.doesNotMatch(secret, /hunter2|PASSWORD/);
});
