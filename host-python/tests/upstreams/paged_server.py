"""An upstream whose tool list comes one tool per page (the low-level SDK server), for the
catalog page limit: `python paged_server.py PAGES` over stdio."""

from __future__ import annotations

import sys
from typing import Any

import mcp_types as types
from mcp.server.lowlevel import Server

PAGES = int(sys.argv[1])


async def list_tools(ctx: Any, params: types.PaginatedRequestParams) -> types.ListToolsResult:
    page = int(params.cursor or 0)
    tool = types.Tool(name=f"t{page}", description=f"tool on page {page}", input_schema={"type": "object"})
    return types.ListToolsResult(tools=[tool], next_cursor=str(page + 1) if page + 1 < PAGES else None)


async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=params.name)])


server = Server("paged", on_list_tools=list_tools, on_call_tool=call_tool)

if __name__ == "__main__":
    import anyio
    from mcp.server.stdio import stdio_server

    async def main() -> None:
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())

    anyio.run(main)
