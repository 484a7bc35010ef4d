"""One client connection to one upstream MCP server, made with the `mcp` SDK.

The SDK's `ClientSession` does the handshake and turns the upstream's requests
(sampling, elicitation, roots) and notifications into callbacks; requests we
relay go through its JSON-RPC dispatcher raw, so the upstream's results reach
the client byte for byte, not re-validated into whatever shape the SDK knows.

A link lives in its own task (the SDK's transports are context managers); it
ends when the upstream goes away (EOF, process exit) or when it is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator
from typing import Any, Protocol

import anyio
import mcp_types as types
from mcp.client import Transport
from mcp.client._transport import TransportStreams
from mcp.client.session import ClientSession
from mcp.client.sse import sse_client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.dispatcher import CallOptions, ProgressFnT
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import MCP_PROTOCOL_VERSION_HEADER
from mcp.shared.jsonrpc_dispatcher import JSONRPCDispatcher
from mcp.shared.message import SessionMessage
from pydantic import ValidationError

from .. import __version__
from ..server.jsonrpc import INTERNAL_ERROR, JsonRpcError
from .config import UpstreamConfig

log = logging.getLogger("mcpgw.federation")

# 2026-07-28 envelope keys describe the downstream client's request, not ours.
ENVELOPE_PREFIX = "io.modelcontextprotocol/"
ProgressFn = ProgressFnT  # (progress, total, message) -> None, awaited


class UpstreamUnavailable(JsonRpcError):
    """The upstream cannot take the request: not connected, gone mid-call, or too slow."""

    def __init__(self, upstream: str, reason: str):
        super().__init__(INTERNAL_ERROR, f"Upstream {upstream!r} {reason}", {"upstream": upstream})


class LinkHandler(Protocol):
    """Where a link delivers what the upstream sends on its own initiative."""

    async def upstream_notification(self, link: UpstreamLink, method: str, params: dict[str, Any]) -> None: ...
    async def upstream_request(self, link: UpstreamLink, method: str, params: dict[str, Any]) -> dict[str, Any]: ...


def describe(exc: BaseException) -> str:
    """A one-line reason, reaching into the exception groups anyio raises."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:300]


def _dump(model: Any) -> dict[str, Any]:
    return model.model_dump(by_alias=True, mode="json", exclude_none=True) if model is not None else {}


def outgoing_params(params: dict[str, Any] | None) -> dict[str, Any]:
    """The client's params minus what only described its own request to us."""
    params = dict(params or {})
    meta = params.get("_meta")
    if isinstance(meta, dict):
        kept = {k: v for k, v in meta.items() if not k.startswith(ENVELOPE_PREFIX) and k != "progressToken"}
        if kept:
            params["_meta"] = kept
        else:
            del params["_meta"]
    return params


