"""An upstream that needs OAuth (issue 19): `[upstreams.<id>.oauth]` client credentials.

Real peers: the authorization server is oidc-provider from npm (tests/e2e/oauth/server.mjs, the
one the auth tests run) issuing JWT access tokens for the named resource that live 3 s here; the
upstream is a second gateway with JWT auth on (no clock leeway), so a missing, wrong-audience or
expired token is refused with 401. The gateway under test reaches it with its own client
credentials (the secret from an environment variable), by the configured token endpoint or by
discovery from the issuer, and keeps calling after its first token expired (refreshed). Its own
clients send no token at all: what reaches the upstream can only be the gateway's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile

import anyio
import mcp_types as types
import pytest
from mcp.client.client import Client

from conftest import Gateway
from test_oauth_flow import CLIENT_ID, CLIENT_SECRET, NODE, PREFIX, REPO, free_port
from upstream_procs import federated_gateway, toy_http, upstream_health, wait_upstreams

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning"),
]
TOKEN_TTL_S = 3


def run_issuer(ttl_s: int):
    """The authorization server, issuing tokens that expire after `ttl_s`; yields its issuer URL."""
    if not NODE.exists() or not (PREFIX / "node_modules" / "oidc-provider").exists():
        pytest.fail("oidc-provider is not installed: `make test` runs tests/e2e/oauth/install.sh")
    shutil.copy(REPO / "tests" / "e2e" / "oauth" / "server.mjs", PREFIX / "server.mjs")  # next to its node_modules
    env = {"PORT": "0", "CLIENT_ID": CLIENT_ID, "CLIENT_SECRET": CLIENT_SECRET, "SCOPE": "mcp"}
    proc = subprocess.Popen(
        [str(NODE), str(PREFIX / "server.mjs")],
        env={**env, "TOKEN_TTL": str(ttl_s)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:  # bounded by the module timeout
        if line.startswith("listening "):
            issuer = line.split()[1]
            break
    else:
        pytest.fail("the authorization server did not start")
    yield issuer
    proc.kill()
    proc.wait()


@pytest.fixture(scope="module")
def short_tokens():
    yield from run_issuer(TOKEN_TTL_S)


@pytest.fixture(scope="module")
def lasting_tokens():
    yield from run_issuer(600)


@pytest.fixture(scope="module")
def protected(short_tokens, component_path):
    """An upstream that takes only tokens from that server for its own resource: a gateway with JWT auth."""
    port = free_port()
    gw = Gateway(
        {
            "MCPGW_EDGE": "python",
            "MCPGW_PORT": str(port),
            "MCPGW_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "MCPGW_AUTH": "jwt",
            "MCPGW_AUTH_ISSUER": short_tokens,
            "MCPGW_AUTH_JWKS_URL": short_tokens + "/jwks",
            "MCPGW_AUTH_AUTHORIZATION_SERVERS": short_tokens,
            "MCPGW_AUTH_LEEWAY_S": "0",
        }
    ).wait_ready()
    yield gw
    gw.stop()


def oauth_table(url: str, **oauth: object) -> str:
    lines = ["[upstreams.inner]", 'transport = "streamable-http"', f'url = "{url}"', "[upstreams.inner.oauth]"]
    return "\n".join(lines + [f"{k} = {v!r}" if not isinstance(v, str) else f'{k} = "{v}"' for k, v in oauth.items()])


def text_of(result) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, types.TextContent))


@pytest.mark.parametrize("found_by", ["token_endpoint", "issuer"])
async def test_an_oauth_upstream_is_reached_with_client_credentials_and_tokens_are_refreshed(
    short_tokens, protected, found_by
):
    where = {"token_endpoint": short_tokens + "/token"} if found_by == "token_endpoint" else {"issuer": short_tokens}
    table = oauth_table(
        protected.url + "/mcp", **where, client_id=CLIENT_ID, client_secret="${UPSTREAM_SECRET}", scopes=["mcp"]
    )
    gw = federated_gateway("python", [table], UPSTREAM_SECRET=CLIENT_SECRET)
    try:
        oauth = upstream_health(gw.url)["inner"]["oauth"]
        assert oauth["tokens_fetched"] >= 1 and oauth["error"] is None
        assert oauth["token_endpoint"] == short_tokens + "/token"  # configured, or read from the issuer's metadata
        assert oauth["resource"] == protected.url + "/mcp"
        async with Client(gw.url + "/mcp", mode="legacy") as merged:  # this client sends no token
            assert text_of(await merged.call_tool("inner__add", {"a": 2, "b": 3})) == "5"
            async with Client(gw.url + "/servers/inner/mcp", mode="legacy") as virtual:
                assert text_of(await virtual.call_tool("add", {"a": 1, "b": 1})) == "2"
                fetched = upstream_health(gw.url)["inner"]["oauth"]["tokens_fetched"]
                await anyio.sleep(TOKEN_TTL_S + 1)  # every token issued so far has expired
                # Still served: the tokens are renewed (the upstream refuses expired ones).
                assert text_of(await merged.call_tool("inner__add", {"a": 3, "b": 4})) == "7"
                assert text_of(await virtual.call_tool("add", {"a": 2, "b": 2})) == "4"
        health = upstream_health(gw.url)["inner"]
        assert health["state"] == "ready" and health["oauth"]["tokens_fetched"] > fetched
    finally:
        gw.stop()


def test_a_wrong_secret_keeps_the_upstream_down_and_says_why(short_tokens, protected):
    table = oauth_table(
        protected.url + "/mcp", issuer=short_tokens, client_id=CLIENT_ID, client_secret="not-the-secret", scopes=["mcp"]
    )
    fd, path = tempfile.mkstemp(prefix="mcpgw-", suffix=".toml")
    with os.fdopen(fd, "w") as f:
        f.write(table + "\n")
    gw = Gateway({"MCPGW_EDGE": "python", "MCPGW_CONFIG": path}).wait_ready()
    try:
        health = wait_upstreams(gw.url, timeout=30, predicate=lambda u: bool(u["oauth"]["error"]))["inner"]
        assert health["state"] != "ready"
        assert health["oauth"]["error"] == "the token endpoint answered 401 (invalid_client)"
        assert "no OAuth token" in health["error"]
        assert "not-the-secret" not in gw.log()
    finally:
        gw.stop()
        os.unlink(path)


async def test_a_token_the_upstream_refuses_is_replaced_and_the_request_sent_again(lasting_tokens, tmp_path):
    """A token revoked before its expiry: the upstream answers 401; the gateway gets a new one and
    sends the request once more, so the client sees no error. (The toy server refuses the tokens
    listed in TOY_REVOKED_TOKENS and records every request's headers.)"""
    record, revoked = tmp_path / "headers.jsonl", tmp_path / "revoked"
    revoked.write_text("")
    web = toy_http("web", TOY_RECORD_HEADERS=str(record), TOY_REVOKED_TOKENS=str(revoked))

    def tokens_seen() -> list[str]:
        lines = record.read_text().splitlines()
        return [json.loads(line).get("authorization", "").removeprefix("Bearer ") for line in lines]

    table = oauth_table(
        web.url, token_endpoint=lasting_tokens + "/token", client_id=CLIENT_ID, client_secret="${S}", scopes=["mcp"]
    )
    gw = federated_gateway("python", [table], S=CLIENT_SECRET)
    try:
        async with Client(gw.url + "/mcp", mode="legacy") as client:
            assert text_of(await client.call_tool("inner__whoami", {})).startswith("web pid=")
            first = set(tokens_seen())
            assert len(first) == 1 and "" not in first  # one token, on every request
            revoked.write_text("\n".join(first) + "\n")
            assert text_of(await client.call_tool("inner__whoami", {})).startswith("web pid=")  # no error
        seen = tokens_seen()
        assert seen[-1] not in first  # the request went again with a new token
        assert upstream_health(gw.url)["inner"]["oauth"]["tokens_fetched"] == 2
    finally:
        gw.stop()
        web.stop()


def test_a_discovered_token_endpoint_must_be_https_unless_it_is_on_this_machine():
    """The client secret is sent to the token endpoint: discovery never sends it in clear text to
    another host (a local authorization server on loopback, as in these tests, is allowed)."""
    from mcpgw.federation.oauth import _may_carry_secret

    assert _may_carry_secret("https://auth.example.com/token")
    assert _may_carry_secret("http://127.0.0.1:9000/token")
    assert _may_carry_secret("http://localhost:9000/token")
    assert _may_carry_secret("http://[::1]:9000/token")
    assert not _may_carry_secret("http://auth.example.com/token")
    assert not _may_carry_secret("ftp://auth.example.com/token")
