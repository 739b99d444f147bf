import { defineConfig } from 'vitest/config';

// The opt-in suite against a real cluster: not part of the workspace's projects (test/ only), so
// `pnpm test` never runs it. Run it with: pnpm --filter @skein/deploy-kubernetes test:real
export default defineConfig({ test: { include: ['real/**/*.test.ts'], testTimeout: 300_000, hookTimeout: 300_000 } });
