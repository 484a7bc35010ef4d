"""uvicorn, told about MCP streams before it closes connections.

uvicorn's graceful shutdown waits for every open response to end, and a GET
stream never ends by itself; the lifespan shutdown event comes only after
that wait. So the gateway drains first: running requests get
`shutdown_grace_s` to finish (then an error), streams close with `retry`.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable

import uvicorn


class GatewayServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, drain: Callable[[], Awaitable[None]]) -> None:
        super().__init__(config)
        self.drain = drain

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()  # no new connections while we drain
        await self.drain()
        await super().shutdown(sockets)
