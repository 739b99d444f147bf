#!/usr/bin/env bash
# Installs the Debian packages the tests need (beyond Node.js and the pnpm dependencies).
# As root: apt-get installs the missing ones. Otherwise with password-less sudo: the same via sudo.
# Otherwise: prints what to install and carries on (the tests that need them will then fail and
# say why).
#
# To add a package, append it to APT_PACKAGES with a comment naming the test that needs it.
set -euo pipefail

APT_PACKAGES=(
  python3-grpcio      # tools/test/python-client.test.ts: examples/python uses grpc
  python3-grpc-tools  # examples/python generates its stubs with grpc_tools.protoc
  chromium            # packages/skein/test/dashboard.test.ts: the dashboard page in headless Chromium (playwright-core)
  openssh-server      # packages/deploy-ssh/test: a real sshd on loopback (tools/sshd-local.sh)
  munge               # packages/deploy-slurm/test: a real single-node Slurm (tools/slurm-local.sh)
  slurmctld
  slurmd
  slurm-client
  redis-server        # bench/run.mjs --short (run by .ci/run after npm test): the BullMQ peer benchmark starts its own redis-server
)

if ! command -v dpkg >/dev/null 2>&1; then
  echo "setup-test-deps: not a Debian system (no dpkg); make sure these are installed: ${APT_PACKAGES[*]}" >&2
  exit 0
fi

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  if ! dpkg -s "$pkg" 2>/dev/null | grep -q '^Status: install ok installed'; then
    missing+=("$pkg")
  fi
done

# packages/kube-emulator/test: kubectl against the emulator. Any kubectl on PATH does (1.20 and
# 1.32 tested); Debian's is kubernetes-client, which would clash with another kubectl package.
if ! command -v kubectl >/dev/null 2>&1; then missing+=(kubernetes-client); fi

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup-test-deps: all present (${APT_PACKAGES[*]})"
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  sudo=(sudo -n)
else
  echo "setup-test-deps: missing Debian packages: ${missing[*]}" >&2
  echo "setup-test-deps: install them with: sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 0
fi

echo "setup-test-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq </dev/null
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
echo "setup-test-deps: installed ${missing[*]}"