class UpstreamLink:
    def __init__(
        self,
        config: UpstreamConfig,
        handler: LinkHandler | None = None,
        client_capabilities: dict[str, Any] | None = None,
        label: str = "shared",
    ) -> None:
        self.config = config
        self.handler = handler
        self.label = label
        self.capabilities = client_capabilities or {}
        self.init_result: dict[str, Any] = {}
        self.version: str | None = None
        self.error: str | None = None
        self._dispatcher: JSONRPCDispatcher | None = None
        self._ready = asyncio.Event()
        self._ended = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle -----------------------------------------------------------
    @property
    def alive(self) -> bool:
        return self._dispatcher is not None and not self._ended.is_set()

    async def open(self) -> None:
        """Connect and initialize, or raise UpstreamUnavailable within the connect timeout."""
        self._task = asyncio.ensure_future(self._run())
        try:
            await asyncio.wait_for(self._ready.wait(), self.config.connect_timeout_s)
        except TimeoutError:
            self.error = f"did not initialize within {self.config.connect_timeout_s:g} s"
        if not self.alive:
            await self.close()
            raise UpstreamUnavailable(self.config.id, f"is unavailable: {self.error or 'connection closed'}")

    async def wait_closed(self) -> None:
        await self._ended.wait()

    async def close(self) -> None:
        self._ended.set()
        task = self._task
        if task is not None and not task.done():
            if self._dispatcher is None:
                task.cancel()  # still connecting or initializing: nothing to wind down politely
            try:
                await asyncio.wait_for(asyncio.shield(task), 10.0)
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()

    def _transport(self) -> Transport:
        cfg = self.config
        if cfg.transport == "stdio":
            params = StdioServerParameters(command=cfg.command, args=list(cfg.args), env=cfg.env or None, cwd=cfg.cwd)
            return stdio_client(params, errlog=sys.stderr)
        if cfg.transport == "sse":
            return sse_client(cfg.url, headers=cfg.headers or None, timeout=cfg.connect_timeout_s)
        return self._streamable_http()

    @contextlib.asynccontextmanager
    async def _streamable_http(self) -> AsyncIterator[TransportStreams]:
        async with (
            create_mcp_http_client(headers=self.config.headers or None) as http,
            streamable_http_client(self.config.url, http_client=http) as streams,
        ):
            yield streams

    async def _run(self) -> None:
        try:
            async with self._transport() as streams:
                read, write = streams[0], streams[1]
                # Our own hop between transport and dispatcher, so the link knows when the upstream is gone.
                inbound, dispatcher_read = anyio.create_memory_object_stream[SessionMessage | Exception](0)
                dispatcher = JSONRPCDispatcher(dispatcher_read, write)
                session = ClientSession(
                    dispatcher=dispatcher,
                    message_handler=self._on_message,
                    client_info=types.Implementation(name="mcpgw", version=__version__),
                    **self._callbacks(),
                )
                async with session, anyio.create_task_group() as tasks:
                    tasks.start_soon(self._pump, read, inbound)
                    result = await session.initialize()
                    self.init_result = _dump(result)
                    self.version = result.protocol_version
                    self._dispatcher = dispatcher
                    self._ready.set()
                    log.info(
                        "upstream %s (%s): connected, %s, protocol %s",
                        self.config.id,
                        self.label,
                        result.server_info.name,
                        self.version,
                    )
                    await self._ended.wait()
                    tasks.cancel_scope.cancel()
        except BaseException as exc:  # every way a link ends is reported the same way
            if not isinstance(exc, asyncio.CancelledError):
                self.error = describe(exc)
                log.warning("upstream %s (%s): connection failed: %s", self.config.id, self.label, self.error)
            elif not self._ended.is_set():
                raise
        finally:
            if self.error is None and not self._ended.is_set():
                self.error = "closed the connection"
            self._ended.set()
            self._ready.set()

    async def _pump(self, read: Any, inbound: Any) -> None:
        try:
            async for item in read:
                await inbound.send(item)
        finally:
            # Marked ended before the dispatcher sees EOF, so the requests it then fails are
            # reported as the upstream going away, not as the upstream's own errors.
            if not self._ended.is_set():
                self.error = "closed the connection"
                log.warning("upstream %s (%s): closed the connection", self.config.id, self.label)
            self._ended.set()
            await inbound.aclose()

    # -- relaying requests ---------------------------------------------------
    async def request(
        self, method: str, params: dict[str, Any] | None, on_progress: ProgressFn | None = None
    ) -> dict[str, Any]:
        """Send one request upstream and return its raw result; upstream errors come back as JsonRpcError."""
        dispatcher, version = self._dispatcher, self.version  # the version is set before the dispatcher
        if dispatcher is None or version is None or self._ended.is_set():
            raise UpstreamUnavailable(self.config.id, f"is unavailable: {self.error or 'not connected'}")
        opts: CallOptions = {"headers": {MCP_PROTOCOL_VERSION_HEADER: version}}
        if on_progress is not None:
            opts["on_progress"] = on_progress
        timeout = self.config.call_timeout_s or None
        try:
            return await asyncio.wait_for(dispatcher.send_raw_request(method, params, opts), timeout)
        except TimeoutError:
            raise UpstreamUnavailable(self.config.id, f"did not answer {method} within {timeout:g} s") from None
        except MCPError as exc:
            if self._ended.is_set():
                raise UpstreamUnavailable(
                    self.config.id, f"{self.error or 'closed the connection'} during {method}"
                ) from None
            raise JsonRpcError(exc.error.code, exc.error.message, exc.error.data) from None

    async def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        dispatcher, version = self._dispatcher, self.version  # the version is set before the dispatcher
        if dispatcher is not None and version is not None and not self._ended.is_set():  # self.alive
            await dispatcher.notify(method, params, {"headers": {MCP_PROTOCOL_VERSION_HEADER: version}})

    # -- what the upstream sends us ------------------------------------------
    async def _on_message(self, message: Any) -> None:
        if isinstance(message, Exception):
            log.debug("upstream %s (%s): transport error: %s", self.config.id, self.label, describe(message))
            return
        data = _dump(message)
        method = data.get("method", "")
        if method == "notifications/progress" or self.handler is None:
            return  # progress is routed by the dispatcher to the request it belongs to
        try:
            await self.handler.upstream_notification(self, method, data.get("params") or {})
        except Exception:
            log.exception("upstream %s: relaying %s failed", self.config.id, method)

    def _callbacks(self) -> dict[str, Any]:
        """Answer the upstream's requests only with what the downstream client can do."""
        caps = self.capabilities
        callbacks: dict[str, Any] = {}
        if "sampling" in caps:

            async def sampling(ctx: Any, params: Any) -> Any:
                result = await self._ask("sampling/createMessage", _dump(params))
                if isinstance(result, types.ErrorData):
                    return result
                try:
                    return types.CreateMessageResult.model_validate(result)
                except ValidationError:  # a tool-use answer has its own shape
                    return types.CreateMessageResultWithTools.model_validate(result)

            callbacks["sampling_callback"] = sampling
        if "elicitation" in caps:

            async def elicitation(ctx: Any, params: Any) -> Any:
                result = await self._ask("elicitation/create", _dump(params))
                return result if isinstance(result, types.ErrorData) else types.ElicitResult.model_validate(result)

            callbacks["elicitation_callback"] = elicitation
        if "roots" in caps:

            async def roots(ctx: Any) -> Any:
                result = await self._ask("roots/list", {})
                return result if isinstance(result, types.ErrorData) else types.ListRootsResult.model_validate(result)

            callbacks["list_roots_callback"] = roots
        return callbacks

    async def _ask(self, method: str, params: dict[str, Any]) -> dict[str, Any] | types.ErrorData:
        if self.handler is None:
            return types.ErrorData(code=INTERNAL_ERROR, message=f"{method} has no client to go to")
        try:
            return await self.handler.upstream_request(self, method, params)
        except JsonRpcError as err:
            return types.ErrorData(code=err.code, message=err.message, data=err.data)
        except Exception as exc:  # noqa: BLE001 - the client vanished, timed out, ...: the upstream gets an error
            return types.ErrorData(code=INTERNAL_ERROR, message=f"{method} could not reach the client: {describe(exc)}")
