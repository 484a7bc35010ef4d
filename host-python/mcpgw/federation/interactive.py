"""2026-07-28 clients calling upstreams that ask them things: `InputRequiredResult`, relayed.

An upstream link speaks a 2025 revision: it sends `elicitation/create`,
`sampling/createMessage` or `roots/list` as requests of its own while a call is
running, and waits for the answer. A 2026-07-28 client has no stream to receive
them on. So, for a `tools/call`, `prompts/get` or `resources/read` from a client
that declared one of those capabilities:

1. the call goes upstream on a link of its own for the time of the call (taken
   from a small pool per upstream and declared-capability profile, so the
   upstream is offered exactly what the client declared and every request the
   upstream sends on it belongs to this one call);
2. when the upstream asks something, the client's request is answered with an
   `InputRequiredResult` (the upstream's request under a key, and a signed
   requestState naming this parked exchange); the upstream call stays open,
   its request waiting;
3. the client's retry (same method, name and arguments, same caller) carries the
   answer under that key: it is handed to the waiting upstream request, and the
   retry waits for what comes next: the call's result, or the next question.

A parked exchange lives in the process that parked it, for at most
`MCPGW_INPUT_WAIT_S` after each InputRequiredResult (or until the call ends); then the
upstream call is cancelled and its link closed. A retry that comes after that gets -32602 saying
so. With several processes sharing Redis (`attach`), the exchange is named after its process
(`<token>@<process>`, inside the signed requestState): a retry another process receives is
forwarded to that one over its channel and answered as if it had come there (the result, the next
round, or an error, sent back and written by the receiving process); a holder that stopped gives
the client -32603 naming the loss. Without Redis, a retry reaching another process gets -32602.
A client that closes its request while waiting gives the call up (the upstream is told by the
link's close).

Each round's requestState names the exchange and the round (`<id>:<round>`): only the state of
the latest round continues it. A retry must answer every question it was sent; a question the
upstream asked after that round went out is sent in the next round (not required before). The
answers are checked before anything changes: a malformed one is refused with -32602 and the
exchange stays parked as it was (its deadline unchanged).

Bounded: links are reserved before they are opened, so at most the upstream's
`max_connections` links (checked out, being opened or idle) exist per upstream, and at most
`MCPGW_MAX_INPUT_WAITS_PER_CLIENT` calls of one client address are running or parked at once
(counted before the first await). The pool is keyed by a capability profile reduced to the
capability names and their known sub-flags, so a client's arbitrary capability contents cannot
open links or lists without bound.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from ..protocol import STATELESS_REVISION
from ..server.context import CallContext
from ..server.input_required import STATE_TTL_S, InputRequired
from ..server.jsonrpc import INTERNAL_ERROR, INVALID_PARAMS, JsonRpcError
from .link import UpstreamLink, UpstreamUnavailable, relayable
from .process_relay import Channels, Kinds, NoAnswer, Note, ProcessRelay, ProcessStopped
from .upstream import Upstream, read_lists

log = logging.getLogger("mcpgw.federation")

POOL_IDLE = 4  # idle links kept per (upstream, capability profile)
POOL_IDLE_S = 60.0  # an idle pooled link older than this is closed rather than reused
MAX_PER_CLIENT = 16  # default: calls of one client address running upstream and waiting for its input at once
DONE_KEPT_S = 60.0  # a call that ended while waiting for the client's retry: kept this long for it
LIMIT_EXCEEDED = -32029  # as the engine's per-client caps
_KEYS = {"elicitation/create": "elicit", "sampling/createMessage": "sample", "roots/list": "roots"}
# The capabilities an upstream may use to ask a client things, and their known sub-flags (the
# profile a pooled link offers; anything else a client puts in them is not offered).
_PROFILE_FLAGS = {"sampling": ("context", "tools"), "elicitation": ("form", "url"), "roots": ("listChanged",)}
MAX_ERROR_CODE = 2**31  # a client's refusal's error code, as JSON-RPC codes go (a 32-bit integer)
# Scale-out: a retry that reaches a process not holding its exchange goes to the holder over its
# channel, as hub.py's upcall does (process_relay.py: the holder checked alive every second, the wait
# bounded by the upstream's call_timeout_s plus a margin).
RETRIES = Kinds("inretry", "incancel", "innote", "inreply", what="forwarded retry of")


def holder_of(exchange: str) -> str | None:
    """The gateway process an exchange (`<token>@<process>:<round>`) was parked in (None: one
    parked with no shared state, named by its token alone)."""
    name = exchange.partition(":")[0]
    return name.partition("@")[2] or None


def interactive_capabilities(ctx: CallContext) -> dict[str, Any]:
    """What of the 2026-07-28 client's declared capabilities an upstream may use to ask it things,
    as a profile: the capability names and their known sub-flags only (`roots.listChanged` as
    true, the others as `{}`), so the profiles are few whatever a client declares."""
    declared = relayable(ctx.capabilities)
    profile: dict[str, Any] = {}
    for name, flags in _PROFILE_FLAGS.items():
        value = declared.get(name)
        if not isinstance(value, dict):
            continue
        if name == "roots":
            profile[name] = {"listChanged": True} if value.get("listChanged") is True else {}
        else:
            profile[name] = {flag: {} for flag in flags if isinstance(value.get(flag), dict)}
    return profile


def _answer_outcome(key: str, answer: Any) -> dict[str, Any] | JsonRpcError:
    """A client's answer to one question, as the upstream's request gets it (a result, or the
    refusal as an error); -32602 for one that is neither."""
    if not isinstance(answer, dict):
        raise JsonRpcError(INVALID_PARAMS, f"inputResponses: the answer to {key} is not an object")
    error = answer.get("error")
    if error is None:
        return answer
    code = error.get("code", INTERNAL_ERROR) if isinstance(error, dict) else None
    if not isinstance(code, int) or isinstance(code, bool) or not -MAX_ERROR_CODE <= code < MAX_ERROR_CODE:
        raise JsonRpcError(
            INVALID_PARAMS, f"inputResponses: the refusal of {key} needs error.code, an integer (and a message)"
        )
    message = error.get("message", "")
    return JsonRpcError(code, message if isinstance(message, str) else str(message)[:200])


class _Exchange:
    """One relayed call from its first request to its result, across the client's retries."""

    def __init__(self, id_: str, upstream: Upstream, link: UpstreamLink, pool_key: tuple[str, str]) -> None:
        self.id = id_
        self.upstream = upstream
        self.link = link
        self.pool_key = pool_key
        self.ctx: CallContext | None = None  # the client request serving it now
        self.task: asyncio.Task[dict[str, Any]] | None = None
        self.waiting: dict[str, asyncio.Future[Any]] = {}  # key -> the upstream's request, unanswered
        self.asked: dict[str, dict[str, Any]] = {}  # key -> {method, params}, not yet sent to the client
        self.news = asyncio.Event()
        self.expiry: asyncio.TimerHandle | None = None
        self.client: str | None = None  # the address of the client whose call it is
        self.released = False  # its link went back to the pool (or was closed)
        self.round = 0  # InputRequiredResults sent: only the latest round's state continues it
        self._seq = 0

    def key(self, method: str) -> str:
        self._seq += 1
        return f"{_KEYS.get(method, 'input')}-{self._seq}"


