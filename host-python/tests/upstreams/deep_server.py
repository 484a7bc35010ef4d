"""A small upstream MCP server (the mcp SDK's MCPServer, over stdio) whose tool answers a result
nested as deep as the caller asks: for the plugins' fail-closed tests (a plugin must refuse a
payload it cannot parse, never let it through unchecked).

    python deep_server.py stdio NAME
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

import mcp_types as types
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPDeprecationWarning

warnings.filterwarnings("ignore", category=MCPDeprecationWarning)

NAME = sys.argv[2] if len(sys.argv) > 2 else "deep"
server = MCPServer(f"{NAME}-server")


@server.tool()
def deep(text: str, depth: int) -> types.CallToolResult:
    """Answers `text` as text content, and structured content holding `text` nested `depth` deep."""
    pad: Any = text
    for _ in range(depth):
        pad = [pad]
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=text)],
        structured_content={"pad": pad},
    )


if __name__ == "__main__":
    server.run("stdio")
