"""What authentication costs: tools/list at 16 connections through a gateway with JWT auth on
(RS256, keys from a local JWKS, verified tokens cached) and with auth off, side by side, alternating
order between repetitions. Every answer is checked (wrk counts a JSON-RPC error inside a 200 and
every 401 as errors): a refused request would not count.

`instructions(n)` reads the same pair by instructions, load-independent: tools/list through
`mcpgw serve` under callgrind, auth off and JWT on (the token verified once, then cached).

    python bench/auth.py                   # one short paired wrk run
    python bench/auth.py --instructions [n]
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

import e2e
import servers
import wrk

ISSUER = "https://issuer.bench.invalid"


class _Jwks:
    """A JWKS endpoint on loopback, in this process."""

    def __init__(self, key: rsa.RSAPrivateKey) -> None:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
        body = json.dumps({"keys": [{**jwk, "kid": "bench", "alg": "RS256", "use": "sig"}]}).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
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


def _token(key: rsa.RSAPrivateKey, audience: str) -> str:
    """An RS256 access token for `audience` from the bench's issuer, valid for an hour."""
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": "bench", "aud": audience, "iat": now, "exp": now + 3600}
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "bench"})


def measure(duration_s: float = 2.0, reps: int = 5, connections: int = 16) -> list[dict]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks = _Jwks(key)
    targets: dict[str, servers.Server] = {}
    try:
        targets["auth off"] = servers.gateway("wasm", name="gateway-auth-off")
        on = servers.gateway(
            "wasm",
            name="gateway-auth-jwt",
            MCPGW_AUTH="jwt",
            MCPGW_AUTH_ISSUER=ISSUER,
            MCPGW_AUTH_JWKS_URL=jwks.url,
        )
        targets["jwt RS256"] = on
        token = _token(key, on.url)
        loads = {}
        for name, srv in targets.items():
            auth = {"authorization": f"Bearer {token}"} if name == "jwt RS256" else {}
            init = wrk.Workload("initialize", "POST", "/mcp", {**e2e.JSON_HEADERS, **auth}, e2e.INITIALIZE)
            e2e.check(srv.url, init)
            session = e2e.open_session(srv.url, auth)
            loads[name] = wrk.Workload("tools/list", "POST", "/mcp", session, e2e.TOOLS_LIST)
            e2e.check(srv.url, loads[name])
            wrk.run(srv.url, loads[name], connections, 1)  # warm-up (and the token cache)
        samples: dict[str, list[wrk.Result]] = {name: [] for name in targets}
        for rep in range(reps):
            order = list(targets) if rep % 2 == 0 else list(reversed(targets))
            for name in order:
                samples[name].append(wrk.run(targets[name].url, loads[name], connections, duration_s))
        rows = [e2e.summarize("tools/list", connections, name, results, None) for name, results in samples.items()]
        for row in rows:
            figure = "FAILED" if row["rps"] is None else f"{row['rps']:8.0f} req/s  p50 {row['p50_ms']:6.2f} ms"
            print(f"  tools/list c={connections} {row['target']:10} {figure}  errors {row['errors']}", flush=True)
        return rows
    finally:
        for srv in targets.values():
            srv.stop()
        jwks.close()


def instructions(n: int = 500) -> dict[str, float]:
    """{"auth off": .., "jwt RS256": ..}: instructions per tools/list (one session, one keep-alive
    connection, bench/server_instructions.py), the JWT's audience the resource called."""
    import server_instructions

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks = _Jwks(key)
    public = "https://gw.bench.invalid"
    token = _token(key, public + "/mcp")
    on = {
        **server_instructions.GATEWAY_ENV,
        "MCPGW_AUTH": "jwt",
        "MCPGW_AUTH_ISSUER": ISSUER,
        "MCPGW_AUTH_JWKS_URL": jwks.url,
        "MCPGW_PUBLIC_URL": public,
    }
    argv = server_instructions.gateway_argv()
    try:
        counts = {
            "auth off": server_instructions.per_request(
                argv, server_instructions.GATEWAY_ENV, e2e.TOOLS_LIST, n, '"echo"'
            ),
            "jwt RS256": server_instructions.per_request(
                argv, on, e2e.TOOLS_LIST, n, '"echo"', headers={"authorization": f"Bearer {token}"}
            ),
        }
    finally:
        jwks.close()
    off, jwt_on = counts["auth off"], counts["jwt RS256"]
    print(
        f"  instructions per tools/list (callgrind): auth off {off:,.0f}, jwt RS256 {jwt_on:,.0f}: {off / jwt_on:.3f}x",
        flush=True,
    )
    return counts


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["--instructions"]:
        instructions(int(sys.argv[2]) if len(sys.argv) > 2 else 500)
    else:
        print(json.dumps(measure(1, 1), indent=1))
