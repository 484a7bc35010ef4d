"""Conformance fixture: an MCP server exposing the catalog the official MCP
conformance suite (@modelcontextprotocol/conformance, server scenarios) calls.

Built on the mcp SDK 2.3.0 *low-level* `Server`, not `MCPServer`: the suite
checks exact wire shapes (a raw JSON Schema 2020-12 `inputSchema`, elicitation
schemas with `enumNames`/`oneOf`, `isError` results), and plain dicts keep
those shapes byte-for-byte visible here. It doubles as a deterministic upstream
for gateway relay tests, so every server-to-client message a tool emits
(logs, progress, sampling, elicitation) is tied to the originating request:
on Streamable HTTP it rides that POST's SSE stream.

    python fixture_server.py --transport streamable-http --host 127.0.0.1 --port N   # endpoint /mcp
    python fixture_server.py --transport stdio

Both transports serve the same catalog.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import warnings
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import mcp_types as types
from mcp.server import NotificationOptions, Server, ServerRequestContext
from mcp.server.streamable_http import EventCallback, EventId, EventMessage, EventStore, StreamId
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError

# SDK 2.3.0 marks logging/sampling/roots deprecated for the 2026-07-28 protocol
# and warns on use; the suite speaks 2025-11-25, where they are current.
warnings.filterwarnings("ignore", category=MCPDeprecationWarning)

SERVER_NAME = "mcpgw-conformance-fixture"
RESOURCE_NOT_FOUND = -32002  # MCP's code for an unknown resource URI

# 1x1 red PNG and a minimal (empty) 8 kHz mono WAV, base64.
PNG_1X1 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
WAV_MINIMAL = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA="

Args = dict[str, Any]
Ctx = ServerRequestContext[Any, Any]


# --------------------------------------------------------------------------
# Per-connection state (log level, resource subscriptions)
# --------------------------------------------------------------------------

LOG_LEVELS = ["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"]


@dataclass
class ConnState:
    log_level: str = "debug"  # lowest level sent; set by logging/setLevel
    subscriptions: set[str] = field(default_factory=set)  # resource URIs


_STATE: dict[str, ConnState] = {}


def conn_state(ctx: Ctx) -> ConnState:
    """State for the client connection `ctx` belongs to.

    The low-level context exposes no public connection handle, so the key is
    the Streamable HTTP session id header; stdio serves one client per process.
    """
    headers = getattr(ctx.request, "headers", None)
    key = (headers.get("mcp-session-id") if headers is not None else None) or "stdio"
    return _STATE.setdefault(key, ConnState())


# --------------------------------------------------------------------------
# Helpers for server -> client traffic tied to the current request
# --------------------------------------------------------------------------


async def log(ctx: Ctx, level: str, message: str) -> None:
    """notifications/message on the request's own stream, honouring logging/setLevel."""
    if LOG_LEVELS.index(level) < LOG_LEVELS.index(conn_state(ctx).log_level):
        return
    await ctx.session.send_log_message(level, message, logger=SERVER_NAME, related_request_id=ctx.request_id)


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def result(*content: dict[str, Any], is_error: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"content": list(content)}
    if is_error:
        out["isError"] = True
    return out


def client_supports(ctx: Ctx, capability: str) -> bool:
    caps = ctx.session.client_capabilities
    return caps is not None and getattr(caps, capability, None) is not None


# --------------------------------------------------------------------------
# Tools
# --------------------------------------------------------------------------

NO_ARGS: dict[str, Any] = {"type": "object", "properties": {}}


@dataclass
class Tool:
    description: str
    run: Callable[[Ctx, Args], Awaitable[dict[str, Any]]]
    input_schema: dict[str, Any]


TOOLS: dict[str, Tool] = {}


def tool(name: str, description: str, input_schema: dict[str, Any] | None = None):
    def register(fn: Callable[[Ctx, Args], Awaitable[dict[str, Any]]]):
        TOOLS[name] = Tool(description, fn, input_schema or NO_ARGS)
        return fn

    return register


@tool("test_simple_text", "Returns one text content block")
async def simple_text(ctx: Ctx, args: Args) -> dict[str, Any]:
    return result(text("This is a simple text response for testing."))


@tool("test_image_content", "Returns one image content block (1x1 PNG)")
async def image_content(ctx: Ctx, args: Args) -> dict[str, Any]:
    return result({"type": "image", "data": PNG_1X1, "mimeType": "image/png"})


