"""MCP method dispatch: knows JSON-RPC and MCP, nothing of HTTP."""
from __future__ import annotations

from typing import Any

from .. import __version__
from .jsonrpc import INVALID_PARAMS, METHOD_NOT_FOUND, JsonRpcError, error_response, result_response
from .tools import BUILTIN_TOOLS, Tool, ToolArgumentError

# Revisions an `initialize` may negotiate (2026-07-28 is stateless and has no session).
SESSIONFUL_REVISIONS = ("2025-03-26", "2025-06-18", "2025-11-25")
LATEST_SESSIONFUL = SESSIONFUL_REVISIONS[-1]
STATELESS_REVISION = "2026-07-28"


def negotiate(requested: Any) -> str:
    """The spec's rule: the client's version if we speak it, else our latest."""
    return requested if requested in SESSIONFUL_REVISIONS else LATEST_SESSIONFUL


class Dispatcher:
    def __init__(self, tools: dict[str, Tool] | None = None):
        self.tools = dict(BUILTIN_TOOLS if tools is None else tools)
        self._tool_list = [t.describe() for t in self.tools.values()]

    def initialize_result(self, revision: str) -> dict[str, Any]:
        return {
            "protocolVersion": revision,
            "capabilities": {"tools": {"listChanged": False}},
            "serverInfo": {"name": "mcpgw", "version": __version__},
        }

    async def handle_request(self, message: dict[str, Any], revision: str) -> dict[str, Any]:
        """Answer one request (not initialize, which the transport handles with the session)."""
        id_ = message["id"]
        method = message["method"]
        params = message.get("params") or {}
        try:
            if method == "ping":
                return result_response(id_, {})
            if method == "tools/list":
                return result_response(id_, {"tools": self._tool_list})
            if method == "tools/call":
                return result_response(id_, self._call_tool(params))
            raise JsonRpcError(METHOD_NOT_FOUND, f"Method not found: {method}")
        except JsonRpcError as err:
            return error_response(id_, err.code, err.message, err.data)

    def _call_tool(self, params: Any) -> dict[str, Any]:
        if not isinstance(params, dict) or not isinstance(params.get("name"), str):
            raise JsonRpcError(INVALID_PARAMS, "tools/call needs params.name")
        tool = self.tools.get(params["name"])
        if tool is None:
            raise JsonRpcError(INVALID_PARAMS, f"Unknown tool: {params['name']}")
        args = params.get("arguments") or {}
        if not isinstance(args, dict):
            raise JsonRpcError(INVALID_PARAMS, "params.arguments must be an object")
        try:
            text = tool.run(args)
        except ToolArgumentError as exc:
            # A tool-level failure the model can read and correct: a result, not a protocol error.
            return {"content": [{"type": "text", "text": str(exc)}], "isError": True}
        return {"content": [{"type": "text", "text": text}], "isError": False}
