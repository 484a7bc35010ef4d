"""The whole OAuth flow with real peers: a real authorization server (oidc-provider from npm,
resource indicators on, JWT access tokens; tests/e2e/oauth/) and the `mcp` SDK client's OAuth
support (client credentials) against the gateway in both edge modes. The client starts with no
token: it gets 401, reads the gateway's RFC 9728 metadata, discovers the authorization server,
obtains a token for the gateway's resource, then lists and calls tools."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import httpx
import httpx2
import mcp_types as types
import pytest
from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

from conftest import Gateway

pytestmark = pytest.mark.timeout(120)
REPO = Path(__file__).resolve().parents[2]
NODE = REPO / ".build" / "conformance" / "node_modules" / "node" / "bin" / "node"
PREFIX = REPO / ".build" / "oauth"
CLIENT_ID, CLIENT_SECRET = "mcp-test-client", "a-client-secret-for-the-test-only-0123456789"


class Tokens:
    """The SDK's token storage, in memory; also shows what the client obtained."""

    def __init__(self) -> None:
        self.tokens: Any = None
        self.client_info: Any = None

    async def get_tokens(self) -> Any:
        return self.tokens

    async def set_tokens(self, tokens: Any) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> Any:
        return self.client_info

    async def set_client_info(self, client_info: Any) -> None:
        self.client_info = client_info


@pytest.fixture(scope="module")
def issuer():
    if not NODE.exists() or not (PREFIX / "node_modules" / "oidc-provider").exists():
        pytest.fail("oidc-provider is not installed: `make test` runs tests/e2e/oauth/install.sh")
    shutil.copy(REPO / "tests" / "e2e" / "oauth" / "server.mjs", PREFIX / "server.mjs")  # next to its node_modules
    proc = subprocess.Popen(
        [str(NODE), str(PREFIX / "server.mjs")],
        env={"PORT": "0", "CLIENT_ID": CLIENT_ID, "CLIENT_SECRET": CLIENT_SECRET, "SCOPE": "mcp"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:  # bounded by the module timeout
        if line.startswith("listening "):
            url = line.split()[1]
            break
    else:
        pytest.fail("the authorization server did not start")
    yield url
    proc.kill()
    proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(params=["wasm", "python"])
def gateway(request, issuer, component_path):
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    gw = Gateway(
        {
            "MCPGW_EDGE": request.param,
            "MCPGW_PORT": str(port),
            "MCPGW_PUBLIC_URL": public,
            "MCPGW_AUTH": "jwt",
            "MCPGW_AUTH_ISSUER": issuer,
            "MCPGW_AUTH_JWKS_URL": issuer + "/jwks",
            "MCPGW_AUTH_AUTHORIZATION_SERVERS": issuer,
        }
    ).wait_ready()
    yield gw
    gw.stop()


async def test_the_sdk_client_runs_the_whole_oauth_flow_against_the_gateway(gateway, issuer):
    url = gateway.url + "/mcp"
    # Without a token: 401 pointing at the resource metadata, which names the authorization server.
    async with httpx.AsyncClient(timeout=10) as plain:
        r = await plain.post(
            url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"}, headers={"accept": "application/json"}
        )
        assert r.status_code == 401 and "resource_metadata=" in r.headers["www-authenticate"]
        metadata = (await plain.get(gateway.url + "/.well-known/oauth-protected-resource/mcp")).json()
    assert metadata["resource"] == url and metadata["authorization_servers"] == [issuer]

    tokens = Tokens()
    provider = ClientCredentialsOAuthProvider(
        server_url=url, storage=tokens, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, scope="mcp", issuer=issuer
    )
    async with (
        httpx2.AsyncClient(auth=provider, timeout=30) as http,
        streamable_http_client(url, http_client=http) as (read, write, *_),
        ClientSession(read, write) as session,
    ):
        assert (await session.initialize()).server_info.name == "mcpgw"
        assert "add" in {t.name for t in (await session.list_tools()).tools}
        result = await session.call_tool("add", {"a": 2, "b": 3})
        assert isinstance(result.content[0], types.TextContent) and result.content[0].text == "5"
    assert tokens.tokens is not None  # the token came from the authorization server, for this resource
    async with httpx.AsyncClient(timeout=10) as plain:
        jwks = (await plain.get(gateway.url + "/health")).json()["auth"]["jwks"]
    assert "test-key" in jwks["keys"]  # the gateway verified it with the authorization server's key
