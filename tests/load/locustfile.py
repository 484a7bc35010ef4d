"""MCP users for Locust: run through `make load-test` (headless, bounded) or `make load-test-ui`.
`tests/load/run.py` starts the gateway with the edge asked for (LOAD_EDGE=wasm|python), so the
same users and weights compare the two modes."""

from __future__ import annotations

import itertools
import json
import random
import time

from locust import HttpUser, between, task

ACCEPT = "application/json, text/event-stream"
JSON = {"content-type": "application/json", "accept": ACCEPT}
REVISION = "2025-11-25"
ORIGIN = "http://localhost:5173"
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "locust", "version": "0"},
}
_ids = itertools.count(1)


def rpc(method: str, params: dict | None = None, notification: bool = False) -> dict:
    msg = {"jsonrpc": "2.0", "method": method, "params": params or {}}
    if not notification:
        msg["id"] = next(_ids)  # unique: a repeated id in one session is refused
    return msg


def expect_result(response, what: str) -> None:
    if response.status_code != 200:
        response.failure(f"{what}: HTTP {response.status_code}")
        return
    body = response.text
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        body = [line[6:] for line in body.splitlines() if line.startswith("data: ") and line[6:]][-1]
    if "result" not in json.loads(body):
        response.failure(f"{what}: {body[:200]}")


class SessionUser(HttpUser):
    """An IDE-like client: one session, lists tools now and then, calls them often."""

    weight = 4
    wait_time = between(0.05, 0.2)

    def on_start(self) -> None:
        r = self.client.post(
            "/mcp",
            json=rpc(
                "initialize",
                {"protocolVersion": REVISION, "capabilities": {}, "clientInfo": {"name": "locust", "version": "0"}},
            ),
            headers=JSON,
            name="initialize",
        )
        self.headers = {**JSON, "mcp-session-id": r.headers.get("mcp-session-id", ""), "mcp-protocol-version": REVISION}
        self.client.post(
            "/mcp",
            json=rpc("notifications/initialized", notification=True),
            headers=self.headers,
            name="notifications/initialized",
        )

    def on_stop(self) -> None:
        self.client.delete("/mcp", headers=self.headers, name="DELETE session")

    @task(1)
    def list_tools(self) -> None:
        with self.client.post(
            "/mcp", json=rpc("tools/list"), headers=self.headers, name="tools/list", catch_response=True
        ) as r:
            expect_result(r, "tools/list")

    @task(4)
    def call_echo(self) -> None:
        with self.client.post(
            "/mcp",
            json=rpc("tools/call", {"name": "echo", "arguments": {"text": "hi"}}),
            headers=self.headers,
            name="tools/call echo",
            catch_response=True,
        ) as r:
            expect_result(r, "tools/call echo")


class StatelessUser(HttpUser):
    """A 2026-07-28 client: no session, routing headers on every request."""

    weight = 3
    wait_time = between(0.05, 0.2)

    def _post(self, method: str, params: dict, name_header: str | None = None) -> None:
        headers = {**JSON, "mcp-protocol-version": "2026-07-28", "mcp-method": method}
        if name_header:
            headers["mcp-name"] = name_header
        with self.client.post(
            "/mcp",
            json=rpc(method, {**params, "_meta": ENVELOPE}),
            headers=headers,
            name=f"2026 {method}",
            catch_response=True,
        ) as r:
            expect_result(r, method)

    @task(1)
    def list_tools(self) -> None:
        self._post("tools/list", {})

    @task(3)
    def call_add(self) -> None:
        self._post("tools/call", {"name": "add", "arguments": {"a": random.random(), "b": 1}}, "add")


class ChurnUser(HttpUser):
    """Sessions that live for one call: initialize, call, DELETE."""

    weight = 1
    wait_time = between(0.2, 0.5)

    @task
    def churn(self) -> None:
        r = self.client.post(
            "/mcp",
            json=rpc(
                "initialize",
                {"protocolVersion": REVISION, "capabilities": {}, "clientInfo": {"name": "churn", "version": "0"}},
            ),
            headers=JSON,
            name="churn initialize",
        )
        headers = {**JSON, "mcp-session-id": r.headers.get("mcp-session-id", ""), "mcp-protocol-version": REVISION}
        self.client.post(
            "/mcp",
            json=rpc("tools/call", {"name": "echo", "arguments": {"text": "x"}}),
            headers=headers,
            name="churn tools/call",
        )
        self.client.delete("/mcp", headers=headers, name="churn DELETE")


class StreamHolder(HttpUser):
    """Holds a GET stream open for a few seconds, as a connected client does, then lets go."""

    weight = 1
    wait_time = between(0.5, 1.0)

    def on_start(self) -> None:
        r = self.client.post(
            "/mcp",
            json=rpc(
                "initialize",
                {"protocolVersion": REVISION, "capabilities": {}, "clientInfo": {"name": "holder", "version": "0"}},
            ),
            headers=JSON,
            name="holder initialize",
        )
        self.headers = {**JSON, "mcp-session-id": r.headers.get("mcp-session-id", ""), "mcp-protocol-version": REVISION}

    def on_stop(self) -> None:
        self.client.delete("/mcp", headers=self.headers, name="holder DELETE")

    @task
    def hold(self) -> None:
        with self.client.get("/mcp", headers=self.headers, stream=True, name="GET stream", catch_response=True) as r:
            if r.status_code != 200:
                r.failure(f"GET stream: HTTP {r.status_code}")
                return
            until = time.monotonic() + random.uniform(2, 5)
            for _ in r.iter_lines():  # priming event and keepalives
                if time.monotonic() > until:
                    break
            r.success()


class BrowserUser(HttpUser):
    """A browser app: a CORS preflight before each cross-origin POST."""

    weight = 1
    wait_time = between(0.1, 0.3)

    @task
    def preflight_then_call(self) -> None:
        with self.client.options(
            "/mcp",
            headers={
                "origin": ORIGIN,
                "access-control-request-method": "POST",
                "access-control-request-headers": "content-type,mcp-protocol-version",
            },
            name="preflight",
            catch_response=True,
        ) as r:
            if r.status_code != 204 or r.headers.get("access-control-allow-origin") != ORIGIN:
                r.failure(f"preflight: HTTP {r.status_code}")
                return
        headers = {**JSON, "origin": ORIGIN, "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/list"}
        with self.client.post(
            "/mcp",
            json=rpc("tools/list", {"_meta": ENVELOPE}),
            headers=headers,
            name="browser tools/list",
            catch_response=True,
        ) as r:
            expect_result(r, "browser tools/list")
