"""The preflight reference: Starlette's CORSMiddleware answering the same preflight on the same
HTTP stack (uvicorn, uvloop, httptools), with the same allowed origin and headers.

usage: python cors_server.py PORT
"""

import sys

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.routing import Route


async def mcp(request):
    return Response(status_code=405)


app = Starlette(
    routes=[Route("/mcp", mcp, methods=["GET", "POST", "DELETE"])],
    middleware=[
        Middleware(
            CORSMiddleware,
            allow_origin_regex=r"http://(localhost|127\.0\.0\.1|\[::1\])(:\d+)?",
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=[
                "content-type",
                "authorization",
                "mcp-session-id",
                "mcp-protocol-version",
                "last-event-id",
                "mcp-method",
                "mcp-name",
            ],
            expose_headers=["mcp-session-id", "mcp-protocol-version"],
            max_age=600,
        ),
    ],
)

if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )
