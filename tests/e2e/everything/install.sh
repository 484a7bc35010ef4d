#!/usr/bin/env bash
# Install the reference MCP "everything" server (npm @modelcontextprotocol/server-everything,
# pinned) into <repo>/.build/everything, for the federation tests that run it as an upstream over
# Streamable HTTP, legacy SSE and stdio. It runs on the Node 22 that
# tests/e2e/conformance/install.sh installs (run that first). Idempotent: a stamp naming the
# pinned version makes a second run a no-op.
set -euo pipefail

EVERYTHING_VERSION="2026.8.31"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
prefix="$repo/.build/everything"
stamp="$prefix/.installed-server-everything${EVERYTHING_VERSION}"

if [[ -f "$stamp" && -d "$prefix/node_modules/@modelcontextprotocol/server-everything" ]]; then
    echo "server-everything already installed (stamp $stamp)"
    exit 0
fi

command -v npm >/dev/null || { echo "install.sh: npm not found" >&2; exit 1; }
mkdir -p "$prefix"
# A private package.json keeps npm from walking up to the repo root.
cat > "$prefix/package.json" <<JSON
{"name": "mcpgw-everything", "private": true}
JSON
npm install --prefix "$prefix" --save-exact --no-audit --no-fund "@modelcontextprotocol/server-everything@${EVERYTHING_VERSION}"
[[ -d "$prefix/node_modules/@modelcontextprotocol/server-everything" ]] || { echo "install.sh: server-everything missing" >&2; exit 1; }
rm -f "$prefix"/.installed-*
touch "$stamp"
echo "server-everything ${EVERYTHING_VERSION} in $prefix"
