#!/usr/bin/env bash
# The test command (`npm test`): installs what it needs, then builds, checks and tests everything.
#   npm test                          # everything
#   npm test -- --project common      # extra arguments go to `vitest run`
# Needs only Node.js >= 20 and npm: pnpm and the Debian packages the tests use are installed here.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }

step "pnpm"
. tools/ensure-pnpm.sh

step "pnpm install"
if [ -n "${CI:-}" ] && [ "${CI}" != "false" ] && [ "${CI}" != "0" ]; then
  pnpm install --frozen-lockfile </dev/null
else
  pnpm install --frozen-lockfile </dev/null || {
    echo "test.sh: the lockfile is out of date with package.json; running a plain pnpm install" >&2
    pnpm install </dev/null
  }
fi

step "test dependencies (Debian packages)"
bash tools/setup-test-deps.sh

# From here on every step runs (so one CI run reports every problem), and the script fails at the
# end if any of them failed.
failed=()

step "pnpm build"
pnpm build || failed+=("build")

step "generated code is fresh (node tools/codegen.mjs --check)"
node tools/codegen.mjs --check || failed+=("codegen --check")

step "protocol: buf lint, and buf breaking against the released protocol (pnpm check:proto)"
pnpm check:proto || failed+=("check:proto")

step "dependency rules (node tools/check-deps.mjs)"
node tools/check-deps.mjs || failed+=("check-deps")

step "tests type-check (tsc -p tsconfig.test.json)"
pnpm exec tsc -p tsconfig.test.json || failed+=("tests type-check")

step "lint (pnpm lint: eslint, type-aware, after the build)"
pnpm lint || failed+=("lint")

step "vitest run $*"
mkdir -p .artifacts
rm -f .artifacts/vitest.json
pnpm exec vitest run --reporter=default --reporter=json --outputFile.json=.artifacts/vitest.json "$@" </dev/null ||
  failed+=("vitest")

if [ -f .artifacts/vitest.json ]; then
  # One plain closing line: "tests: N passed, N failed, N skipped".
  node tools/test-summary.mjs .artifacts/vitest.json || true
fi

if [ ${#failed[@]} -gt 0 ]; then
  echo "test.sh: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "test.sh: all checks passed"
