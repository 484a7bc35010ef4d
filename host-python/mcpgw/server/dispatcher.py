"""MCP method dispatch: knows JSON-RPC and MCP, nothing of HTTP."""

from __future__ import annotations

from typing import Any

from .. import __version__
from ..protocol import ALL_REVISIONS, STATELESS_REVISION
from ..state.session import Session
from .catalog import LIST_KEYS, Catalog
from .context import LOG_LEVELS, CallContext
from .input_required import (
    INTERACTIVE_METHODS,
    InputRequired,
    RequestStates,
    input_required_result,
    strip_retry,
)
from .jsonrpc import INVALID_PARAMS, METHOD_NOT_FOUND, JsonRpcError, error_response, result_response
from .listen import ListenHub
from .stateless import SESSION_ONLY_METHODS, stamp_result

# The requestState key of this process (input_required.py); the composition root replaces it
# with MCPGW_REQUEST_STATE_KEY's when set.
PROCESS_STATES = RequestStates()

CAPABILITIES: dict[str, Any] = {
    "tools": {"listChanged": True},
    "resources": {"listChanged": True, "subscribe": False},
    "prompts": {"listChanged": True},
    "logging": {},
    "completions": {},
}
# Methods the built-in catalog answers from memory, sending nothing first (`answers_at_once`).
AT_ONCE_METHODS = frozenset({"ping", *LIST_KEYS, "resources/read", "prompts/get", "completion/complete"})
INSTRUCTIONS = (
    "mcpgw built-in catalog: echo, add, sleep, log and ask tools; a readme, a logo and an echo template;"
    " a greet prompt."
)


def _params(message: dict[str, Any]) -> dict[str, Any]:
    params = message.get("params")
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise JsonRpcError(INVALID_PARAMS, "params must be an object")
    return params


def _no_cursor(params: dict[str, Any]) -> None:
    # Lists come in one page; a cursor we never issued is the caller's error.
    if params.get("cursor") is not None:
        raise JsonRpcError(INVALID_PARAMS, "Invalid cursor: this server returns every item in one page")


class Dispatcher:
    # 2026-07-28 subscriptions/listen streams (set by the composition root; None: not offered).
    listens: ListenHub | None = None
    states: RequestStates = PROCESS_STATES  # signs and checks InputRequiredResult requestState

    def __init__(self, catalog: Catalog):
        self.catalog = catalog

    def listen_scope(self) -> str | None:
        """Which endpoint's events a subscriptions/listen here receives (None: /mcp's)."""
        return None

    def server_info(self) -> dict[str, Any]:
        return {"name": "mcpgw", "version": __version__}

    def capabilities(self) -> dict[str, Any]:
        return CAPABILITIES

    def instructions(self) -> str | None:
        return INSTRUCTIONS

    def notified(self, method: str, params: dict[str, Any] | None, session: Session | None) -> None:
        """A client notification the transport does not handle itself."""

    def unavailable(self) -> str | None:
        """Why this server cannot take a new session now, or None."""
        return None

    def endpoint(self) -> str:
        """The path clients reach this dispatcher at (what plugins see as the endpoint)."""
        return "/mcp"

    def answers_at_once(self, method: str, params: dict[str, Any]) -> bool:
        """Whether answering `method` sends the client nothing before its result (no log,
        notification or server-to-client request) and waits on nothing outside this process:
        then the engine may answer it in the transport's own task, without a task of its own
        (`SessionEngine.answer_now`). The built-in catalog's lists, reads and completions, ping,
        and calls of its quiet tools; anything else (or unknown) is False."""
        if method in AT_ONCE_METHODS:
            return True
        if method == "tools/call":
            tool = self.catalog.tools.get(params.get("name"))  # type: ignore[arg-type]
            return tool is not None and tool.quiet
        return False

    def owner(self, method: str, params: dict[str, Any]) -> str | None:
        """The upstream that owns the tool, prompt or resource a request names; None for built-ins."""
        return None

    def initialize_result(self, revision: str) -> dict[str, Any]:
        result: dict[str, Any] = {
            "protocolVersion": revision,
            "capabilities": self.capabilities(),
            "serverInfo": self.server_info(),
        }
        if self.instructions():
            result["instructions"] = self.instructions()
        return result

    def discover_result(self) -> dict[str, Any]:
        result: dict[str, Any] = {"supportedVersions": list(ALL_REVISIONS), "capabilities": self.capabilities()}
        if self.instructions():
            result["instructions"] = self.instructions()
        return result

    async def handle(self, message: dict[str, Any], ctx: CallContext, session: Session | None) -> dict[str, Any]:
        """Answer one request (not initialize, which the session engine answers)."""
        id_ = message["id"]
        method = message["method"]
        stateless = ctx.revision == STATELESS_REVISION
        try:
            if stateless:
                if method in SESSION_ONLY_METHODS:
                    raise JsonRpcError(
                        METHOD_NOT_FOUND, f"Method not found: {method} (not in {STATELESS_REVISION})", method
                    )
                if method == "server/discover":
                    result = self.discover_result()
                elif method == "subscriptions/listen" and self.listens is not None:
                    result = await self.listens.serve(self.listen_scope(), id_, _params(message), ctx)
                elif method in INTERACTIVE_METHODS:
                    result = await self._interactive(method, _params(message), ctx, session)
                else:
                    result = await self._result(method, _params(message), ctx, session)
                return result_response(id_, stamp_result(method, result, self.server_info()))
            params = message.get("params")  # (`_params` and `result_response` inline: every request)
            if params is None:
                params = {}
            elif not isinstance(params, dict):
                raise JsonRpcError(INVALID_PARAMS, "params must be an object")
            return {"jsonrpc": "2.0", "id": id_, "result": await self._result(method, params, ctx, session)}
        except JsonRpcError as err:
            return error_response(id_, err.code, err.message, err.data)

    async def _interactive(
        self, method: str, params: dict[str, Any], ctx: CallContext, session: Session | None
    ) -> dict[str, Any]:
        """A 2026-07-28 tools/call, prompts/get or resources/read: a retry's requestState is
        checked first; a handler that needs the client's input answers InputRequiredResult."""
        continuation = self.states.verify(method, params, ctx.caller)
        if continuation is not None:
            ctx.input_responses, ctx.exchange = continuation.responses, continuation.exchange
        try:
            return await self._result(method, strip_retry(params), ctx, session)
        except InputRequired as needed:
            state = self.states.issue(method, params, ctx.caller, needed.exchange)
            return input_required_result(needed.requests, state)

    async def _result(
        self, method: str, params: dict[str, Any], ctx: CallContext, session: Session | None
    ) -> dict[str, Any]:
        catalog = self.catalog
        if method == "ping":
            return {}
        if method == "tools/call":
            return await catalog.call_tool(params, ctx)
        if method in LIST_KEYS:
            _no_cursor(params)
            items = catalog.serialised(method) if ctx.lists_as_bytes else catalog.listing(method)
            return {LIST_KEYS[method]: items}
        if method == "resources/read":
            return catalog.read_resource(params.get("uri"))
        if method == "prompts/get":
            return catalog.get_prompt(params)
        if method == "completion/complete":
            return catalog.complete(params)
        if method == "logging/setLevel":
            level = params.get("level")
            if level not in LOG_LEVELS:
                raise JsonRpcError(INVALID_PARAMS, f"level must be one of {', '.join(LOG_LEVELS)}")
            if session is not None:
                session.log_level = level
                session.log_level_set = True
            return {}
        raise JsonRpcError(METHOD_NOT_FOUND, f"Method not found: {method}", method)
