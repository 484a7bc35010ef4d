"""A small upstream MCP server for the federation tests, written with the mcp SDK's MCPServer.

It runs as a real process over stdio or Streamable HTTP and has what the fault
and catalog tests need: a tool that kills its own process mid-call, a slow tool
(timeouts, cancellation), and a tool that adds a tool and says list_changed.

    python toy_server.py stdio NAME
    python toy_server.py http NAME PORT     # Streamable HTTP at /mcp
    python toy_server.py sse NAME PORT      # legacy HTTP+SSE at /sse
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import warnings
from typing import Any

import anyio
import mcp_types as types
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.prompts.base import UserMessage
from mcp.shared.exceptions import MCPDeprecationWarning
from pydantic import BaseModel

warnings.filterwarnings("ignore", category=MCPDeprecationWarning)

NAME = sys.argv[2] if len(sys.argv) > 2 else "toy"
server = MCPServer(f"{NAME}-server", instructions=f"The {NAME} test upstream.")


@server.tool()
def whoami() -> str:
    """Names this upstream and its process (so tests see where a call went)."""
    return f"{NAME} pid={os.getpid()}"


@server.tool()
def add(a: int, b: int) -> int:
    """Adds two integers."""
    return a + b


CANCELLED: list[str] = []  # calls of `slow` the client cancelled (notifications/cancelled)


@server.tool()
async def slow(seconds: float, ctx: Context) -> str:
    """Sleeps, reporting progress every 0.1 s."""
    steps = max(1, int(seconds * 10))
    try:
        for step in range(steps):
            await asyncio.sleep(seconds / steps)
            await ctx.report_progress(step + 1, steps)
    except asyncio.CancelledError:
        CANCELLED.append(str(ctx.request_id))
        raise
    return f"slept {seconds}"


@server.tool()
def cancellations() -> int:
    """How many `slow` calls were cancelled by the client so far."""
    return len(CANCELLED)


@server.tool()
async def roots(ctx: Context) -> str:
    """Asks the client for its roots (roots/list) and lists their URIs."""
    result = await ctx.session.list_roots()
    return " ".join(str(root.uri) for root in result.roots)


ROOTS_CHANGED: list[int] = []  # notifications/roots/list_changed received from the client


async def on_roots_changed(ctx, params) -> None:
    ROOTS_CHANGED.append(1)


# MCPServer has no decorator for client notifications; the low-level server it wraps does.
server._lowlevel_server.add_notification_handler(
    "notifications/roots/list_changed", types.NotificationParams, on_roots_changed
)


@server.tool()
def roots_changed() -> int:
    """How many notifications/roots/list_changed the client sent so far."""
    return len(ROOTS_CHANGED)


@server.tool()
async def touch(ctx: Context) -> str:
    """Says toy://note was updated (notifications/resources/updated)."""
    await ctx.session.send_resource_updated("toy://note")
    return "touched"


@server.tool()
async def crash(ctx: Context) -> str:
    """Ends this server's process in the middle of the call."""
    await ctx.info("about to crash")
    await asyncio.sleep(0.05)
    os._exit(3)


@server.tool()
async def grow(name: str, ctx: Context) -> str:
    """Adds a tool called `name` and tells the client the tool list changed."""

    def grown() -> str:
        return f"I am {name}"

    server.add_tool(grown, name=name, description=f"Grown at run time: {name}")
    await ctx.request_context.session.send_tool_list_changed()
    return f"added {name}"


# What this process's sessions set: the log level and subscriptions (a restarted process starts empty).
STATE: dict[str, Any] = {"level": None, "subscribed": []}


async def on_set_level(ctx, params: types.SetLevelRequestParams) -> dict[str, Any]:
    STATE["level"] = params.level
    return {}


SUBSCRIBERS: dict[str, list[Any]] = {}  # uri -> the server sessions that subscribed to it


async def on_subscribe(ctx, params: types.SubscribeRequestParams) -> dict[str, Any]:
    STATE["subscribed"] = sorted({*STATE["subscribed"], str(params.uri)})
    SUBSCRIBERS.setdefault(str(params.uri), []).append(ctx.session)
    return {}


