"""A gateway served in this process (real uvicorn on a loopback socket, in a thread), for tests
that must reach into it while it serves: make the server side speak first, add tools, see which
task ran what."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from mcpgw.app import create_app
from mcpgw.http_server import protocol_class
from mcpgw.serving import GatewayServer
from mcpgw.settings import Settings


@contextmanager
def served(settings: Settings, own_http: bool = False) -> Iterator[tuple[Any, str, asyncio.AbstractEventLoop]]:
    """The app, its base URL and the loop it runs on; stopped (and the loop closed) on exit.
    `own_http`: the gateway's own HTTP protocol (`mcpgw serve`'s), else uvicorn's."""
    app = create_app(settings)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    http: Any = protocol_class(app.limits) if own_http else "httptools"
    config = uvicorn.Config(app, loop="asyncio", http=http, log_level="warning", lifespan="on")
    server = GatewayServer(config, app.drain)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=lambda: loop.run_until_complete(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "in-process gateway did not start"
        time.sleep(0.02)
    try:
        yield app, f"http://127.0.0.1:{sock.getsockname()[1]}", loop
    finally:
        server.should_exit = True
        thread.join(30)
        loop.close()


def when(predicate: Callable[[], Any], timeout: float = 20.0) -> bool:
    """Whether `predicate` holds within `timeout` s (polled every 20 ms)."""
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.02)
    return bool(predicate())
