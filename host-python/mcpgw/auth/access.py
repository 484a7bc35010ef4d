"""The policy at the dispatch point: what the session engine calls for every request, on every
transport. `Access.guard(dispatcher, principal)` returns the dispatcher itself when the policy
names no tools, prompts or resources (nothing extra on the path), else a `Guarded` one that
filters lists and answers a call to a hidden name exactly like a call to an unknown one."""

from __future__ import annotations

from typing import Any

from ..federation.names import public_name, public_uri
from ..federation.virtual import VirtualDispatcher
from ..server.catalog import RESOURCE_NOT_FOUND
from ..server.context import CallContext
from ..server.dispatcher import Dispatcher
from ..server.jsonrpc import INVALID_PARAMS, error_response
from ..state.principal import Principal
from ..state.session import Session
from .policy import Policy

_LISTS = {
    "tools/list": ("tools", "tool", "name"),
    "prompts/list": ("prompts", "prompt", "name"),
    "resources/list": ("resources", "resource", "uri"),
    "resources/templates/list": ("resourceTemplates", "resource", "uriTemplate"),
}


class Access:
    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    def guard(self, dispatcher: Dispatcher, principal: Principal | None) -> Dispatcher:
        if not self.policy.names:
            return dispatcher
        return Guarded(dispatcher, self.policy, principal)


class Guarded(Dispatcher):
    """`inner` as `principal` may see it. Names are matched as /mcp shows them: on a virtual
    server (`/servers/<id>/mcp`) its own names get the upstream's prefix first."""

    def __init__(self, inner: Dispatcher, policy: Policy, principal: Principal | None) -> None:
        super().__init__(inner.catalog)
        self.inner = inner
        self.policy = policy
        self.principal = principal
        self.prefix = inner.upstream.config.prefix if isinstance(inner, VirtualDispatcher) else None

    # Everything but `handle` is the inner dispatcher's.
    def server_info(self) -> dict[str, Any]:
        return self.inner.server_info()

    def capabilities(self) -> dict[str, Any]:
        return self.inner.capabilities()

    def instructions(self) -> str | None:
        return self.inner.instructions()

    def notified(self, method: str, params: dict[str, Any] | None, session: Session | None) -> None:
        self.inner.notified(method, params, session)

    def unavailable(self) -> str | None:
        return self.inner.unavailable()

    def endpoint(self) -> str:
        return self.inner.endpoint()

    def owner(self, method: str, params: dict[str, Any]) -> str | None:
        return self.inner.owner(method, params)

    def initialize_result(self, revision: str) -> dict[str, Any]:
        return self.inner.initialize_result(revision)

    def discover_result(self) -> dict[str, Any]:
        return self.inner.discover_result()

    def visible(self, kind: str, name: Any) -> bool:
        if not isinstance(name, str):
            return True  # the dispatcher answers a malformed name as it always does
        if self.prefix is not None:
            name = public_uri(self.prefix, name) if kind == "resource" else public_name(self.prefix, name)
        return self.policy.allows(kind, name, self.principal)

    async def handle(self, message: dict[str, Any], ctx: CallContext, session: Session | None) -> dict[str, Any]:
        method = message["method"]
        params = message.get("params")
        params = params if isinstance(params, dict) else {}
        hidden = self._hidden(method, params)
        if hidden is not None:
            return error_response(message["id"], *hidden)
        response = await self.inner.handle(message, ctx, session)
        listing = _LISTS.get(method)
        result = response.get("result")
        if listing is not None and isinstance(result, dict) and isinstance(result.get(listing[0]), list):
            key, kind, field = listing
            items = [i for i in result[key] if not isinstance(i, dict) or self.visible(kind, i.get(field))]
            response = {**response, "result": {**result, key: items}}
        return response

    def _hidden(self, method: str, params: dict[str, Any]) -> tuple[int, str, Any] | None:
        """The unknown-name error for a request naming something hidden, else None."""
        if method == "tools/call" and not self.visible("tool", params.get("name")):
            return (INVALID_PARAMS, f"Unknown tool: {params.get('name')}", None)
        if method == "prompts/get" and not self.visible("prompt", params.get("name")):
            return (INVALID_PARAMS, f"Unknown prompt: {params.get('name')}", None)
        if method in ("resources/read", "resources/subscribe", "resources/unsubscribe") and not self.visible(
            "resource", params.get("uri")
        ):
            uri = params.get("uri")
            return (RESOURCE_NOT_FOUND, f"Resource not found: {uri}", {"uri": uri})
        if method == "completion/complete":
            ref = params.get("ref")
            if isinstance(ref, dict):
                if ref.get("type") == "ref/prompt" and not self.visible("prompt", ref.get("name")):
                    return (INVALID_PARAMS, f"Unknown prompt: {ref.get('name')}", None)
                if ref.get("type") == "ref/resource" and not self.visible("resource", ref.get("uri")):
                    return (INVALID_PARAMS, f"Unknown resource template: {ref.get('uri')}", None)
        return None
