"""The operator console: one page at `/admin/` (docs/observability.md, "The operator console").

Static files shipped in the package (`static/`: no build step, nothing fetched at run time) and
one JSON endpoint, `/admin/console/overview`, that the page polls. The page itself carries no
data, so it loads without a credential (loopback rule only); it asks for the admin token, keeps
it in sessionStorage and sends it as `Authorization: Bearer` on every call. Every data and
action endpoint refuses without it, exactly as the admin API does (it is the admin API's check).
No cookie is ever set, so a cross-site page cannot make the browser act with the operator's
credential (no CSRF); a strict Content-Security-Policy allows only the page's own script, style
and same-origin fetches, and the page writes data with textContent only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from importlib import resources
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

if TYPE_CHECKING:
    from ..admin import AdminAPI

STATIC = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
# Every console response: nothing from elsewhere, no framing (clickjacking), no caching, no referrer.
HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


def load_static() -> dict[str, bytes]:
    """The page's files, read once from the installed package (a missing file fails start-up)."""
    folder = resources.files(__name__) / "static"
    return {name: (folder / name).read_bytes() for name in STATIC}


class Console:
    def __init__(self, api: AdminAPI, overview: Callable[[], dict[str, Any]]) -> None:
        self.api = api
        self.overview_of = overview
        self.files = load_static()

    def routes(self, prefix: str = "") -> list[Route]:
        base = prefix + "/admin/"
        return [
            Route(base, self.page, methods=["GET"]),
            *(Route(base + "console/" + name, self.static, methods=["GET"]) for name in STATIC if name != "index.html"),
            Route(base + "console/overview", self.overview, methods=["GET"]),
        ]

    def _file(self, name: str) -> Response:
        return Response(self.files[name], 200, headers=HEADERS, media_type=STATIC[name])

    async def page(self, request: Request) -> Response:
        if (refused := self.api.remote_refusal(request, "console")) is not None:
            return refused
        return self._file("index.html")

    async def static(self, request: Request) -> Response:
        if (refused := self.api.remote_refusal(request, "console")) is not None:
            return refused
        return self._file(request.url.path.rsplit("/", 1)[-1])

    async def overview(self, request: Request) -> Response:
        if (refused := await self.api.refusal(request, "console overview")) is not None:
            refused.headers.update(HEADERS)
            return refused
        api = self.api
        found = {
            "time": time.time(),
            **self.overview_of(),
            "edge_admin": api.registry.status(),
            "plugin_admin": api.plugins.status() if api.plugins is not None else None,
        }
        return JSONResponse(found, headers=HEADERS)
