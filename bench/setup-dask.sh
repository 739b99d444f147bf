#!/usr/bin/env bash
# Installs the Dask side of the benchmark: Debian's python3-distributed (2022.12.x) for
# /usr/bin/python3 (not a pyenv/venv python). Idempotent: does nothing when it is already there.
set -euo pipefail
PY=/usr/bin/python3
if [ -x "$PY" ] && "$PY" -c 'import distributed, psutil' >/dev/null 2>&1; then
  echo "dask distributed $("$PY" -c 'import distributed; print(distributed.__version__)') already installed for $PY"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq python3-distributed python3-psutil >/dev/null
echo "installed dask distributed $("$PY" -c 'import distributed; print(distributed.__version__)') for $PY"
