"""What the session engine calls around a request when plugins are configured.

The engine knows nothing of plugins: it gets a `Hooks` as an explicit
constructor value (None: no plugins, and the dispatch path is exactly what it
was). For a request whose method is in `hooks.methods`, the engine hands the
request to `hooks.around` together with `handle`, the dispatcher call it would
have made; the hooks run the plugin chain before and after it (and may answer
without calling it: a denial). `mcpgw.plugins` implements it.

`Guard` is the same kind of small protocol for the access policy (`auth.access.Access`), so the
engine below knows no more of auth/ than of plugins/.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from ..state.principal import Principal
from ..state.session import Session
from .dispatcher import Dispatcher

Response = dict[str, Any]
# The dispatcher's answer to one request message (the engine binds its call context).
Handle = Callable[[dict[str, Any]], Awaitable[Response]]


class Guard(Protocol):
    """The access policy at the dispatch point (`auth.access.Access` implements it): the dispatcher
    a caller may use, which hides and refuses what the policy denies it."""

    def guard(self, dispatcher: Dispatcher, principal: Principal | None) -> Dispatcher: ...


class Hooks(Protocol):
    # The MCP methods the chain acts on; every other request goes straight to the dispatcher.
    methods: frozenset[str]

    async def around(
        self,
        message: dict[str, Any],
        dispatcher: Dispatcher,
        session: Session | None,
        principal: Principal | None,
        handle: Handle,
    ) -> Response:
        """The response to `message`: the plugin chain around `handle(message)`. `principal` is the
        caller when authentication is on (None without it)."""
        ...