@tool("test_audio_content", "Returns one audio content block (minimal WAV)")
async def audio_content(ctx: Ctx, args: Args) -> dict[str, Any]:
    return result({"type": "audio", "data": WAV_MINIMAL, "mimeType": "audio/wav"})


@tool("test_embedded_resource", "Returns one embedded text resource")
async def embedded_resource(ctx: Ctx, args: Args) -> dict[str, Any]:
    resource = {
        "uri": "test://embedded-resource",
        "mimeType": "text/plain",
        "text": "This is an embedded resource content.",
    }
    return result({"type": "resource", "resource": resource})


@tool("test_multiple_content_types", "Returns text, image and embedded resource blocks")
async def multiple_content_types(ctx: Ctx, args: Args) -> dict[str, Any]:
    resource = {
        "uri": "test://mixed-content-resource",
        "mimeType": "application/json",
        "text": json.dumps({"test": "data", "value": 123}),
    }
    return result(
        text("Multiple content types test:"),
        {"type": "image", "data": PNG_1X1, "mimeType": "image/png"},
        {"type": "resource", "resource": resource},
    )


@tool("test_tool_with_logging", "Emits three info log notifications ~50 ms apart while running")
async def tool_with_logging(ctx: Ctx, args: Args) -> dict[str, Any]:
    # The delays make the notifications arrive mid-call, before the response.
    await log(ctx, "info", "Tool execution started")
    await anyio.sleep(0.05)
    await log(ctx, "info", "Tool processing data")
    await anyio.sleep(0.05)
    await log(ctx, "info", "Tool execution completed")
    return result(text("Tool with logging executed successfully"))


@tool("test_tool_with_progress", "Reports progress 0, 50, 100 of 100 when given a progressToken")
async def tool_with_progress(ctx: Ctx, args: Args) -> dict[str, Any]:
    # report_progress is a no-op when the request carried no progressToken.
    for step in (0, 50, 100):
        if step:
            await anyio.sleep(0.05)
        await ctx.session.report_progress(step, 100, f"Completed step {step} of 100")
    token = ((ctx.params or {}).get("_meta") or {}).get("progressToken")
    return result(text(f"Progress reported for token {token!r}"))


@tool("test_error_handling", "Always fails with an isError result")
async def error_handling(ctx: Ctx, args: Args) -> dict[str, Any]:
    return result(text("This tool intentionally returns an error for testing"), is_error=True)


@tool(
    "test_sampling",
    "Asks the client to sample an LLM (sampling/createMessage) and returns its answer",
    {
        "type": "object",
        "properties": {"prompt": {"type": "string", "description": "The prompt to send to the LLM"}},
        "required": ["prompt"],
    },
)
async def sampling(ctx: Ctx, args: Args) -> dict[str, Any]:
    if not client_supports(ctx, "sampling"):
        return result(text("Client does not support sampling"), is_error=True)
    message = types.SamplingMessage(role="user", content=types.TextContent(type="text", text=args["prompt"]))
    answer = await ctx.session.create_message([message], max_tokens=100, related_request_id=ctx.request_id)
    content = answer.content
    reply = content.text if isinstance(content, types.TextContent) else f"<{content.type} content>"
    return result(text(f"LLM response: {reply}"))


async def elicit(ctx: Ctx, message: str, schema: dict[str, Any]) -> dict[str, Any]:
    """Send elicitation/create on the request's stream and report what came back."""
    if not client_supports(ctx, "elicitation"):
        return result(text("Client does not support elicitation"), is_error=True)
    answer = await ctx.session.elicit_form(message, schema, related_request_id=ctx.request_id)
    return result(text(f"Elicitation completed: action={answer.action}, content={json.dumps(answer.content or {})}"))


@tool(
    "test_elicitation",
    "Asks the user (elicitation/create) for a username and email",
    {
        "type": "object",
        "properties": {"message": {"type": "string", "description": "The message to show the user"}},
        "required": ["message"],
    },
)
async def elicitation(ctx: Ctx, args: Args) -> dict[str, Any]:
    schema = {
        "type": "object",
        "properties": {
            "username": {"type": "string", "description": "User's response"},
            "email": {"type": "string", "description": "User's email address"},
        },
        "required": ["username", "email"],
    }
    return await elicit(ctx, args["message"], schema)


