// Lint: typescript-eslint's strict, type-checked set over every TypeScript source.
// Rules switched off carry the reason beside them. `npm run lint` runs this and the
// formatter check; .ci/run runs it before the tests.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', '**/*.mjs', '**/*.js', '**/*.cjs'] },
  js.configs.recommended,
  ...tseslint.configs.strictTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      // Template literals with numbers are how this code builds messages and paths; numbers
      // print as expected. Other types (objects, unions with undefined) stay refused.
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true }],
      // node:test's test()/describe() return promises the runner itself awaits.
      '@typescript-eslint/no-floating-promises': [
        'error',
        { allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['test', 'describe', 'it', 'suite'] }] },
      ],
      // `() => void x()` arrow shorthands for callbacks are idiomatic; the rule's point (using a
      // void result as a value) is still caught by no-meaningless-void-operator and the types.
      '@typescript-eslint/no-confusing-void-expression': ['error', { ignoreArrowShorthand: true }],
      // `const { omitted: _omitted, ...rest } = o` is how the code drops keys from an object.
      '@typescript-eslint/no-unused-vars': ['error', { ignoreRestSiblings: true }],
    },
  },
  {
    files: ['test/**/*.ts', 'bench/**/*.ts'],
    rules: {
      // Tests and benchmarks want to crash right where an expected value is missing; `!` says so.
      '@typescript-eslint/no-non-null-assertion': 'off',
    },
  },
);
