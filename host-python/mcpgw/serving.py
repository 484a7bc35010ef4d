"""uvicorn, told about MCP streams before it closes connections.

uvicorn's graceful shutdown waits for every open response to end, and a GET
stream never ends by itself; the lifespan shutdown event comes only after
that wait. So the gateway drains first: running requests get
`shutdown_grace_s` to finish (then an error), streams close with `retry`.

As a worker of `mcpgw serve --workers N` (workers.py), the server also tells the
supervisor once it serves, and drains and exits if the supervisor goes away.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable

import uvicorn

from .workers import Slot, notify_ready

log = logging.getLogger("mcpgw.workers")


class GatewayServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, drain: Callable[[], Awaitable[None]], slot: Slot | None = None) -> None:
        super().__init__(config)
        self.drain = drain
        self.slot = slot

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.slot is not None and self.started:
            notify_ready(self.slot)
            asyncio.get_running_loop().add_reader(self.slot.lifeline_fd, self._supervisor_gone)

    def _supervisor_gone(self) -> None:
        assert self.slot is not None
        asyncio.get_running_loop().remove_reader(self.slot.lifeline_fd)
        log.warning("worker %d: the supervisor is gone; draining and exiting", self.slot.index)
        self.should_exit = True

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()  # no new connections while we drain
        await self.drain()
        await super().shutdown(sockets)
