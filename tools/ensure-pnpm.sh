#!/usr/bin/env bash
# Makes sure `pnpm` on PATH is the version pinned in package.json ("packageManager": "pnpm@X").
# When it is not, installs it with `npm i -g pnpm@X` (needs only Node.js and npm).
#
#   bash tools/ensure-pnpm.sh     # install if needed
#   . tools/ensure-pnpm.sh        # same, and PATH changes (user-prefix fallback) stay in this shell
#
# Install scripts stay blocked (npm's default): pnpm then runs through Node.js, which works the same.

skein_ensure_pnpm() {
  local root want have prefix
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  want="$(node -p "(require('$root/package.json').packageManager || '').replace(/^pnpm@/, '').split('+')[0]" 2>/dev/null)"
  want="${want:-12.4.2}"
  export COREPACK_ENABLE_DOWNLOAD_PROMPT=0 COREPACK_ENABLE_STRICT=0

  have="$(pnpm --version 2>/dev/null </dev/null || true)"
  if [ "$have" = "$want" ]; then
    return 0
  fi
  echo "ensure-pnpm: found pnpm '${have:-none}', installing pnpm@$want with npm" >&2

  prefix="$(npm prefix -g 2>/dev/null)"
  if [ -n "$prefix" ] && { [ -w "$prefix/lib" ] || [ -w "$prefix" ]; }; then
    npm install -g --no-audit --no-fund "pnpm@$want" </dev/null ||
      npm install -g --force --no-audit --no-fund "pnpm@$want" </dev/null || return 1
    case ":$PATH:" in *":$prefix/bin:"*) ;; *) export PATH="$prefix/bin:$PATH" ;; esac
  else
    # No write access to npm's global prefix (not root): install into ~/.local instead.
    prefix="$HOME/.local"
    npm install -g --prefix "$prefix" --no-audit --no-fund "pnpm@$want" </dev/null || return 1
    export PATH="$prefix/bin:$PATH"
    echo "ensure-pnpm: installed into $prefix/bin; add it to your PATH" >&2
  fi
  hash -r 2>/dev/null || true

  have="$(pnpm --version 2>/dev/null </dev/null || true)"
  if [ "$have" != "$want" ]; then
    echo "ensure-pnpm: pnpm --version says '${have:-nothing}' after installing pnpm@$want" \
      "(is another pnpm earlier on PATH? $(command -v pnpm || echo 'pnpm not on PATH'))" >&2
    return 1
  fi
  echo "ensure-pnpm: pnpm $have ready ($(command -v pnpm))" >&2
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  skein_ensure_pnpm
else
  skein_ensure_pnpm || return 1
fi
