"""Raw Streamable HTTP helpers for tests: messages, SSE parsing, session set-up, live counts."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import httpx

JSON_AND_SSE = "application/json, text/event-stream"
BASE = {"accept": JSON_AND_SSE, "content-type": "application/json"}
SESSIONFUL = ("2025-03-26", "2025-06-18", "2025-11-25")
STATELESS = "2026-07-28"
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": STATELESS,
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "raw-test", "version": "0"},
}


def rpc(method: str, id_: Any = 1, **params: Any) -> dict[str, Any]:
    msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
    if id_ is not None:
        msg["id"] = id_
    return msg


def rpc2026(method: str, id_: Any = 1, meta: dict[str, Any] | None = None, **params: Any) -> dict[str, Any]:
    return rpc(method, id_, **params, _meta={**ENVELOPE, **(meta or {})})


def headers2026(method: str, name: str | None = None, **extra: str) -> dict[str, str]:
    h = {**BASE, "mcp-protocol-version": STATELESS, "mcp-method": method}
    if name is not None:
        h["mcp-name"] = name
    return {**h, **extra}


@dataclass
class Event:
    id: str | None
    event: str | None
    data: str
    retry: int | None

    def json(self) -> Any:
        import json

        return json.loads(self.data)


def sse_events(lines: Iterator[str]) -> Iterator[Event | str]:
    """SSE events from a line iterator; comment lines are yielded as strings (keepalives)."""
    fields: dict[str, Any] = {}
    data: list[str] = []
    for line in lines:
        if line == "":
            if fields or data:
                yield Event(fields.get("id"), fields.get("event"), "\n".join(data), fields.get("retry"))
            fields, data = {}, []
        elif line.startswith(":"):
            yield line
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                data.append(value)
            elif name == "retry":
                fields["retry"] = int(value)
            else:
                fields[name] = value
    if fields or data:
        yield Event(fields.get("id"), fields.get("event"), "\n".join(data), fields.get("retry"))


def read_sse(response: httpx.Response) -> list[Event]:
    return [e for e in sse_events(response.iter_lines()) if isinstance(e, Event)]


def read_sse_text(text: str) -> list[Event]:
    """The message events (with data) of a whole SSE body."""
    return [e for e in sse_events(iter(text.split("\n"))) if isinstance(e, Event) and e.data]


class Session:
    """One sessionful MCP session spoken in raw HTTP."""

    def __init__(
        self, url: str, revision: str = "2025-11-25", http: httpx.Client | None = None, capabilities: dict | None = None
    ):
        self.url = url + "/mcp"
        self.http = http or httpx.Client(timeout=30)
        r = self.http.post(
            self.url,
            json=rpc(
                "initialize",
                0,
                protocolVersion=revision,
                capabilities=capabilities or {},
                clientInfo={"name": "raw-test", "version": "0"},
            ),
            headers=BASE,
        )
        assert r.status_code == 200, r.text
        answer = read_sse_text(r.text)[-1].json() if r.headers["content-type"] == "text/event-stream" else r.json()
        assert answer["result"]["protocolVersion"] == revision
        self.id = r.headers["mcp-session-id"]
        self.revision = revision
        self.headers = {**BASE, "mcp-session-id": self.id, "mcp-protocol-version": revision}
        note = self.post(rpc("notifications/initialized", None))
        assert note.status_code == 202 and note.content == b""

    def post(self, message: Any, **headers: str) -> httpx.Response:
        return self.http.post(self.url, json=message, headers={**self.headers, **headers})

    def stream(self, method: str, message: Any = None, **headers: str):
        kwargs = {"json": message} if message is not None else {}
        return self.http.stream(method, self.url, headers={**self.headers, **headers}, **kwargs)

    def delete(self) -> httpx.Response:
        return self.http.delete(self.url, headers=self.headers)


def live(url: str) -> dict[str, int]:
    return httpx.get(url + "/health").json()["live"]


def wait_live(url: str, timeout: float = 20.0, **expected: int) -> dict[str, int]:
    """Poll /health until the live counts equal `expected` (a deadline, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        counts = live(url)
        if all(counts[k] == v for k, v in expected.items()) or time.monotonic() > deadline:
            return counts
        time.sleep(0.05)


def drained(url: str) -> dict[str, int]:
    return wait_live(url, sessions=0, requests=0, streams=0, upstream_links=0)


NOTHING_LIVE = {"sessions": 0, "requests": 0, "streams": 0, "upstream_links": 0}


async def handled(items: list[Any], count: int, timeout: float = 10.0) -> list[Any]:
    """`items` once it holds `count` entries, waiting at most `timeout` s (a deadline, not a timing
    assertion). For what the SDK client's notification callbacks collect: its dispatcher runs each
    notification's callback in a task of its own but resolves a request's result directly, so a log
    the gateway sent before a call's result may still be unhandled when `call_tool` returns."""
    with anyio.fail_after(timeout):
        while True:
            if len(items) >= count:
                return items
            await anyio.sleep(0.01)  # polled: the callbacks are the SDK's, nothing to wait on