@tool("test_elicitation_sep1034_defaults", "Elicitation whose schema has defaults for every primitive type (SEP-1034)")
async def elicitation_defaults(ctx: Ctx, args: Args) -> dict[str, Any]:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "User name", "default": "John Doe"},
            "age": {"type": "integer", "description": "User age", "default": 30},
            "score": {"type": "number", "description": "User score", "default": 95.5},
            "status": {
                "type": "string",
                "description": "User status",
                "enum": ["active", "inactive", "pending"],
                "default": "active",
            },
            "verified": {"type": "boolean", "description": "Verification status", "default": True},
        },
        "required": [],
    }
    return await elicit(ctx, "Please review and update the form fields with defaults", schema)


def _titled(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"const": const, "title": title} for const, title in pairs]


@tool("test_elicitation_sep1330_enums", "Elicitation using all five enum schema variants (SEP-1330)")
async def elicitation_enums(ctx: Ctx, args: Args) -> dict[str, Any]:
    schema = {
        "type": "object",
        "properties": {
            "untitledSingle": {
                "type": "string",
                "description": "Select one option",
                "enum": ["option1", "option2", "option3"],
            },
            "titledSingle": {
                "type": "string",
                "description": "Select one option with titles",
                "oneOf": _titled(("value1", "First Option"), ("value2", "Second Option"), ("value3", "Third Option")),
            },
            "legacyEnum": {  # deprecated enumNames form, still in the spec
                "type": "string",
                "description": "Select one option (legacy)",
                "enum": ["opt1", "opt2", "opt3"],
                "enumNames": ["Option One", "Option Two", "Option Three"],
            },
            "untitledMulti": {
                "type": "array",
                "description": "Select multiple options",
                "minItems": 1,
                "maxItems": 3,
                "items": {"type": "string", "enum": ["option1", "option2", "option3"]},
            },
            "titledMulti": {
                "type": "array",
                "description": "Select multiple options with titles",
                "minItems": 1,
                "maxItems": 3,
                "items": {
                    "anyOf": _titled(
                        ("value1", "First Choice"), ("value2", "Second Choice"), ("value3", "Third Choice")
                    )
                },
            },
        },
        "required": [],
    }
    return await elicit(ctx, "Please select options from the enum fields", schema)


@tool(
    "json_schema_2020_12_tool",
    "Tool whose inputSchema uses JSON Schema 2020-12 keywords (SEP-1613)",
    {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "$defs": {
            "address": {
                "type": "object",
                "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
            }
        },
        "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"}},
        "additionalProperties": False,
    },
)
async def json_schema_2020_12(ctx: Ctx, args: Args) -> dict[str, Any]:
    return result(text(f"JSON Schema 2020-12 tool called with: {json.dumps(args, sort_keys=True)}"))


@tool("test_reconnection", "Closes its own SSE stream mid-call; the result arrives after the client resumes (SEP-1699)")
async def reconnection(ctx: Ctx, args: Args) -> dict[str, Any]:
    # The SDK only offers close_sse_stream when an event store is configured
    # and the request's MCP-Protocol-Version is >= 2025-11-25 (older clients
    # cannot resume); otherwise the result simply stays on the open stream.
    if ctx.close_sse_stream is not None:
        await ctx.close_sse_stream()
    await anyio.sleep(0.1)
    return result(text("Reconnection test completed successfully."))


async def list_tools(ctx: Ctx, params: types.PaginatedRequestParams | None) -> dict[str, Any]:
    return {
        "tools": [
            {"name": name, "description": t.description, "inputSchema": t.input_schema} for name, t in TOOLS.items()
        ]
    }


async def call_tool(ctx: Ctx, params: types.CallToolRequestParams) -> dict[str, Any]:
    entry = TOOLS.get(params.name)
    if entry is None:
        raise MCPError(code=types.INVALID_PARAMS, message=f"Unknown tool: {params.name}")
    args = params.arguments or {}
    missing = [name for name in entry.input_schema.get("required", []) if name not in args]
    if missing:
        return result(text(f"Missing required argument(s): {', '.join(missing)}"), is_error=True)
    return await entry.run(ctx, args)


# --------------------------------------------------------------------------
# Resources
# --------------------------------------------------------------------------

STATIC_RESOURCES: dict[str, dict[str, Any]] = {
    "test://static-text": {
        "name": "static-text",
        "description": "A static text resource",
        "mimeType": "text/plain",
        "text": "This is the content of the static text resource.",
    },
    "test://static-binary": {
        "name": "static-binary",
        "description": "A static binary resource (1x1 PNG)",
        "mimeType": "image/png",
        "blob": PNG_1X1,
    },
    "test://watched-resource": {
        "name": "watched-resource",
        "description": "A resource clients may subscribe to",
        "mimeType": "text/plain",
        "text": "Watched resource content",
    },
}
CONTENT_KEYS = ("mimeType", "text", "blob")

