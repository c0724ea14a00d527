/**
 * cli/syntax-error.ts: the JSON error offset agrees with V8 where V8 gives one, finds none in
 * valid JSON, and positions are 1-based line/column.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { describeJsonError, jsonErrorOffset, lineColumn } from '../../cli/syntax-error.js';

const VALID = ['{}', '[]', ' 0 ', '-1.5e+3', '"a\\u00e9\\n"', 'true', 'null', '{"a": [1, {"b": null}], "c": "\\""}', '[[[[[]]]]]', '{"": ""}', `${'['.repeat(5000)}${']'.repeat(5000)}`];
const INVALID: [string, number][] = [
  ['', 0],
  ['{', 1],
  ['{"a":1', 6],
  ['{"a" 1}', 5],
  ['{"a":x}', 5],
  ['[1,]', 3],
  ['[1 2]', 3],
  ['{"a":1,}', 7],
  ['{a:1}', 1],
  ['"abc', 4],
  ['"a\u0001"', 2],
  ['"\\x"', 2],
  ['"\\u12g4"', 5],
  ['01', 1],
  ['1 2', 2],
  ['{"a":1}}', 7],
  ['tru', 0],
  ['-', 1],
  ['1.', 2],
  ['1e', 2],
  ['-a', 1],
  ['[1e+]', 4],
];

test('jsonErrorOffset: -1 for valid JSON, the offending offset otherwise', () => {
  for (const text of VALID) assert.equal(jsonErrorOffset(text), -1, text.slice(0, 40));
  for (const [text, offset] of INVALID) {
    assert.throws(() => JSON.parse(text) as unknown, SyntaxError, text);
    assert.equal(jsonErrorOffset(text), offset, JSON.stringify(text));
    const v8 = /at position (\d+)/.exec((() => {
      try {
        JSON.parse(text);
        return '';
      } catch (err) {
        return (err as Error).message;
      }
    })());
    if (v8) assert.equal(offset, Number(v8[1]), `V8 agrees on ${JSON.stringify(text)}`);
  }
});

test('lineColumn and describeJsonError: 1-based, and the end of the input is named', () => {
  assert.deepEqual(lineColumn('ab\ncd\nef', 0), { line: 1, column: 1 });
  assert.deepEqual(lineColumn('ab\ncd\nef', 4), { line: 2, column: 2 });
  assert.deepEqual(lineColumn('ab\ncd\nef', 6), { line: 3, column: 1 });
  assert.equal(describeJsonError('{\n  "a": 1,\n  "b": x\n}'), 'line 3, column 8: unexpected character');
  assert.equal(describeJsonError('{\n  "a": "secret'), 'line 2, column 15: unexpected end of input');
});
