#!/usr/bin/env bash
# Installs what the benchmark suite needs beyond `pnpm install` (which brings bullmq, ioredis and
# piscina from bench/package.json): Debian's python3-distributed (2022.12.x) for /usr/bin/python3
# (not a pyenv/venv python), the Dask side; and Debian's redis-server, for the BullMQ side (the
# bench starts its own redis-server on a loopback port and stops it; the packaged service is not
# used). Idempotent: installs only what is missing.
set -euo pipefail
PY=/usr/bin/python3
missing=()
if [ -x "$PY" ] && "$PY" -c 'import distributed, psutil' >/dev/null 2>&1; then
  echo "dask distributed $("$PY" -c 'import distributed; print(distributed.__version__)') already installed for $PY"
else
  missing+=(python3-distributed python3-psutil)
fi
if command -v redis-server >/dev/null 2>&1; then
  echo "$(redis-server --version | cut -d' ' -f1-3) already installed"
else
  missing+=(redis-server)
fi
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq </dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null >/dev/null
echo "installed ${missing[*]}"
if [ -x "$PY" ] && "$PY" -c 'import distributed' >/dev/null 2>&1; then
  echo "dask distributed $("$PY" -c 'import distributed; print(distributed.__version__)') for $PY"
fi