class _LinkRelay:
    """The handler of a pooled link: what the upstream sends belongs to the exchange using it."""

    def __init__(self, upstream: Upstream, forget: Callable[[str], None]) -> None:
        self.upstream = upstream
        self.forget = forget  # the lists read for capability profiles of an upstream are stale
        self.exchange: _Exchange | None = None

    async def upstream_notification(self, link: UpstreamLink, method: str, params: dict[str, Any]) -> None:
        exchange = self.exchange
        if method.endswith("/list_changed"):
            # What 2026-07-28 clients that declared capabilities were listed is read again, and the
            # catalog re-reads (subscriptions/listen streams hear of it if that changed anything).
            self.forget(self.upstream.id)
            self.upstream.refresh_soon(method)
            return
        if exchange is None or exchange.ctx is None:
            return
        if method == "notifications/message" and not exchange.ctx.wants(str(params.get("level", "info"))):
            return
        with contextlib.suppress(Exception):
            await exchange.ctx.emit({"jsonrpc": "2.0", "method": method, "params": params})

    async def upstream_request(self, link: UpstreamLink, method: str, params: dict[str, Any]) -> dict[str, Any]:
        exchange = self.exchange
        if exchange is None:
            raise JsonRpcError(INTERNAL_ERROR, f"{method}: no call of a client is running on this connection")
        key = exchange.key(method)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        exchange.waiting[key] = future
        exchange.asked[key] = {"method": method, "params": params}
        exchange.news.set()
        try:
            answer: dict[str, Any] = await future
            return answer
        finally:  # answered, or withdrawn by the upstream (the SDK cancels this callback)
            exchange.waiting.pop(key, None)
            exchange.asked.pop(key, None)


