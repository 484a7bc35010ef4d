#!/usr/bin/env bash
# Install oidc-provider (npm), the real OAuth 2.1 authorization server the auth tests run, into
# <repo>/.build/oauth. It runs on the Node 22 that tests/e2e/conformance/install.sh installs
# (run that first). Idempotent: a stamp naming the pinned version makes a second run a no-op.
set -euo pipefail

OIDC_PROVIDER_VERSION="9.13.3"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
prefix="$repo/.build/oauth"
stamp="$prefix/.installed-oidc-provider${OIDC_PROVIDER_VERSION}"

if [[ -f "$stamp" && -d "$prefix/node_modules/oidc-provider" ]]; then
    echo "oidc-provider already installed (stamp $stamp)"
    exit 0
fi

command -v npm >/dev/null || { echo "install.sh: npm not found" >&2; exit 1; }
mkdir -p "$prefix"
# A private package.json keeps npm from walking up to the repo root; ESM for server.mjs's imports.
cat > "$prefix/package.json" <<JSON
{"name": "mcpgw-oauth", "private": true, "type": "module"}
JSON
npm install --prefix "$prefix" --save-exact --no-audit --no-fund "oidc-provider@${OIDC_PROVIDER_VERSION}"
[[ -d "$prefix/node_modules/oidc-provider" ]] || { echo "install.sh: oidc-provider missing" >&2; exit 1; }
rm -f "$prefix"/.installed-*
touch "$stamp"
echo "oidc-provider ${OIDC_PROVIDER_VERSION} in $prefix"
