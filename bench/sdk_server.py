"""The reference: the official MCP Python SDK's own Streamable HTTP server with the same `echo`
tool, on the same HTTP stack (uvicorn, one worker, uvloop, httptools), JSON responses.
Runs in its own virtualenv (`make bench` creates it with the pinned SDK).

usage: python sdk_server.py PORT stateful|stateless
"""

import sys

import uvicorn
from mcp.server.mcpserver import MCPServer

server = MCPServer("sdk-reference")


@server.tool()
def echo(text: str) -> str:
    """Returns the given text unchanged."""
    return text


if __name__ == "__main__":
    port, mode = int(sys.argv[1]), sys.argv[2]
    app = server.streamable_http_app(json_response=True, stateless_http=mode == "stateless", max_sessions=None)
    uvicorn.run(
        app, host="127.0.0.1", port=port, loop="uvloop", http="httptools", log_level="warning", access_log=False
    )
