"""A user's alternative to the gateway for relaying: FastMCP's proxy (`fastmcp.server.create_proxy`)
in front of the same upstream, on the same HTTP stack (uvicorn, one worker, uvloop, httptools),
JSON responses, stateful like the gateway's front. Runs in its own virtualenv (`make bench`
creates it with FastMCP pinned): its dependencies are not the gateway's.

usage: python fastmcp_proxy.py PORT UPSTREAM_URL
"""

import sys

import uvicorn
from fastmcp.server import create_proxy

if __name__ == "__main__":
    port, upstream = int(sys.argv[1]), sys.argv[2]
    proxy = create_proxy(upstream, name="fastmcp-proxy")
    app = proxy.http_app(path="/mcp", json_response=True, stateless_http=False)
    uvicorn.run(
        app, host="127.0.0.1", port=port, loop="uvloop", http="httptools", log_level="warning", access_log=False
    )
