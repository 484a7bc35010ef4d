#!/usr/bin/env bash
# Install the MCP conformance suite and a Node 22 runtime for it into
# <repo>/.build/conformance, using only the system npm (the suite needs
# Node >= 22; the machine's /usr/bin/node may be older). Idempotent: a stamp
# file naming the pinned versions makes a second run a no-op.
set -euo pipefail

NODE_VERSION="22.23.3"          # npm package `node`: ships a node binary
CONFORMANCE_VERSION="0.1.16"    # npm package `@modelcontextprotocol/conformance`

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
prefix="$repo/.build/conformance"
stamp="$prefix/.installed-node${NODE_VERSION}-conformance${CONFORMANCE_VERSION}"
node_bin="$prefix/node_modules/node/bin/node"
suite_js="$prefix/node_modules/@modelcontextprotocol/conformance/dist/index.js"

report() {
    echo "node:        $node_bin ($("$node_bin" --version))"
    echo "conformance: $suite_js (run as: $node_bin $suite_js --help)"
}

if [[ -f "$stamp" && -x "$node_bin" && -f "$suite_js" ]]; then
    echo "conformance suite already installed (stamp $stamp)"
    report
    exit 0
fi

command -v npm >/dev/null || { echo "install.sh: npm not found" >&2; exit 1; }
mkdir -p "$prefix"
# A private package.json keeps npm from walking up to the repo root. Its
# allowScripts entry approves the `node` package's preinstall (it fetches the
# platform binary package node-<os>-<arch> from the registry): npm 11 is moving
# to blocking dependency install scripts unless approved there.
cat > "$prefix/package.json" <<JSON
{"name": "mcpgw-conformance", "private": true, "allowScripts": {"node@${NODE_VERSION}": true}}
JSON

npm install --prefix "$prefix" --save-exact --no-audit --no-fund --ignore-scripts=false \
    "node@${NODE_VERSION}" \
    "@modelcontextprotocol/conformance@${CONFORMANCE_VERSION}"

"$node_bin" --version | grep -q "^v${NODE_VERSION}$" || {
    echo "install.sh: $node_bin is not v${NODE_VERSION}" >&2; exit 1; }
[[ -f "$suite_js" ]] || { echo "install.sh: $suite_js missing" >&2; exit 1; }

rm -f "$prefix"/.installed-*
touch "$stamp"
report
