"""Identity and authorization (auth/, docs/auth.md) against real `mcpgw serve` processes in both
edge modes: every rejection as raw HTTP, the RFC 9728 metadata, scopes, policy filtering, sessions
bound to their principal, API keys, the non-loopback refusal, and JWKS outages. The JWKS is served
by a small HTTP server in the test; keys come from `cryptography`; tokens from PyJWT."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from conftest import Gateway

ISSUER = "https://issuer.example.test"
PUBLIC = "https://gw.example.test"
RESOURCE = PUBLIC + "/mcp"
META = PUBLIC + "/.well-known/oauth-protected-resource/mcp"
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}
HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
POLICY = """
[[auth.policy.rules]]
endpoint = "/sse"
scopes = ["legacy"]

[[auth.policy.rules]]
tool = "sleep"
scopes = ["slow"]

[[auth.policy.rules]]
tool = "add"
claims = { groups = ["math"] }

[[auth.policy.rules]]
prompt = "greet"
scopes = ["social"]
"""


def _rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _jwk(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, kid: str) -> dict:
    alg = "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"
    algo = jwt.get_algorithm_by_name(alg)
    jwk = json.loads(algo.to_jwk(key.public_key()))
    return {**jwk, "kid": kid, "alg": alg, "use": "sig"}


class Jwks:
    """A JWKS endpoint the test controls: its keys (rotation) and whether it answers."""

    def __init__(self) -> None:
        self.keys: list[dict] = []
        self.down = False
        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits += 1
                if outer.down:
                    self.send_response(503)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                body = json.dumps({"keys": outer.keys}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def token(key, kid: str, alg: str = "RS256", **claims) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "sub": "alice", "aud": RESOURCE, "iat": now, "exp": now + 600, "scope": "", **claims}
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(body, key, algorithm=alg, headers={"kid": kid})


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    jwks = Jwks()
    key = _rsa()
    jwks.keys = [_jwk(key, "k1")]
    config = tmp_path_factory.mktemp("auth") / "mcpgw.toml"
    config.write_text(POLICY)
    yield jwks, key, config
    jwks.close()


@pytest.fixture(scope="module", params=["wasm", "python"])
def gw(request, setup, component_path):
    jwks, _, config = setup
    g = Gateway(
        {
            "MCPGW_EDGE": request.param,
            "MCPGW_AUTH": "jwt",
            "MCPGW_AUTH_ISSUER": ISSUER,
            "MCPGW_AUTH_JWKS_URL": jwks.url,
            "MCPGW_AUTH_JWKS_MIN_REFRESH_S": "1",
            "MCPGW_PUBLIC_URL": PUBLIC,
            "MCPGW_CONFIG": str(config),
        }
    ).wait_ready()
    g.mode = request.param
    yield g
    g.stop()


def post(gw, body, tok=None, headers=None, path="/mcp", params=None):
    h = dict(HEADERS)
    if tok is not None:
        h["authorization"] = f"Bearer {tok}"
    h.update(headers or {})
    return httpx.post(gw.url + path, json=body, headers=h, params=params, timeout=10)


def health(gw) -> dict:
    return httpx.get(gw.url + "/health", timeout=5).json()


def test_no_token_gets_401_with_the_metadata_url(gw):
    before = health(gw)["live"]["sessions"]
    r = post(gw, INIT)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == f'Bearer resource_metadata="{META}"'
    assert r.json()["error"]["code"] == -32001
    assert health(gw)["live"]["sessions"] == before  # nothing reached the engine


def test_token_in_the_query_string_is_never_read(gw, setup):
    _, key, _ = setup
    r = post(gw, INIT, params={"access_token": token(key, "k1")})
    assert r.status_code == 401
    assert "invalid_token" not in r.headers["www-authenticate"]


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer a b", "Bearer \u00e9", "bearer"])
def test_malformed_authorization_gets_401(gw, header):
    r = httpx.post(gw.url + "/mcp", json=INIT, headers={**HEADERS, "authorization": header.encode("utf-8")}, timeout=10)
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith(f'Bearer resource_metadata="{META}"')


def _bad_tokens(key):
    other = _rsa()
    now = int(time.time())
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    unsigned = jwt.encode({"iss": ISSUER, "sub": "a", "aud": RESOURCE, "exp": now + 600}, None, algorithm="none")
    # HS256 keyed with the public key's PEM (the classic algorithm confusion): PyJWT refuses to
    # build it, so it is made by hand with hmac.
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k1"}).encode())
    body = b64(json.dumps({"iss": ISSUER, "sub": "a", "aud": RESOURCE, "exp": now + 600}).encode())
    mac = b64(hmac.new(public_pem, f"{head}.{body}".encode(), hashlib.sha256).digest())
    good = token(key, "k1")
    h, _, s = good.split(".")
    tampered_body = b64(json.dumps({"iss": ISSUER, "sub": "mallory", "aud": RESOURCE, "exp": now + 600}).encode())
    return {
        "wrong issuer": token(key, "k1", iss="https://evil.example.test"),
        "wrong audience": token(key, "k1", aud="https://other.example.test/mcp"),
        "expired": token(key, "k1", exp=now - 3600, iat=now - 7200),
        "not yet valid": token(key, "k1", nbf=now + 3600),
        "alg none": unsigned,
        "hs256 with the public key": f"{head}.{body}.{mac}",
        "forged signature": token(other, "k1"),
        "tampered claims": f"{h}.{tampered_body}.{s}",
        "no exp": token(key, "k1", exp=None),
    }


@pytest.mark.parametrize(
    "case",
    [
        "wrong issuer",
        "wrong audience",
        "expired",
        "not yet valid",
        "alg none",
        "hs256 with the public key",
        "forged signature",
        "tampered claims",
        "no exp",
    ],
)
def test_every_bad_token_gets_401_invalid_token(gw, setup, case):
    _, key, _ = setup
    before = health(gw)
    r = post(gw, INIT, _bad_tokens(key)[case])
    assert r.status_code == 401, r.text
    challenge = r.headers["www-authenticate"]
    assert challenge.startswith(f'Bearer resource_metadata="{META}", error="invalid_token"'), challenge
    after = health(gw)
    assert after["live"]["sessions"] == before["live"]["sessions"]
    assert after["auth"]["refused"]["401"] == before["auth"]["refused"]["401"] + 1


def test_a_good_token_opens_a_session_and_policy_filters(gw, setup):
    _, key, _ = setup
    tok = token(key, "k1", scope="social", groups=["math"])
    r = post(gw, INIT, tok)
    assert r.status_code == 200, r.text
    sid = r.headers["mcp-session-id"]
    h = {"mcp-session-id": sid, "mcp-protocol-version": "2025-06-18"}
    tools = post(gw, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, tok, h).json()["result"]["tools"]
    names = {t["name"] for t in tools}
    assert "sleep" not in names  # needs scope slow
    assert {"add", "echo"} <= names
    hidden = post(
        gw, {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "sleep", "arguments": {}}}, tok, h
    ).json()
    unknown = post(
        gw, {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "nosuch", "arguments": {}}}, tok, h
    ).json()
    assert hidden["error"]["code"] == unknown["error"]["code"]
    assert hidden["error"]["message"] == unknown["error"]["message"].replace("nosuch", "sleep")
    added = post(
        gw,
        {"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "add", "arguments": {"a": 2, "b": 3}}},
        tok,
        h,
    ).json()
    assert added["result"]["content"][0]["text"] == "5"
    prompts = post(gw, {"jsonrpc": "2.0", "id": 5, "method": "prompts/list"}, tok, h).json()["result"]["prompts"]
    assert "greet" in {p["name"] for p in prompts}

    # Another principal with this session id: as unknown as a session that never existed.
    bob = token(key, "k1", sub="bob", scope="social slow")
    r = post(gw, {"jsonrpc": "2.0", "id": 6, "method": "tools/list"}, bob, h)
    assert r.status_code == 404
    # ...and a caller without the claim does not see `add`.
    r = post(gw, INIT, bob)
    h2 = {"mcp-session-id": r.headers["mcp-session-id"], "mcp-protocol-version": "2025-06-18"}
    names = {
        t["name"]
        for t in post(gw, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, bob, h2).json()["result"]["tools"]
    }
    assert "add" not in names and "sleep" in names


def test_insufficient_scope_on_an_endpoint_is_403(gw, setup):
    _, key, _ = setup
    r = httpx.get(
        gw.url + "/sse",
        headers={"accept": "text/event-stream", "authorization": f"Bearer {token(key, 'k1', aud=PUBLIC)}"},
        timeout=10,
    )
    assert r.status_code == 403
    assert r.headers["www-authenticate"] == (
        f'Bearer resource_metadata="{PUBLIC}/.well-known/oauth-protected-resource", '
        'error="insufficient_scope", scope="legacy"'
    )


def test_a_cached_token_is_checked_on_every_request(gw, setup):
    """A token verified once is then admitted from the token cache without a coroutine
    (Gate.admitted); every check still holds for it: one Authorization header, the audience of
    the resource called, and a scheme spelled otherwise still accepted (the whole way)."""
    _, key, _ = setup
    tok = token(key, "k1", sub="dave")
    r = post(gw, INIT, tok)
    assert r.status_code == 200, r.text
    h = {"mcp-session-id": r.headers["mcp-session-id"], "mcp-protocol-version": "2025-06-18"}
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    cached = health(gw)["auth"]["cached"]
    assert "tools" in post(gw, listing, tok, h).json()["result"]
    assert health(gw)["auth"]["cached"] == cached + 1  # served from the cache

    twice = [*HEADERS.items(), *h.items(), ("authorization", f"Bearer {tok}"), ("authorization", f"Bearer {tok}")]
    r = httpx.post(gw.url + "/mcp", json=listing, headers=twice, timeout=10)
    assert r.status_code == 401
    assert 'error_description="more than one Authorization header"' in r.headers["www-authenticate"]

    # The token names /mcp: /sse (the gateway's base resource) refuses it, cached or not.
    r = httpx.get(
        gw.url + "/sse", headers={"accept": "text/event-stream", "authorization": f"Bearer {tok}"}, timeout=10
    )
    assert r.status_code == 401
    assert 'error_description="token audience is not this resource"' in r.headers["www-authenticate"]

    r = post(gw, listing, headers={**h, "authorization": f"bearer {tok}"})
    assert r.status_code == 200 and "tools" in r.json()["result"]


def test_protected_resource_metadata(gw):
    for path, resource in (
        ("/.well-known/oauth-protected-resource/mcp", RESOURCE),
        ("/.well-known/oauth-protected-resource", PUBLIC),
    ):
        r = httpx.get(gw.url + path, timeout=5)
        assert r.status_code == 200
        meta = r.json()
        assert meta["resource"] == resource
        assert meta["authorization_servers"] == [ISSUER]
        assert meta["bearer_methods_supported"] == ["header"]
        assert set(meta["scopes_supported"]) == {"legacy", "slow", "social"}
    assert httpx.get(gw.url + "/.well-known/oauth-protected-resource/servers/nosuch/mcp", timeout=5).status_code == 404


def test_preflight_needs_no_token_and_cors_exposes_www_authenticate(gw):
    r = httpx.options(
        gw.url + "/mcp",
        headers={"origin": "http://localhost:3000", "access-control-request-method": "POST"},
        timeout=5,
    )
    assert r.status_code == 204
    r = post(gw, INIT, headers={"origin": "http://localhost:3000"})
    assert r.status_code == 401
    assert "www-authenticate" in r.headers.get("access-control-expose-headers", "").lower()


def test_unknown_kid_then_a_rotation_that_adds_it(gw, setup):
    jwks, _, _ = setup
    new = _rsa()
    kid = f"rotated-{gw.mode}"  # the JWKS server is shared by both edge modes' gateways
    tok = token(new, kid)
    assert post(gw, INIT, tok).status_code == 401
    jwks.keys = [*jwks.keys, _jwk(new, kid)]
    deadline = time.monotonic() + 20
    while (status := post(gw, INIT, tok).status_code) == 401 and time.monotonic() < deadline:
        time.sleep(0.3)  # an unknown kid refetches at most once per MCPGW_AUTH_JWKS_MIN_REFRESH_S (1 s)
    assert status == 200
    assert kid in health(gw)["auth"]["jwks"]["keys"]


def test_jwks_outage_keeps_the_last_good_keys(gw, setup):
    jwks, key, _ = setup
    jwks.down = True
    try:
        post(gw, INIT, token(_rsa(), "unknown-during-outage"))  # forces a fetch, which fails
        deadline = time.monotonic() + 20
        while health(gw)["auth"]["jwks"]["state"] != "stale" and time.monotonic() < deadline:
            post(gw, INIT, token(_rsa(), "unknown-during-outage"))
            time.sleep(0.3)
        state = health(gw)["auth"]["jwks"]
        assert state["state"] == "stale" and state["last_error"]
        assert post(gw, INIT, token(key, "k1", sub="carol")).status_code == 200
    finally:
        jwks.down = False


def test_jwks_down_at_start(setup, component_path):
    jwks = Jwks()
    jwks.down = True
    _, key, _ = setup
    jwks_keys = [_jwk(key, "k1")]
    g = Gateway(
        {
            "MCPGW_AUTH": "jwt",
            "MCPGW_AUTH_ISSUER": ISSUER,
            "MCPGW_AUTH_JWKS_URL": jwks.url,
            "MCPGW_AUTH_JWKS_MIN_REFRESH_S": "1",
            "MCPGW_PUBLIC_URL": PUBLIC,
        }
    ).wait_ready()
    try:
        assert health(g)["auth"]["jwks"]["state"] == "unavailable"
        assert post(g, INIT, token(key, "k1")).status_code == 401
        jwks.keys, jwks.down = jwks_keys, False
        deadline = time.monotonic() + 20
        while (status := post(g, INIT, token(key, "k1")).status_code) == 401 and time.monotonic() < deadline:
            time.sleep(0.3)
        assert status == 200
        assert health(g)["auth"]["jwks"]["state"] == "ok"
    finally:
        g.stop()
        jwks.close()


def test_a_cached_token_is_refused_once_it_expires(setup):
    """The token cache never outlives a token: past its exp (no leeway here) the next request
    is refused 401 "token expired", though the same token was admitted from the cache before."""
    jwks, key, _ = setup
    g = Gateway(
        {
            "MCPGW_EDGE": "python",
            "MCPGW_AUTH": "jwt",
            "MCPGW_AUTH_ISSUER": ISSUER,
            "MCPGW_AUTH_JWKS_URL": jwks.url,
            "MCPGW_AUTH_LEEWAY_S": "0",
            "MCPGW_PUBLIC_URL": PUBLIC,
        }
    ).wait_ready()
    try:
        exp = int(time.time()) + 10  # generous: the requests below must come before it
        tok = token(key, "k1", sub="erin", exp=exp)
        r = post(g, INIT, tok)
        assert r.status_code == 200, r.text
        h = {"mcp-session-id": r.headers["mcp-session-id"], "mcp-protocol-version": "2025-06-18"}
        listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
        assert post(g, listing, tok, h).status_code == 200
        assert health(g)["auth"]["cached"] >= 1
        while time.time() <= exp + 0.5:
            time.sleep(0.2)
        r = post(g, listing, tok, h)
        assert r.status_code == 401
        assert 'error="invalid_token", error_description="token expired"' in r.headers["www-authenticate"]
    finally:
        g.stop()


def _run(args, env=None, stdin=""):
    full = {k: v for k, v in __import__("os").environ.items() if not k.startswith("MCPGW_")}
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "mcpgw.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=full,
        timeout=60,
        check=False,
    )


def test_api_keys_and_hash_key(tmp_path, component_path):
    line = _run(["auth", "hash-key", "ci", "deploy"], stdin="s3cret-key-value\n")
    assert line.returncode == 0, line.stderr
    assert line.stdout.startswith("ci sha256:") and line.stdout.strip().endswith(" deploy")
    generated = _run(["auth", "hash-key", "gen", "--generate"])
    assert generated.returncode == 0 and "key (give it" in generated.stderr
    keys = tmp_path / "keys"
    keys.write_text("# name sha256:<hex> scopes\n" + line.stdout)
    g = Gateway({"MCPGW_AUTH": "api-key", "MCPGW_AUTH_API_KEYS_FILE": str(keys)}).wait_ready()
    try:
        r = post(g, INIT, "s3cret-key-value")
        assert r.status_code == 200
        r = post(g, INIT, "wrong-key")
        assert r.status_code == 401
        assert r.headers["www-authenticate"].startswith('Bearer realm="mcpgw", error="invalid_token"')
        assert post(g, INIT).status_code == 401
        assert health(g)["auth"]["keys"] == 1
    finally:
        g.stop()


def test_non_loopback_bind_without_auth_is_refused():
    refused = _run(["serve", "--host", "0.0.0.0", "--port", "0"])
    assert refused.returncode == 2
    assert "refusing to bind 0.0.0.0 with MCPGW_AUTH=none" in refused.stderr
    assert "--allow-unauthenticated" in refused.stderr


def test_allow_unauthenticated_starts_with_a_warning(component_path):
    import socket

    with socket.socket() as probe:  # conftest reads the port from a loopback log line: pick one here
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    g = Gateway({"MCPGW_HOST": "0.0.0.0", "MCPGW_PORT": str(port), "MCPGW_ALLOW_UNAUTHENTICATED": "1"})
    try:
        g.port, g.url = port, f"http://127.0.0.1:{port}"
        g.wait_ready()
        assert "no authentication on a non-loopback bind" in health(g)["auth"]["warning"]
        assert "WARNING" in g.log() and "non-loopback" in g.log()
    finally:
        g.stop()


def test_jwt_mode_needs_an_issuer():
    r = _run(["serve", "--auth", "jwt", "--port", "0"])
    assert r.returncode == 2 and "MCPGW_AUTH_ISSUER" in r.stderr


def test_policy_errors_name_the_line(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[[auth.policy.rules]]\ntool = "x"\nscopes = ["a"]\n\n[[auth.policy.rules]]\ntool = "y"\n')
    r = _run(["serve", "--port", "0", "--config", str(config)])
    assert r.returncode == 2 and "line 5" in r.stderr and "neither scopes nor claims" in r.stderr


def test_upstream_header_secrets_from_env_and_file(tmp_path, monkeypatch):
    from mcpgw.federation.config import ConfigError, parse

    secret = tmp_path / "token"
    secret.write_text("from-file\n")
    monkeypatch.setenv("UPSTREAM_TOKEN", "from-env")
    text = (
        '[upstreams.a]\ntransport = "streamable-http"\nurl = "http://127.0.0.1:1/mcp"\n'
        f'headers = {{ A = "${{UPSTREAM_TOKEN}}", B = "file:{secret}" }}\n'
    )
    (up,) = parse(text)
    assert up.headers == {"A": "from-env", "B": "from-file"}
    monkeypatch.delenv("UPSTREAM_TOKEN")
    with pytest.raises(
        ConfigError, match=r"line 4: upstreams.a.headers: environment variable UPSTREAM_TOKEN is not set"
    ):
        parse(text)
    assert Path(secret).exists()


def test_the_admin_api_accepts_a_jwt_with_the_admin_scope(setup, component_path):
    jwks, key, _ = setup
    g = Gateway(
        {
            "MCPGW_AUTH": "jwt",
            "MCPGW_AUTH_ISSUER": ISSUER,
            "MCPGW_AUTH_JWKS_URL": jwks.url,
            "MCPGW_PUBLIC_URL": PUBLIC,
            "MCPGW_ADMIN_TOKEN": "admin-token-for-this-test-0123456789",
        }
    ).wait_ready()
    try:
        status = g.url + "/admin/edge/status"

        def get(tok: str) -> int:
            return httpx.get(status, headers={"authorization": f"Bearer {tok}"}, timeout=10).status_code

        assert get("admin-token-for-this-test-0123456789") == 200
        assert get(token(key, "k1", aud=PUBLIC, scope="mcpgw:admin")) == 200
        assert get(token(key, "k1", aud=PUBLIC, scope="tools")) == 401  # valid, but not the admin scope
        assert get(token(key, "k1", aud=PUBLIC, scope="mcpgw:admin", iss="https://other.example")) == 401
        assert get(token(key, "k1", aud=PUBLIC, scope="mcpgw:admin", exp=int(time.time()) - 3600)) == 401
    finally:
        g.stop()


def test_plugins_see_the_caller_a_rate_limit_per_principal(setup, component_path, tmp_path):
    """rate-limit keys its buckets by the principal's subject when there is one (else by session,
    else globally): with stateless requests, two callers get a bucket each only if the hook
    context carries who is calling."""
    from mcp_http import headers2026, rpc2026
    from test_plugins import example, plugin_table

    jwks, key, _ = setup
    config = tmp_path / "mcpgw.toml"
    config.write_text(
        plugin_table("rate", example("rate-limit"), grants=["clock"], config={"rate_per_s": 0.001, "burst": 1}) + "\n"
    )
    g = Gateway(
        {
            "MCPGW_AUTH": "jwt",
            "MCPGW_AUTH_ISSUER": ISSUER,
            "MCPGW_AUTH_JWKS_URL": jwks.url,
            "MCPGW_PUBLIC_URL": PUBLIC,
            "MCPGW_CONFIG": str(config),
        }
    ).wait_ready()
    try:

        def call(subject: str) -> dict:
            tok = token(key, "k1", sub=subject)
            body = rpc2026("tools/call", name="echo", arguments={"text": "hi"})
            headers = {**headers2026("tools/call", "echo"), "authorization": f"Bearer {tok}"}
            return httpx.post(g.url + "/mcp", json=body, headers=headers, timeout=10).json()

        assert "result" in call("alice")
        assert call("alice")["error"]["message"].startswith("rate limit exceeded")  # alice's bucket is empty
        assert "result" in call("bob")  # bob has a bucket of his own
    finally:
        g.stop()


def test_the_clients_token_never_reaches_an_upstream(tmp_path, monkeypatch, component_path):
    """No token passthrough: a client authenticated with an API key calls an upstream tool through
    /mcp and through the virtual server; the upstream records every header it receives."""
    from mcpgw.auth.tokens import hash_line
    from upstream_procs import federated_gateway, http_table, toy_http

    record = tmp_path / "headers.jsonl"
    monkeypatch.setenv("TOY_RECORD_HEADERS", str(record))
    upstream = toy_http("toy")
    key = "client-api-key-that-must-stay-here-0123456789"
    keys = tmp_path / "keys"
    keys.write_text(hash_line("alice", key, []) + "\n")
    gw = federated_gateway(
        "python",
        [http_table("toy", upstream.url) + '\nheaders = { x-gateway-credential = "configured-upstream-secret" }'],
        MCPGW_AUTH="api-key",
        MCPGW_AUTH_API_KEYS_FILE=str(keys),
    )
    try:
        auth = {"authorization": f"Bearer {key}"}
        for path, tool in (("/mcp", "toy__add"), ("/servers/toy/mcp", "add")):
            session = post(gw, INIT, headers={**auth}, path=path)
            assert session.status_code == 200, session.text
            headers = {
                **auth,
                "mcp-session-id": session.headers["mcp-session-id"],
                "mcp-protocol-version": "2025-11-25",
            }
            call = {
                "jsonrpc": "2.0",
                "id": 2,
                "method": "tools/call",
                "params": {"name": tool, "arguments": {"a": 1, "b": 2}},
            }
            answer = post(gw, call, headers=headers, path=path).json()
            assert answer["result"]["content"][0]["text"] == "3", answer
        seen = [json.loads(line) for line in record.read_text().splitlines()]
        assert seen, "the upstream recorded no request"
        assert all(key not in json.dumps(h) for h in seen)  # the client's credential never went upstream
        assert all(h.get("x-gateway-credential") == "configured-upstream-secret" for h in seen)  # ours did
    finally:
        gw.stop()
        upstream.stop()


def test_upstream_secrets_in_urls_never_reach_the_log(component_path):
    """An upstream URL with userinfo and a key in its query: the upstream client's debug line for each
    request names the URL without either (and the gateway's log filter masks both anywhere)."""
    from upstream_procs import federated_gateway, http_table, toy_http

    upstream = toy_http("toy")
    url = upstream.url.replace("http://", "http://bob:userinfo-secret-1@") + "?api_key=query-secret-2"
    gw = federated_gateway("python", [http_table("toy", url)], MCPGW_LOG_LEVEL="debug")
    try:
        session = post(gw, INIT)
        headers = {"mcp-session-id": session.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
        call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "toy__whoami", "arguments": {}}}
        assert "result" in post(gw, call, headers=headers).json()
        log = gw.log()
        assert "POST http://127.0.0.1:" in log  # the client did log the upstream's URL
        assert "userinfo-secret-1" not in log and "query-secret-2" not in log
    finally:
        gw.stop()
        upstream.stop()


def test_the_access_log_names_the_subject_and_never_the_token(tmp_path, component_path):
    from mcpgw.auth.tokens import hash_line

    key = "an-api-key-that-must-never-be-logged-0123456789"
    keys = tmp_path / "keys"
    keys.write_text(hash_line("alice", key, []) + "\n")
    g = Gateway({"MCPGW_AUTH": "api-key", "MCPGW_AUTH_API_KEYS_FILE": str(keys), "MCPGW_ACCESS_LOG": "true"})
    g.wait_ready()
    try:
        assert post(g, INIT, headers={"authorization": f"Bearer {key}"}).status_code == 200
        assert post(g, INIT, headers={"authorization": "Bearer wrong-key"}).status_code == 401
        log = g.log_with("POST /mcp 200", "POST /mcp 401")  # access lines follow their answers
        assert "POST /mcp 200" in log and "subject=alice" in log
        assert "POST /mcp 401" in log  # refused before any principal: subject=-
        assert key not in log and "wrong-key" not in log
    finally:
        g.stop()