TEMPLATE_URI = "test://template/{id}/data"
TEMPLATE_RE = re.compile(r"^test://template/(?P<id>[^/]+)/data$")


async def list_resources(ctx: Ctx, params: types.PaginatedRequestParams | None) -> dict[str, Any]:
    listed = [
        {"uri": uri, "name": r["name"], "description": r["description"], "mimeType": r["mimeType"]}
        for uri, r in STATIC_RESOURCES.items()
    ]
    return {"resources": listed}


async def list_resource_templates(ctx: Ctx, params: types.PaginatedRequestParams | None) -> dict[str, Any]:
    template = {
        "uriTemplate": TEMPLATE_URI,
        "name": "template",
        "description": "Data for an id, substituted into the content",
        "mimeType": "application/json",
    }
    return {"resourceTemplates": [template]}


async def read_resource(ctx: Ctx, params: types.ReadResourceRequestParams) -> dict[str, Any]:
    uri = str(params.uri)
    if uri in STATIC_RESOURCES:
        fields = {k: v for k, v in STATIC_RESOURCES[uri].items() if k in CONTENT_KEYS}
        return {"contents": [{"uri": uri, **fields}]}
    if match := TEMPLATE_RE.match(uri):
        item_id = match["id"]
        body = {"id": item_id, "templateTest": True, "data": f"Data for ID: {item_id}"}
        return {"contents": [{"uri": uri, "mimeType": "application/json", "text": json.dumps(body)}]}
    raise MCPError(code=RESOURCE_NOT_FOUND, message="Resource not found", data={"uri": uri})


async def subscribe(ctx: Ctx, params: types.SubscribeRequestParams) -> dict[str, Any]:
    # Only tracked: nothing here changes, so no notifications/resources/updated is sent.
    conn_state(ctx).subscriptions.add(str(params.uri))
    return {}


async def unsubscribe(ctx: Ctx, params: types.UnsubscribeRequestParams) -> dict[str, Any]:
    conn_state(ctx).subscriptions.discard(str(params.uri))
    return {}


# --------------------------------------------------------------------------
# Prompts
# --------------------------------------------------------------------------


def user(content: dict[str, Any]) -> dict[str, Any]:
    return {"role": "user", "content": content}


PROMPTS: dict[str, dict[str, Any]] = {
    "test_simple_prompt": {"description": "A prompt without arguments", "arguments": []},
    "test_prompt_with_arguments": {
        "description": "A prompt with two required arguments",
        "arguments": [
            {"name": "arg1", "description": "First test argument", "required": True},
            {"name": "arg2", "description": "Second test argument", "required": True},
        ],
    },
    "test_prompt_with_embedded_resource": {
        "description": "A prompt embedding a resource",
        "arguments": [{"name": "resourceUri", "description": "URI of the resource to embed", "required": True}],
    },
    "test_prompt_with_image": {"description": "A prompt with image content", "arguments": []},
}


def prompt_messages(name: str, args: dict[str, str]) -> list[dict[str, Any]]:
    if name == "test_simple_prompt":
        return [user(text("This is a simple prompt for testing."))]
    if name == "test_prompt_with_arguments":
        return [user(text(f"Prompt with arguments: arg1='{args['arg1']}', arg2='{args['arg2']}'"))]
    if name == "test_prompt_with_embedded_resource":
        resource = {
            "uri": args["resourceUri"],
            "mimeType": "text/plain",
            "text": "Embedded resource content for testing.",
        }
        return [
            user({"type": "resource", "resource": resource}),
            user(text("Please process the embedded resource above.")),
        ]
    # test_prompt_with_image
    return [
        user({"type": "image", "data": PNG_1X1, "mimeType": "image/png"}),
        user(text("Please analyze the image above.")),
    ]


async def list_prompts(ctx: Ctx, params: types.PaginatedRequestParams | None) -> dict[str, Any]:
    return {"prompts": [{"name": name, **spec} for name, spec in PROMPTS.items()]}