async def on_unsubscribe(ctx, params: types.UnsubscribeRequestParams) -> dict[str, Any]:
    STATE["subscribed"] = [uri for uri in STATE["subscribed"] if uri != str(params.uri)]
    return {}


server._lowlevel_server.add_request_handler("logging/setLevel", types.SetLevelRequestParams, on_set_level)
server._lowlevel_server.add_request_handler("resources/subscribe", types.SubscribeRequestParams, on_subscribe)
server._lowlevel_server.add_request_handler("resources/unsubscribe", types.UnsubscribeRequestParams, on_unsubscribe)


@server.tool()
async def announce(uri: str) -> int:
    """Sends notifications/resources/updated for `uri` to every session that subscribed to it (as a
    server does: on the subscriber's own connection); answers how many sessions it reached."""
    reached = 0
    for session in SUBSCRIBERS.get(uri, []):
        try:
            with anyio.fail_after(2):
                await session.send_resource_updated(uri)
            reached += 1
        except Exception:  # noqa: BLE001 - a subscriber whose connection is gone
            pass
    return reached


@server.tool()
def state() -> str:
    """The log level and subscriptions this process was given, as JSON."""
    return json.dumps(STATE, sort_keys=True)


@server.tool()
async def touch_if_subscribed(ctx: Context) -> str:
    """Says toy://note was updated, only when a session subscribed to it (as a server would)."""
    if "toy://note" in STATE["subscribed"]:
        await ctx.session.send_resource_updated("toy://note")
        return "touched"
    return "not subscribed"


@server.tool()
def offered(ctx: Context) -> str:
    """The client capabilities this connection was offered in initialize, as JSON (as received)."""
    params = ctx.session.client_params
    caps = params.capabilities if params is not None else None
    return json.dumps(caps.model_dump(by_alias=True, mode="json", exclude_unset=True) if caps else None, sort_keys=True)


@server.tool()
def complain(text: str, times: int = 1) -> str:
    """Writes `text` to stderr `times` times."""
    for n in range(times):
        print(f"{text} {n}", file=sys.stderr, flush=True)
    return "complained"


class Confirm(BaseModel):
    ok: bool


@server.tool()
async def withdraw(seconds: float, ctx: Context) -> str:
    """Asks the client something (elicitation/create), then withdraws the question after `seconds`
    (the SDK sends notifications/cancelled for its own abandoned request)."""
    try:
        with anyio.fail_after(seconds):
            result = await ctx.elicit("Still there?", schema=Confirm)
    except TimeoutError:
        return "withdrawn"
    return f"answered {result.action}"


