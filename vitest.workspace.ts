import { readdirSync, existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { defineWorkspace } from 'vitest/config';

// Before every test file: validation mode on, and the leak check after it (see the file).
const setupFiles = [fileURLToPath(new URL('./tools/test/support/setup.ts', import.meta.url))];

// One vitest project per package (named after its folder), plus the repo-level tests in tools/test.
const packages = readdirSync(new URL('./packages', import.meta.url)).filter((d) =>
  existsSync(new URL(`./packages/${d}/test`, import.meta.url)),
);

export default defineWorkspace([
  ...packages.map((name) => ({
    test: {
      name,
      root: `./packages/${name}`,
      include: ['test/**/*.test.ts'],
      setupFiles,
      testTimeout: 60_000,
      hookTimeout: 60_000,
    },
  })),
  {
    test: {
      name: 'repo',
      root: './tools',
      include: ['test/**/*.test.ts'],
      setupFiles,
      testTimeout: 300_000,
      hookTimeout: 300_000,
    },
  },
]);
