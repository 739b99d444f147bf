// ESLint (flat config) for the whole repository: `pnpm lint`, also a step of `npm test`.
// Type-aware (typescript-eslint): the types come from each package's tsconfig.json for src/ and
// from tsconfig.test.json for the tests, so run `pnpm build` first (packages see each other's
// types through dist/).
import js from '@eslint/js';
import { defineConfig } from 'eslint/config';
import tseslint from 'typescript-eslint';

const root = import.meta.dirname;

/** Modules that do I/O or hold timers: none of them belongs in a pure state machine. */
const IO_MODULES = [
  '@grpc/grpc-js',
  '@grpc/proto-loader',
  'net',
  'node:net',
  'fs',
  'node:fs',
  'fs/promises',
  'node:fs/promises',
  'child_process',
  'node:child_process',
  'http',
  'node:http',
  'https',
  'node:https',
  'http2',
  'node:http2',
  'dgram',
  'node:dgram',
  'worker_threads',
  'node:worker_threads',
  'timers',
  'node:timers',
  'timers/promises',
  'node:timers/promises',
];

export default defineConfig(
  {
    ignores: ['**/dist/**', '**/node_modules/**', 'packages/protocol/src/gen/**', '.artifacts/**'],
  },
  {
    files: ['packages/*/src/**/*.ts', 'packages/*/test/**/*.ts', 'tools/test/**/*.ts'],
    extends: [js.configs.recommended, tseslint.configs.base, tseslint.configs.eslintRecommended],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: root },
    },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      // (eslintRecommended turns off what TypeScript checks; tsc only suggests this one)
      'no-unreachable': 'error',
      'no-unused-vars': 'off',
      // A forgotten promise in a daemon is a bug: await it, or `void p.catch(log)` on purpose.
      '@typescript-eslint/no-floating-promises': 'error',
      // No async callback where the caller ignores the promise (event emitters, forEach, ...).
      '@typescript-eslint/no-misused-promises': 'error',
      // A switch over a union (events, actions, states) handles every member.
      // (a `default:` does not count: list the members, so a new one is a decision at every switch)
      '@typescript-eslint/switch-exhaustiveness-check': 'error',
      '@typescript-eslint/await-thenable': 'error',
    },
  },
  {
    // The tests are not in the packages' tsconfig.json (tsc -b builds src/ only).
    files: ['packages/*/test/**/*.ts', 'tools/test/**/*.ts'],
    languageOptions: {
      parserOptions: { projectService: false, project: './tsconfig.test.json', tsconfigRootDir: root },
    },
  },
  {
    // The state machines are pure: no sockets, files, processes, threads or timers (the clock and
    // the id generator are injected), and only the I/O-free entry of @skein/common.
    files: ['packages/core-scheduler/src/state/**/*.ts', 'packages/core-worker/src/state/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: [
            ...IO_MODULES.map((name) => ({
              name,
              message: 'state/ is a pure state machine: do the I/O in the shell and feed the result back as an event.',
            })),
            {
              name: '@skein/common',
              message: "the root index loads gRPC: import from '@skein/common/lite' (add what is missing there if it is I/O-free).",
            },
            {
              name: '@skein/protocol',
              message: 'state/ works on plain domain types; the shell converts to and from protobuf messages.',
            },
          ],
          patterns: [
            { group: ['@skein/*/src/*', '@skein/*/dist/*'], message: 'no deep imports into @skein packages.' },
          ],
        },
      ],
      'no-restricted-globals': [
        'error',
        ...['setTimeout', 'setInterval', 'setImmediate', 'clearTimeout', 'clearInterval', 'clearImmediate', 'queueMicrotask'].map(
          (name) => ({ name, message: 'state/ has no timers: the shell schedules, and passes the time in with the event.' }),
        ),
      ],
    },
  },
  {
    // The modules behind '@skein/common/lite' (task threads and the state machines load it): no
    // gRPC or generated protocol code at run time (type imports are erased), no I/O modules.
    // node:net is allowed for its pure address checks only.
    files: [
      'packages/common/src/lite.ts',
      'packages/common/src/errors.ts',
      'packages/common/src/values.ts',
      'packages/common/src/functions.ts',
      'packages/common/src/address.ts',
      'packages/common/src/units.ts',
      'packages/common/src/log.ts',
      'packages/common/src/transition-log.ts',
      'packages/common/src/faults.ts',
    ],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          paths: [
            ...IO_MODULES.filter((name) => name !== 'net' && name !== 'node:net').map((name) => ({
              name,
              allowTypeImports: true,
              message: "'@skein/common/lite' loads without I/O modules: keep this in the root index only.",
            })),
            {
              name: 'node:net',
              allowImportNames: ['isIP', 'isIPv4', 'isIPv6'],
              message: "'@skein/common/lite' may use node:net's pure address checks only.",
            },
            {
              name: '@skein/protocol',
              allowTypeImports: true,
              message: "'@skein/common/lite' loads without the generated protocol code: import types only.",
            },
          ],
        },
      ],
    },
  },
);