async def get_prompt(ctx: Ctx, params: types.GetPromptRequestParams) -> dict[str, Any]:
    spec = PROMPTS.get(params.name)
    if spec is None:
        raise MCPError(code=types.INVALID_PARAMS, message=f"Unknown prompt: {params.name}")
    args = params.arguments or {}
    missing = [a["name"] for a in spec["arguments"] if a["required"] and a["name"] not in args]
    if missing:
        raise MCPError(code=types.INVALID_PARAMS, message=f"Missing required argument(s): {', '.join(missing)}")
    return {"description": spec["description"], "messages": prompt_messages(params.name, args)}


# --------------------------------------------------------------------------
# Completion and logging
# --------------------------------------------------------------------------

COMPLETIONS: dict[tuple[str, str], list[str]] = {
    ("test_prompt_with_arguments", "arg1"): ["paris", "park", "party", "test", "testValue1"],
    ("test_prompt_with_arguments", "arg2"): ["world", "testValue2"],
    (TEMPLATE_URI, "id"): ["1", "2", "123"],
}


async def complete(ctx: Ctx, params: types.CompleteRequestParams) -> dict[str, Any]:
    ref = params.ref
    key = ref.name if isinstance(ref, types.PromptReference) else ref.uri
    candidates = COMPLETIONS.get((key, params.argument.name), [])
    values = [v for v in candidates if v.startswith(params.argument.value)]
    return {"completion": {"values": values, "total": len(values), "hasMore": False}}


async def set_logging_level(ctx: Ctx, params: types.SetLevelRequestParams) -> dict[str, Any]:
    conn_state(ctx).log_level = params.level
    return {}


# --------------------------------------------------------------------------
# Event store: lets a client resume a POST stream the server closed (SEP-1699)
# --------------------------------------------------------------------------


class MemoryEventStore(EventStore):
    """Bounded in-memory event log; ids are '<stream>::<seq>' with a global seq.

    SDK 2.3.0 hands one store to every session and uses the JSON-RPC request
    id as the stream id, so two sessions can share a stream id. Replay
    therefore stops at the stream's first response: a POST stream ends there.
    """

    def __init__(self, max_events: int = 1000) -> None:
        self._events: deque[tuple[EventId, StreamId, types.JSONRPCMessage | None]] = deque(maxlen=max_events)
        self._seq = itertools.count(1)

    async def store_event(self, stream_id: StreamId, message: types.JSONRPCMessage | None) -> EventId:
        event_id = f"{stream_id}::{next(self._seq)}"
        self._events.append((event_id, stream_id, message))
        return event_id

    async def replay_events_after(self, last_event_id: EventId, send_callback: EventCallback) -> StreamId | None:
        events = list(self._events)
        start = next((i for i, (event_id, _, _) in enumerate(events) if event_id == last_event_id), None)
        if start is None:
            return None
        stream_id = events[start][1]
        for event_id, sid, message in events[start + 1 :]:
            if sid != stream_id or message is None:  # None = priming event, nothing to replay
                continue
            await send_callback(EventMessage(message, event_id))
            if isinstance(message, types.JSONRPCResponse | types.JSONRPCError):
                break
        return stream_id


# --------------------------------------------------------------------------
# Wiring
# --------------------------------------------------------------------------


def build_server() -> Server[Any]:
    return Server(
        SERVER_NAME,
        version="1.0.0",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_list_resource_templates=list_resource_templates,
        on_read_resource=read_resource,
        on_subscribe_resource=subscribe,
        on_unsubscribe_resource=unsubscribe,
        on_list_prompts=list_prompts,
        on_get_prompt=get_prompt,
        on_completion=complete,
        on_set_logging_level=set_logging_level,
    )


async def serve_stdio(server: Server[Any]) -> None:
    from mcp.server.stdio import stdio_server

    options = server.create_initialization_options(NotificationOptions())
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, options)


def serve_http(server: Server[Any], host: str, port: int) -> None:
    import uvicorn

    # streamable_http_app() turns on DNS-rebinding protection (Host/Origin
    # allow-list) by itself when host is a loopback name.
    app = server.streamable_http_app(
        streamable_http_path="/mcp",
        event_store=MemoryEventStore(),
        retry_interval=1000,  # ms; sent in priming events so clients reconnect quickly
        host=host,
    )
    # info: uvicorn's "running on" line tells a caller that passed --port 0 which port it got.
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transport", choices=["stdio", "streamable-http"], default="stdio")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    opts = parser.parse_args()

    server = build_server()
    if opts.transport == "stdio":
        anyio.run(serve_stdio, server)
    else:
        serve_http(server, opts.host, opts.port)


if __name__ == "__main__":
    main()
