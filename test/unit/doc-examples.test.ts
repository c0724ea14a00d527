/** The documentation example parser: fences, annotations, transcripts. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { annotationProblem, commandsOf, hostExample, isScript, parseExamples } from '../support/doc-examples.js';

const page = [
  'text',
  '```sh',
  'echo one',
  '```',
  '```yaml file=web1.yaml',
  'name: web1',
  '```',
  '````console output',
  '$ echo a',
  'a',
  '$ true',
  '````',
  '```',
  'synopsis',
  '```',
  '```json',
  '{}',
  '```',
  '```sh no-run',
  'systemctl restart metad',
  '```',
  '```sh mystery',
  '```',
].join('\n');

test('examples: fences, languages, annotations', () => {
  const ex = parseExamples(page);
  assert.deepEqual(
    ex.map((e) => [e.line, e.lang, [...e.flags].join(' '), e.file ?? '']),
    [
      [2, 'sh', '', ''],
      [5, 'yaml', '', 'web1.yaml'],
      [8, 'console', 'output', ''],
      [13, '', '', ''],
      [16, 'json', '', ''],
      [19, 'sh', 'no-run', ''],
      [22, 'sh', 'mystery', ''],
    ],
  );
  assert.deepEqual(ex.map(annotationProblem), [
    undefined,
    undefined,
    undefined,
    'give the fence a language (sh, console, yaml, json, text, …)',
    'a document must say what it is: file=NAME, config or no-run',
    undefined,
    'unknown annotation mystery',
  ]);
  assert.deepEqual(ex.map(isScript), [true, false, true, false, false, false, true]);
  assert.equal(ex[1]?.body, 'name: web1\n');
});

test('examples: a sh block is one script, a transcript one command per $ line with its output', () => {
  const [sh, , transcript] = parseExamples(page);
  assert.deepEqual(sh && commandsOf(sh), [{ command: 'echo one\n' }]);
  assert.deepEqual(transcript && commandsOf(transcript), [
    { command: 'echo a', expect: 'a' },
    { command: 'true', expect: '' },
  ]);
  const [plain] = parseExamples('```console\n$ metadctl list\nNAME UUID\n```\n');
  assert.deepEqual(plain && commandsOf(plain), [{ command: 'metadctl list' }]);
});

test('examples: host=ID blocks are not run by the docs runner, and are found by their id', () => {
  const text = [
    '```sh host=install',
    'sudo systemctl start metad',
    '```',
    '```console output host=check',
    '$ metadctl health',
    'ok',
    '```',
    '```yaml host=x',
    'a: 1',
    '```',
    '```sh host=Bad_id',
    '```',
    '```sh no-run host=both',
    '```',
  ].join('\n');
  const ex = parseExamples(text);
  assert.deepEqual(
    ex.map((e) => e.host),
    ['install', 'check', 'x', 'Bad_id', 'both'],
  );
  assert.deepEqual(ex.map(isScript), [false, false, false, false, false]);
  assert.deepEqual(ex.map(annotationProblem), [
    undefined,
    undefined,
    'host= is for commands (sh, console)',
    'host= must be an id of [a-z0-9-]',
    'host= or no-run, not both',
  ]);
  assert.equal(hostExample(text, 'install').body, 'sudo systemctl start metad\n');
  assert.deepEqual(commandsOf(hostExample(text, 'check')), [{ command: 'metadctl health', expect: 'ok' }]);
  assert.throws(() => hostExample(text, 'missing'), /expected one host=missing example, found 0/);
});
