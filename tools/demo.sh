#!/usr/bin/env bash
# The demo command (`npm run demo`): installs pnpm and the dependencies, builds, and runs
# examples/demo.mjs (a LocalCluster with its dashboard). Needs only Node.js >= 20 and npm.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

. tools/ensure-pnpm.sh
pnpm install --frozen-lockfile </dev/null || pnpm install </dev/null
pnpm build
exec node examples/demo.mjs "$@"
