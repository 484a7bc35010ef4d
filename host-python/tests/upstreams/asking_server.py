"""An upstream that asks its client things in the middle of its answers (the mcp SDK's MCPServer,
a 2025 session): a tool that elicits twice and then samples, a tool that asks two questions close
together (the second while the first is unanswered), a prompt that elicits, and a resource
template (`asking://item/{n}`, for listen streams naming many URIs). For the
2026-07-28 InputRequiredResult relay tests (several rounds; prompts/get as well as tools/call).

    python asking_server.py stdio
"""

from __future__ import annotations

import sys
import warnings

import anyio
import mcp_types as types
from mcp.server.mcpserver import Context, MCPServer
from mcp.shared.exceptions import MCPDeprecationWarning
from pydantic import BaseModel

warnings.filterwarnings("ignore", category=MCPDeprecationWarning)

server = MCPServer("asking-server")


class Name(BaseModel):
    name: str


class Colour(BaseModel):
    colour: str


@server.tool()
async def interview(ctx: Context) -> str:
    """Asks for a name, then a colour (two elicitations), then has the client sample a line.
    Reports progress once the name is in (seen by a client that asked for progress)."""
    name = await ctx.elicit("Your name?", schema=Name)
    await ctx.report_progress(1, 3, "name taken")
    colour = await ctx.elicit("Your colour?", schema=Colour)
    if name.action != "accept" or colour.action != "accept":
        return f"declined ({name.action}, {colour.action})"
    sampled = await ctx.request_context.session.create_message(
        [types.SamplingMessage(role="user", content=types.TextContent(type="text", text="a line"))],
        max_tokens=20,
    )
    line = sampled.content.text if isinstance(sampled.content, types.TextContent) else "?"
    return f"{name.data.name} likes {colour.data.colour}; {line}"


@server.tool()
async def pair(ctx: Context, stagger: float = 0.0) -> str:
    """Asks two questions at once: a name (elicitation) and, `stagger` seconds later while the
    first is still unanswered, a sampled line; answers with both."""
    got: dict[str, str] = {}

    async def elicit() -> None:
        name = await ctx.elicit("Your name?", schema=Name)
        got["name"] = name.data.name if name.action == "accept" and name.data else name.action

    async def sample() -> None:
        await anyio.sleep(stagger)
        sampled = await ctx.request_context.session.create_message(
            [types.SamplingMessage(role="user", content=types.TextContent(type="text", text="a line"))],
            max_tokens=20,
        )
        got["line"] = sampled.content.text if isinstance(sampled.content, types.TextContent) else "?"

    async with anyio.create_task_group() as tg:
        tg.start_soon(elicit)
        tg.start_soon(sample)
    return f"{got['name']}; {got['line']}"


@server.resource("asking://item/{n}", mime_type="text/plain")
def item(n: str) -> str:
    """Item `n` (any number of URIs an upstream offers through one template)."""
    return f"item {n}"


@server.prompt()
async def greeting(ctx: Context) -> str:
    """A greeting for a name the client is asked for."""
    name = await ctx.elicit("Whom to greet?", schema=Name)
    return f"Please greet {name.data.name if name.action == 'accept' else 'nobody'}."


if __name__ == "__main__":
    server.run(sys.argv[1] if len(sys.argv) > 1 else "stdio")