class InteractiveCalls:
    def __init__(self, max_per_client: int = MAX_PER_CLIENT, wait_s: float = STATE_TTL_S) -> None:
        self.max_per_client = max_per_client  # calls of one client address running or parked (0: no cap)
        self.wait_s = wait_s  # how long a parked call waits for the client's retry
        self.refused = 0
        self._idle: dict[tuple[str, str], list[tuple[UpstreamLink, _LinkRelay, float]]] = {}
        self._out: collections.Counter[str] = collections.Counter()  # upstream id -> links checked out or opening
        self._starting: collections.Counter[str] = collections.Counter()  # client -> first calls not yet parked
        self._parked: dict[str, _Exchange] = {}
        self._closing: set[asyncio.Task[None]] = set()
        # (upstream id, capability profile) -> its lists as a client declaring those capabilities
        # sees them (an upstream may offer such a client more: tools that sample, elicit, ask for
        # roots), with the generation they were read at; forgotten on list_changed.
        self._lists: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] = {}
        self._generation: dict[str, int] = {}
        # Scale-out (attach): retries forwarded from here to the holder, and run here for another
        # process (process_relay.py).
        self.channels: Channels | None = None
        self._upstreams: Mapping[str, Upstream] = {}
        self._relay = ProcessRelay(RETRIES)
        self.forwarded = 0  # retries sent to the process holding their call
        self.served = 0  # retries run here for another process

    def live(self) -> int:
        return len(self._parked)

    def health(self) -> dict[str, Any]:
        return {
            "max_input_waits_per_client": self.max_per_client,
            "input_wait_s": self.wait_s,
            "calls": len(self._parked),
            "links_in_use": sum(self._out.values()),
            "links_idle": sum(len(links) for links in self._idle.values()),
            "refused": self.refused,
            "retries_forwarded": self.forwarded,
            "retries_served": self.served,
        }

    def attach(self, channels: Channels, upstreams: Mapping[str, Upstream]) -> None:
        """Scale-out: exchanges are named after this process, and a retry of one parked in another
        process is forwarded there (the holder answers it as if it had come to it)."""
        self.channels, self._upstreams = channels, upstreams
        self._relay.attach(channels, functools.partial(self._serve, channels))

    def forget(self, upstream_id: str) -> None:
        """The upstream's lists changed: what was read for capability profiles is read again."""
        self._generation[upstream_id] = self._generation.get(upstream_id, 0) + 1
        for key in [k for k in self._lists if k[0] == upstream_id]:
            del self._lists[key]

    async def lists(self, upstream: Upstream, capabilities: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        """The upstream's lists for a 2026-07-28 client that declared these capabilities, read on a
        pooled link offering them (once per profile, until the upstream says list_changed)."""
        pool_key = self._pool_key(upstream, capabilities)
        cached = self._lists.get(pool_key)
        if cached is not None:
            return cached
        generation = self._generation.get(upstream.id, 0)
        link, relay = await self._checkout(upstream, pool_key, capabilities)
        try:
            lists, _ = await read_lists(link, int(upstream.config.max_pages))
        finally:
            self._give_back(pool_key, link, relay, reuse=True)
        if self._generation.get(upstream.id, 0) == generation:
            self._lists[pool_key] = lists
        return lists

    async def request(
        self, upstream: Upstream, method: str, params: dict[str, Any], capabilities: dict[str, Any]
    ) -> dict[str, Any]:
        """One request that asks the client nothing (a list) on a pooled link offering these
        capabilities, so its answer is what such a client sees."""
        pool_key = self._pool_key(upstream, capabilities)
        link, relay = await self._checkout(upstream, pool_key, capabilities)
        try:
            return await link.request(method, params)
        finally:
            self._give_back(pool_key, link, relay, reuse=True)

    @staticmethod
    def _pool_key(upstream: Upstream, capabilities: dict[str, Any]) -> tuple[str, str]:
        return (upstream.id, orjson.dumps(capabilities, option=orjson.OPT_SORT_KEYS).decode())

    def full(self, upstream: Upstream) -> bool:
        """Whether the upstream has `max_connections` links for such calls already (each link to a
        stdio upstream is a process): further calls then go through the catalog connection, which
        offers the upstream no client capabilities."""
        busy = self._out[upstream.id]  # reserved before they are opened, so concurrent calls count
        busy += sum(len(links) for key, links in self._idle.items() if key[0] == upstream.id)
        return busy >= upstream.config.max_connections

    async def call(
        self, upstream: Upstream, method: str, params: dict[str, Any], ctx: CallContext, capabilities: dict[str, Any]
    ) -> dict[str, Any]:
        if ctx.exchange is not None:
            holder = holder_of(ctx.exchange)
            channels = self.channels
            if channels is not None and holder is not None and holder != channels.proc:
                return await self._forward(channels, holder, upstream, method, params, ctx)
            exchange = self._resume(ctx)
        else:
            exchange = await self._start(upstream, method, params, ctx, capabilities)
        return await self._next(exchange)

    def _resume(self, ctx: CallContext) -> _Exchange:
        """The parked exchange a retry continues, its answers handed to the upstream. Everything is
        checked first: a refused retry leaves the exchange parked as it was."""
        exchange_id, _, round_ = (ctx.exchange or "").partition(":")
        exchange = self._parked.get(exchange_id)
        if exchange is None:
            raise JsonRpcError(
                INVALID_PARAMS,
                "Invalid requestState: the call it continues is no longer held here (it ended, it waited"
                f" longer than {self.wait_s:g} s, or another gateway process holds it); send the request again"
                " without it",
            )
        if exchange.ctx is not None:  # the same state sent twice: one continues the call
            raise JsonRpcError(INVALID_PARAMS, "Invalid requestState: another request is continuing that call")
        if round_ != str(exchange.round):
            raise JsonRpcError(
                INVALID_PARAMS, "Invalid requestState: an earlier round's; send the latest round's requestState"
            )
        responses = ctx.input_responses or {}
        # The questions this client was sent (a question asked since is sent in the next round).
        sent = [key for key in exchange.waiting if key not in exchange.asked]
        missing = [key for key in sent if key not in responses]
        if missing:
            raise JsonRpcError(INVALID_PARAMS, f"inputResponses lacks the answer to {', '.join(sorted(missing))}")
        outcomes = {key: _answer_outcome(key, responses[key]) for key in sent}
        if exchange.expiry is not None:
            exchange.expiry.cancel()
            exchange.expiry = None
        for key, outcome in outcomes.items():
            future = exchange.waiting[key]
            if future.done():
                continue
            if isinstance(outcome, JsonRpcError):  # a refusal, as an error
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
        exchange.ctx = ctx
        return exchange

    async def _start(
        self, upstream: Upstream, method: str, params: dict[str, Any], ctx: CallContext, capabilities: dict[str, Any]
    ) -> _Exchange:
        client = ctx.client or ""
        cap = self.max_per_client
        if cap and self._starting[client] + sum(1 for e in self._parked.values() if e.client == ctx.client) >= cap:
            self.refused += 1
            raise JsonRpcError(
                LIMIT_EXCEEDED,
                f"Too many calls of this client waiting for its input (limit {cap}); answer or drop one",
            )
        pool_key = self._pool_key(upstream, capabilities)
        self._starting[client] += 1  # counted before the await: concurrent first calls see it
        try:
            link, relay = await self._checkout(upstream, pool_key, capabilities)
        finally:
            self._starting[client] -= 1
            if self._starting[client] <= 0:
                del self._starting[client]
        name = secrets.token_urlsafe(16)
        if self.channels is not None:  # a retry reaching another process is forwarded here
            name = f"{name}@{self.channels.proc}"
        exchange = _Exchange(name, upstream, link, pool_key)
        exchange.ctx = ctx
        relay.exchange = exchange

        async def progress(progress: float, total: float | None, message: str | None) -> None:
            if exchange.ctx is not None:
                await exchange.ctx.progress(progress, total, message)

        exchange.client = ctx.client
        exchange.task = asyncio.ensure_future(link.request(method, params, progress))
        exchange.task.add_done_callback(lambda done: self._finished(exchange, done))
        self._parked[exchange.id] = exchange
        return exchange

    async def _next(self, exchange: _Exchange) -> dict[str, Any]:
        """The call's result, or (InputRequired) the questions the upstream asked meanwhile."""
        task = exchange.task
        assert task is not None
        try:
            while not task.done() and not exchange.asked:
                exchange.news.clear()
                news = asyncio.ensure_future(exchange.news.wait())
                try:
                    await asyncio.wait({task, news}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    news.cancel()
        except asyncio.CancelledError:  # the client gave the call up
            self._end(exchange, reuse=False)
            raise
        if task.done():
            self._end(exchange, reuse=True)
            return task.result()  # its exception (an upstream error, a lost link) propagates
        asked, exchange.asked = exchange.asked, {}  # (the upstream was offered only what the client declared)
        exchange.round += 1
        self._park(exchange)
        raise InputRequired(asked, f"{exchange.id}:{exchange.round}")

    def _park(self, exchange: _Exchange) -> None:
        exchange.ctx = None
        ended = exchange.task is not None and exchange.task.done()
        wait = min(DONE_KEPT_S, self.wait_s) if ended else self.wait_s
        exchange.expiry = asyncio.get_running_loop().call_later(wait, self._expire, exchange)

    def _expire(self, exchange: _Exchange) -> None:
        log.info("upstream %s: a call waiting for a 2026-07-28 client's input expired", exchange.upstream.id)
        self._end(exchange, reuse=False)

    def _end(self, exchange: _Exchange, reuse: bool) -> None:
        self._parked.pop(exchange.id, None)
        if exchange.expiry is not None:
            exchange.expiry.cancel()
        if exchange.task is not None and not exchange.task.done():
            exchange.task.cancel()
            reuse = False
        self._release(exchange, reuse)

    def _finished(self, exchange: _Exchange, task: asyncio.Task[dict[str, Any]]) -> None:
        """The upstream call ended (answered, failed, timed out): its link is free at once; a parked
        exchange then waits only DONE_KEPT_S more for the retry that collects the outcome."""
        self._release(exchange, reuse=not task.cancelled())
        if exchange.expiry is not None and exchange.id in self._parked:
            exchange.expiry.cancel()
            wait = min(DONE_KEPT_S, self.wait_s)
            exchange.expiry = asyncio.get_running_loop().call_later(wait, self._expire, exchange)

    def _release(self, exchange: _Exchange, reuse: bool) -> None:
        """The exchange's link goes back to the pool (or is closed): once its call has ended, even
        while the exchange still waits for the client's retry to hand it the outcome."""
        if exchange.released:
            return
        exchange.released = True
        relay = exchange.link.handler
        if isinstance(relay, _LinkRelay) and relay.exchange is exchange:
            relay.exchange = None
        if isinstance(relay, _LinkRelay):
            self._give_back(exchange.pool_key, exchange.link, relay, reuse)
        else:
            self._returned(exchange.pool_key[0])
            self._close_later(exchange.link)

    def _returned(self, upstream_id: str) -> None:
        self._out[upstream_id] -= 1
        if self._out[upstream_id] <= 0:
            del self._out[upstream_id]

    def _give_back(self, pool_key: tuple[str, str], link: UpstreamLink, relay: _LinkRelay, reuse: bool) -> None:
        self._returned(pool_key[0])
        idle = self._idle.get(pool_key, [])
        if reuse and link.alive and len(idle) < POOL_IDLE:
            idle.append((link, relay, time.monotonic()))
            self._idle[pool_key] = idle
            asyncio.get_running_loop().call_later(POOL_IDLE_S + 1, self._sweep, pool_key)
        else:
            self._close_later(link)

    async def _checkout(
        self, upstream: Upstream, pool_key: tuple[str, str], capabilities: dict[str, Any]
    ) -> tuple[UpstreamLink, _LinkRelay]:
        """A link from the pool, or a new one; counted as checked out (in `_out`) from before its
        opening is awaited until it is given back."""
        idle = self._idle.get(pool_key, [])
        now = time.monotonic()
        while idle:
            link, relay, since = idle.pop()
            if not idle:
                del self._idle[pool_key]
            if link.alive and now - since < POOL_IDLE_S:
                self._out[upstream.id] += 1
                return link, relay
            self._close_later(link)
        if not upstream.ready and upstream.config.transport == "stdio":
            raise UpstreamUnavailable(upstream.id, f"is unavailable: {upstream.error or upstream.state}")
        relay = _LinkRelay(upstream, self.forget)
        link = UpstreamLink(upstream.config, relay, capabilities, label="2026-07-28 input", auth=upstream.tokens)
        self._out[upstream.id] += 1
        try:
            await link.open()
        except BaseException:
            self._returned(upstream.id)
            self._close_later(link)
            raise
        return link, relay

    def _sweep(self, pool_key: tuple[str, str]) -> None:
        """Close the pooled links idle for longer than POOL_IDLE_S."""
        now, kept = time.monotonic(), []
        for entry in self._idle.get(pool_key, []):
            if entry[0].alive and now - entry[2] < POOL_IDLE_S:
                kept.append(entry)
            else:
                self._close_later(entry[0])
        if kept:
            self._idle[pool_key] = kept
        else:
            self._idle.pop(pool_key, None)

    def _close_later(self, link: UpstreamLink) -> None:
        task = asyncio.ensure_future(link.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    # -- scale-out: a retry that reaches another process than the one holding its call -------
    async def _forward(
        self, channels: Channels, holder: str, upstream: Upstream, method: str, params: dict[str, Any], ctx: CallContext
    ) -> dict[str, Any]:
        """Send the retry to the process holding its exchange and wait for what it answers
        (process_relay.py): the call's result, the next round's InputRequired, or an error;
        notifications the call emits meanwhile (progress, logs) come back as they are made."""
        fields = {
            "upstream": upstream.id,
            "method": method,
            "params": params,
            "exchange": ctx.exchange,
            "responses": ctx.input_responses or {},
            "progress_token": ctx.progress_token,
            "log_level": ctx.log_level,
            "client": ctx.client,
        }
        timeout = upstream.config.call_timeout_s
        if holder not in await channels.alive({holder}):
            raise self._holder_lost(upstream, holder, method)
        self.forwarded += 1

        async def emit(note: dict[str, Any]) -> None:
            if isinstance(message := note.get("message"), dict):
                with contextlib.suppress(Exception):
                    await ctx.emit(message)

        try:
            answer = await self._relay.ask(channels, holder, fields, emit, timeout)
        except ProcessStopped:
            raise self._holder_lost(upstream, holder, method) from None
        except NoAnswer:
            raise JsonRpcError(
                INTERNAL_ERROR,
                f"Upstream {upstream.id!r} did not answer {method} within {timeout:g} s"
                f" (through gateway process {holder}, which holds the call)",
                {"upstream": upstream.id},
            ) from None
        error = answer.get("error")
        if isinstance(error, dict):
            raise JsonRpcError(int(error["code"]), str(error["message"]), error.get("data"))
        needed = answer.get("input_required")
        if isinstance(needed, dict):
            raise InputRequired(dict(needed["requests"]), str(needed["exchange"]))
        result: dict[str, Any] = answer.get("result") or {}
        return result

    @staticmethod
    def _holder_lost(upstream: Upstream, holder: str, method: str) -> JsonRpcError:
        return JsonRpcError(
            INTERNAL_ERROR,
            f"The {method} this requestState continues was held by gateway process {holder}, which stopped:"
            f" the call to upstream {upstream.id!r} is lost; send the request again without requestState",
            {"upstream": upstream.id, "process": holder},
        )

    async def _serve(self, channels: Channels, message: dict[str, Any], note: Note) -> dict[str, Any]:
        """A retry another process received for an exchange parked here: continued here as if it
        had come here; what it comes to is the answer sent back."""
        upstream_id, method = message["upstream"], message["method"]
        self.served += 1

        async def emit(sent: dict[str, Any]) -> bool:
            await note({"message": sent})  # in order
            return True

        responses = message.get("responses")
        level = message.get("log_level")
        ctx = CallContext(
            request_id=None,
            revision=STATELESS_REVISION,
            emit=emit,
            progress_token=message.get("progress_token"),
            log_level=level if isinstance(level, str) else None,
            client=message.get("client"),
            input_responses=responses if isinstance(responses, dict) else {},
            exchange=str(message.get("exchange")),
        )
        upstream = self._upstreams.get(str(upstream_id))
        if upstream is None:
            raise JsonRpcError(
                INTERNAL_ERROR, f"Upstream {upstream_id!r} is not configured in gateway process {channels.proc}"
            )
        params = message.get("params")
        try:
            result = await self.call(upstream, str(method), params if isinstance(params, dict) else {}, ctx, {})
        except InputRequired as needed:
            return {"input_required": {"requests": needed.requests, "exchange": needed.exchange}}
        return {"result": result}

    async def stop(self) -> None:
        self._relay.cancel_serving()
        for exchange in list(self._parked.values()):
            self._end(exchange, reuse=False)
        for links in self._idle.values():
            for link, _, _ in links:
                self._close_later(link)
        self._idle.clear()
        await asyncio.gather(*self._closing, self._relay.drain(), return_exceptions=True)
