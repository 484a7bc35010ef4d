"""The embedded default catalog: what the gateway serves with no upstream configured.

Small on purpose, but it exercises every part of the protocol a client can
meet: plain results, tool errors, progress, cancellation, logging, elicitation
(an InputRequiredResult in 2026-07-28), text and
binary resources, a resource template, a prompt with arguments and completion.
"""

from __future__ import annotations

import asyncio
import base64
import struct
import zlib
from typing import Any
from urllib.parse import unquote

from .catalog import Catalog, Prompt, PromptArgument, Resource, ResourceTemplate, Tool, ToolArgumentError
from .context import LOG_LEVELS, CallContext

MAX_SLEEP_S = 300.0
MAX_LOG_COUNT = 100


def _number(args: dict[str, Any], key: str) -> float | int:
    value = args.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ToolArgumentError(f"'{key}' must be a number")
    return value


async def _echo(args: dict[str, Any], ctx: CallContext) -> str:
    text = args.get("text")
    if not isinstance(text, str):
        raise ToolArgumentError("'text' must be a string")
    return text


async def _add(args: dict[str, Any], ctx: CallContext) -> str:
    return str(_number(args, "a") + _number(args, "b"))


async def _sleep(args: dict[str, Any], ctx: CallContext) -> str:
    seconds = _number(args, "seconds")
    ticks = args.get("ticks", 10)
    if not 0 <= seconds <= MAX_SLEEP_S:
        raise ToolArgumentError(f"'seconds' must be between 0 and {MAX_SLEEP_S:g}")
    if isinstance(ticks, bool) or not isinstance(ticks, int) or not 1 <= ticks <= 1000:
        raise ToolArgumentError("'ticks' must be an integer between 1 and 1000")
    # Cancellation lands at the next await: within one tick at most.
    for done in range(1, ticks + 1):
        await asyncio.sleep(seconds / ticks)
        await ctx.progress(done, ticks, f"slept {done}/{ticks}")
    return f"slept {seconds:g}s"


async def _log(args: dict[str, Any], ctx: CallContext) -> str:
    message = args.get("message")
    level = args.get("level", "info")
    count = args.get("count", 1)
    if not isinstance(message, str):
        raise ToolArgumentError("'message' must be a string")
    if level not in LOG_LEVELS:
        raise ToolArgumentError(f"'level' must be one of {', '.join(LOG_LEVELS)}")
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_LOG_COUNT:
        raise ToolArgumentError(f"'count' must be an integer between 1 and {MAX_LOG_COUNT}")
    sent = 0
    if ctx.wants(level):
        for i in range(count):
            await ctx.log(level, message if count == 1 else f"{message} ({i + 1}/{count})")
            sent += 1
    return f"sent {sent} log message(s) at {level} (client level {ctx.log_level or 'off'})"


async def _ask(args: dict[str, Any], ctx: CallContext) -> str:
    question = args.get("question")
    if not isinstance(question, str) or not question:
        raise ToolArgumentError("'question' must be a non-empty string")
    if "elicitation" not in ctx.capabilities:
        raise ToolArgumentError("the client declared no elicitation capability: nobody to ask")
    # Sessions: elicitation/create on the request's stream. 2026-07-28: an InputRequiredResult,
    # and the client's retry carries the answer under the same key.
    answer = await ctx.input(
        "answer",
        "elicitation/create",
        {
            "mode": "form",
            "message": question,
            "requestedSchema": {
                "type": "object",
                "properties": {"answer": {"type": "string", "title": "Answer"}},
                "required": ["answer"],
            },
        },
    )
    if not isinstance(answer, dict) or answer.get("action") not in ("accept", "decline", "cancel"):
        raise ToolArgumentError("the client's answer is not an elicitation result")
    content = answer.get("content")
    if answer["action"] == "accept" and isinstance(content, dict) and isinstance(content.get("answer"), str):
        return f"answered: {content['answer']}"
    return f"no answer: the client chose {answer['action']}"


def _png_1x1(rgb: tuple[int, int, int]) -> bytes:
    """A one-pixel PNG: a real binary resource, built here rather than pasted as opaque base64."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)  # 1x1, 8-bit RGB
    pixels = zlib.compress(b"\x00" + bytes(rgb))  # filter byte 0, one pixel
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


GREETING_STYLES = ("casual", "formal", "pirate")
NAMES = ("Ada", "Alan", "Barbara", "Grace", "Linus", "Margaret")


def _greet(args: dict[str, str]) -> str:
    style = args.get("style", "casual")
    name = args["name"]
    if style == "formal":
        return f"Please write a formal greeting addressed to {name}."
    if style == "pirate":
        return f"Please greet {name} the way a pirate would."
    return f"Please write a short, friendly greeting for {name}."


README_TEXT = (
    "mcpgw: an MCP gateway whose Streamable HTTP edge runs as a sandboxed WebAssembly component.\n"
    "This is the built-in catalog; configure upstream servers to federate real ones.\n"
)


def builtin_catalog() -> Catalog:
    tools = [
        Tool(
            "echo",
            "Returns the given text unchanged.",
            {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
            _echo,
            quiet=True,
        ),
        Tool(
            "add",
            "Adds two numbers.",
            {
                "type": "object",
                "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                "required": ["a", "b"],
            },
            _add,
            quiet=True,
        ),
        Tool(
            "sleep",
            "Sleeps for the given seconds in ticks, reporting progress after each; cancellable.",
            {
                "type": "object",
                "properties": {
                    "seconds": {"type": "number", "minimum": 0, "maximum": MAX_SLEEP_S},
                    "ticks": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 10},
                },
                "required": ["seconds"],
            },
            _sleep,
        ),
        Tool(
            "log",
            "Sends log messages (notifications/message) at a level, if the client's level lets them through.",
            {
                "type": "object",
                "properties": {
                    "message": {"type": "string"},
                    "level": {"type": "string", "enum": list(LOG_LEVELS), "default": "info"},
                    "count": {"type": "integer", "minimum": 1, "maximum": MAX_LOG_COUNT, "default": 1},
                },
                "required": ["message"],
            },
            _log,
        ),
        Tool(
            "ask",
            "Asks the client's user a question (elicitation, form mode) and returns the answer.",
            {"type": "object", "properties": {"question": {"type": "string"}}, "required": ["question"]},
            _ask,
        ),
    ]
    resources = [
        Resource("mcpgw://readme", "readme", "What this gateway is.", "text/plain", text=README_TEXT),
        Resource(
            "mcpgw://logo.png",
            "logo",
            "A one-pixel PNG (a binary resource).",
            "image/png",
            blob=base64.b64encode(_png_1x1((255, 128, 0))).decode(),
        ),
    ]
    templates = [
        ResourceTemplate(
            "mcpgw://echo/{text}",
            "echo",
            "Reads back the text in the URI.",
            "text/plain",
            render=lambda values: unquote(values["text"]),
        ),
    ]
    prompts = [
        Prompt(
            "greet",
            "Asks for a greeting for someone, in a style.",
            (
                PromptArgument("name", "Who to greet", True, NAMES),
                PromptArgument("style", "casual, formal or pirate", False, GREETING_STYLES),
            ),
            _greet,
        ),
    ]
    return Catalog(
        tools={t.name: t for t in tools},
        resources={r.uri: r for r in resources},
        templates=templates,
        prompts={p.name: p for p in prompts},
    )
