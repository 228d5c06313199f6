// Lint rules, including the architecture of DESIGN.md section 3:
//   wire <- core <- runtime/store <- api <- cli;  sim drives core directly.
// src/core is sans-IO: no node: modules, timers, Date, Math.random or process.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const layer = (name) => `**/src/${name}/**`;
const noImportsOf = (...layers) => ({
  patterns: layers.map((l) => ({
    group: [`**/${l}/*`, `**/${l}`, `../${l}/**`],
    message: `imports must flow one way (DESIGN.md section 3): this layer may not import src/${l}`,
  })),
});

const coreBans = {
  'no-restricted-imports': ['error', {
    patterns: [
      { group: ['node:*', 'fs', 'net', 'dgram', 'os', 'child_process', 'better-sqlite3', 'pino'], message: 'src/core is sans-IO (DESIGN.md section 3)' },
      ...noImportsOf('runtime', 'store', 'api', 'cli', 'sim').patterns,
    ],
  }],
  'no-restricted-globals': ['error',
    { name: 'process', message: 'src/core may not read process: inject configuration' },
    { name: 'setTimeout', message: 'src/core may not set timers: return a wake-up time' },
    { name: 'setInterval', message: 'src/core may not set timers: return a wake-up time' },
    { name: 'setImmediate', message: 'src/core may not set timers' },
    { name: 'queueMicrotask', message: 'src/core may not schedule work' },
    { name: 'Date', message: 'src/core may not read the clock: take nowMs as input' },
    { name: 'performance', message: 'src/core may not read the clock: take nowMs as input' },
    { name: 'fetch', message: 'src/core is sans-IO' },
    { name: 'console', message: 'src/core returns events; it does not log' },
    { name: 'Buffer', message: 'src/core uses Uint8Array' },
  ],
  'no-restricted-properties': ['error',
    { object: 'Math', property: 'random', message: 'src/core may not use Math.random: inject a random source' },
    { object: 'globalThis', message: 'src/core may not reach globals' },
  ],
};

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'src/wire/gen/**', 'lab/tmp/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { process: 'readonly', console: 'readonly', Buffer: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', setInterval: 'readonly', clearInterval: 'readonly', setImmediate: 'readonly', URL: 'readonly' } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
    },
  },
  { files: [layer('core')], rules: coreBans },
  { files: [layer('wire')], rules: { 'no-restricted-imports': ['error', noImportsOf('core', 'runtime', 'store', 'api', 'cli', 'sim')] } },
  { files: [layer('runtime'), layer('store')], rules: { 'no-restricted-imports': ['error', noImportsOf('api', 'cli', 'sim')] } },
  { files: [layer('api')], rules: { 'no-restricted-imports': ['error', noImportsOf('cli', 'sim')] } },
  { files: [layer('sim')], rules: { 'no-restricted-imports': ['error', noImportsOf('runtime', 'store', 'api', 'cli')] } },
);
