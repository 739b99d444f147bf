#!/usr/bin/env bash
# Kept for older instructions: bench/setup.sh installs the Dask side and redis-server.
exec bash "$(dirname "${BASH_SOURCE[0]}")/setup.sh" "$@"