@server.tool()
def big(mib: float) -> types.CallToolResult:
    """Answers with `mib` MiB of text (one text content, no structured copy)."""
    size = int(mib * 1024 * 1024)
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=("0123456789abcdef" * (size // 16 + 1))[:size])]
    )


@server.tool()
def sampler() -> str:
    """Listed only to clients that declared sampling (as the everything server does with its
    sampling, elicitation and roots tools)."""
    return "only for samplers"


LIST_CALLS: list[int] = []  # tools/list requests answered by this process
ANNOUNCE = bool(os.environ.get("TOY_ANNOUNCE_ON_CONNECT"))
ANNOUNCED: set[int] = set()  # connections told tools/list_changed already (ctx.session is per request)


async def announce_once(ctx) -> None:
    """As the everything server does, each new connection is told tools/list_changed: here within
    its first tools/list or tools/call (on that request's stream, so it is never lost)."""
    connection = ctx.session._connection
    if ANNOUNCE and id(connection) not in ANNOUNCED:
        ANNOUNCED.add(id(connection))
        await ctx.session.send_notification(types.ToolListChangedNotification(), related_request_id=ctx.request_id)


_plain_list = server._lowlevel_server.get_request_handler("tools/list")
_plain_call = server._lowlevel_server.get_request_handler("tools/call")
assert _plain_list is not None and _plain_call is not None


async def on_list_tools(ctx, params) -> Any:
    LIST_CALLS.append(1)
    await announce_once(ctx)
    result = await _plain_list.handler(ctx, params)
    client = ctx.session.client_params
    if client is None or client.capabilities.sampling is None:
        result.tools = [tool for tool in result.tools if tool.name != "sampler"]
    return result


async def on_call_tool(ctx, params) -> Any:
    await announce_once(ctx)
    return await _plain_call.handler(ctx, params)


server._lowlevel_server.add_request_handler("tools/list", _plain_list.params_type, on_list_tools)
server._lowlevel_server.add_request_handler("tools/call", _plain_call.params_type, on_call_tool)


@server.tool()
def list_calls() -> int:
    """How many tools/list requests this process answered."""
    return len(LIST_CALLS)


@server.tool()
def linked() -> types.CallToolResult:
    """Answers with a link to toy://note and the note embedded."""
    return types.CallToolResult(
        content=[
            types.ResourceLink(type="resource_link", uri="toy://note", name="note"),
            types.EmbeddedResource(
                type="resource", resource=types.TextResourceContents(uri="toy://note", text=f"a note from {NAME}")
            ),
        ]
    )


@server.prompt()
def cite() -> list[UserMessage]:
    """A message that embeds toy://note."""
    note = types.TextResourceContents(uri="toy://note", text=f"a note from {NAME}")
    return [UserMessage(types.EmbeddedResource(type="resource", resource=note))]


@server.resource("toy://note", mime_type="text/plain")
def note() -> str:
    """A fixed note."""
    return f"a note from {NAME}"


@server.prompt()
def hello(who: str) -> str:
    """Says hello."""
    return f"Hello {who} from {NAME}"


if __name__ == "__main__":
    if sys.argv[1] == "stdio":
        server.run("stdio")
    else:
        import uvicorn

        if sys.argv[1] == "sse":
            app = server.sse_app(host="127.0.0.1")
        elif os.environ.get("TOY_STATELESS"):  # as bench/sdk_server.py runs the SDK's server stateless
            app = server.streamable_http_app(host="127.0.0.1", stateless_http=True, json_response=True)
        else:
            app = server.streamable_http_app(host="127.0.0.1")
        if os.environ.get("TOY_LOST_SESSION_400"):
            # As some servers do (the TypeScript SDK's): a request with a session id this process
            # does not know gets 400 "No valid session ID", not the spec's 404.
            plain = app

            async def app(scope, receive, send):  # type: ignore[no-untyped-def]
                refused = False

                async def relay(message):  # type: ignore[no-untyped-def]
                    nonlocal refused
                    if message["type"] == "http.response.start" and message["status"] == 404:
                        refused = True
                        error = {"code": -32000, "message": "Bad Request: No valid session ID provided"}
                        body = json.dumps({"jsonrpc": "2.0", "error": error, "id": None}).encode()
                        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
                        await send({"type": "http.response.start", "status": 400, "headers": headers})
                        await send({"type": "http.response.body", "body": body})
                    elif not refused:
                        await send(message)

                await plain(scope, receive, relay if scope["type"] == "http" else send)

        revoked = os.environ.get("TOY_REVOKED_TOKENS")
        if revoked:
            # An upstream behind OAuth that revoked some tokens: a request bearing one listed in
            # this file (one a line) gets 401, as a resource server answers an invalid token.
            guarded = app

            async def app(scope, receive, send):  # type: ignore[no-untyped-def]
                if scope["type"] == "http":
                    auth = dict(scope["headers"]).get(b"authorization", b"").decode()
                    with open(revoked) as listed:  # noqa: ASYNC230 - a test upstream's tiny read
                        refused = auth.removeprefix("Bearer ") in listed.read().split()
                    if refused:
                        headers = [(b"www-authenticate", b'Bearer error="invalid_token"'), (b"content-length", b"0")]
                        await send({"type": "http.response.start", "status": 401, "headers": headers})
                        await send({"type": "http.response.body", "body": b""})
                        return
                await guarded(scope, receive, send)

        record = os.environ.get("TOY_RECORD_HEADERS")
        if record:
            # Tests of what the gateway sends upstream: every request's header names and values,
            # one JSON object a line, appended to this file.
            inner = app

            async def app(scope, receive, send):  # type: ignore[no-untyped-def]
                if scope["type"] == "http":
                    with open(record, "a") as out:  # noqa: ASYNC230 - a test upstream's tiny append
                        out.write(json.dumps({k.decode(): v.decode("latin-1") for k, v in scope["headers"]}) + "\n")
                await inner(scope, receive, send)

        uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[3]), log_level="info", access_log=False)
