"""The per-turn BATCH call's own connection to Redis (state/shared.py; docs/scale-out.md, "The
claim's cost").

Every claimed request's claim and release ride on one script call per event-loop turn, one call
in flight at a time. This is a small client for that one call: an asyncio `Protocol` that writes
the command packed by hiredis and feeds what Redis sends to a `hiredis.Reader`, resolving the
call's future from `data_received` itself. No StreamReader, no parser layers, no task per call:
the socket timeout is one timer per call. redis-py keeps every other round trip of the process.

It speaks what `MCPGW_REDIS_URL` gives over TCP and unix sockets: AUTH (a password, or a username
and a password), SELECT of the database, CLIENT SETNAME. For anything else (`rediss://`, i.e.
TLS; a username without a password; other connection options in the URL's query) `unsupported()`
names the reason, and `RedisSessions` drives redis-py's own connection instead, saying so in the
start-up log and in /health (`state.batch`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import hiredis
from redis.asyncio.connection import Connection, UnixDomainSocketConnection
from redis.exceptions import AuthenticationError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

# What redis-py's URL parsing gives that this connection honours (or that does not concern it:
# the protocol version of its replies, redis-py's own bookkeeping); any other option means redis-py.
SPOKEN = frozenset({"host", "port", "path", "db", "username", "password", "client_name", "protocol"})
IGNORED = frozenset(
    {
        "socket_connect_timeout",
        "socket_timeout",
        "himport_registry",
        "maint_notifications_pool_handler",
        "maint_notifications_config",
        "orig_host_address",
        "orig_socket_timeout",
        "orig_socket_connect_timeout",
    }
)


# The error reply of a Redis before 6.0 to AUTH with a username and a password (redis-py's parser
# maps exactly these to AuthenticationWrongNumberOfArgsError and retries with the password alone).
AUTH_TAKES_ONE_ARGUMENT = frozenset(
    {"ERR wrong number of arguments for 'auth' command", "ERR wrong number of arguments for 'AUTH' command"}
)


def unsupported(connection_class: type, kwargs: dict[str, Any]) -> str | None:
    """Why this connection cannot speak to the Redis that redis-py's parsed URL describes, or None."""
    if connection_class not in (Connection, UnixDomainSocketConnection):
        if "SSL" in connection_class.__name__:
            return "rediss:// (TLS) is not spoken by the direct connection"
        return f"{connection_class.__name__} is not spoken by the direct connection"
    if kwargs.get("username") and not kwargs.get("password"):
        return "a username without a password"
    others = sorted(k for k, v in kwargs.items() if k not in SPOKEN and k not in IGNORED and v is not None)
    if others:
        return "connection option(s) " + ", ".join(others)
    return None


class _Protocol(asyncio.Protocol):
    def __init__(self, link: BatchLink) -> None:
        self.link = link

    def data_received(self, data: bytes) -> None:
        self.link._received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.link._lost(self, exc)


class BatchLink:
    """One connection, one call in flight at a time (the caller's rule: `_flush` sends the next
    call once the previous one is answered). A failure (connection lost or refused, no answer
    within `timeout_s`, a protocol error) fails the call with redis-py's ConnectionError or
    TimeoutError and drops the connection; the next call connects afresh. An error reply (e.g.
    NOSCRIPT) is returned as a `hiredis.ReplyError`, for the caller to act on."""

    def __init__(self, kwargs: dict[str, Any], connect_timeout_s: float, timeout_s: float) -> None:
        self.path: str | None = kwargs.get("path")
        self.host: str = kwargs.get("host") or "localhost"
        self.port = int(kwargs.get("port") or 6379)
        self.handshake: list[tuple[Any, ...]] = []
        if kwargs.get("password"):
            user = kwargs.get("username")
            self.handshake.append(("AUTH", user, kwargs["password"]) if user else ("AUTH", kwargs["password"]))
        if int(kwargs.get("db") or 0):
            self.handshake.append(("SELECT", int(kwargs["db"])))
        if kwargs.get("client_name"):
            self.handshake.append(("CLIENT", "SETNAME", kwargs["client_name"]))
        self.connect_timeout_s = connect_timeout_s
        self.timeout_s = timeout_s
        self._protocol: _Protocol | None = None
        self._transport: asyncio.Transport | None = None
        self._reader = hiredis.Reader()
        self._waiting: asyncio.Future[Any] | None = None
        self._timer: asyncio.TimerHandle | None = None

    async def call(self, command: tuple[Any, ...]) -> Any:
        """Redis's reply to `command` (an error reply as a `hiredis.ReplyError`)."""
        if self._waiting is not None:  # a call given up (cancelled) whose reply is still due: out of step
            self.close()
        if self._transport is None:
            await self._connect()
        return await self._send(hiredis.pack_command(command))

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                if self.path is not None:
                    transport, protocol = await loop.create_unix_connection(lambda: _Protocol(self), self.path)
                else:
                    transport, protocol = await loop.create_connection(lambda: _Protocol(self), self.host, self.port)
        except TimeoutError:
            raise RedisTimeoutError(f"no connection to redis within {self.connect_timeout_s:g} s") from None
        except OSError as exc:
            raise RedisConnectionError(f"connecting to redis: {exc}") from None
        self._transport, self._protocol, self._reader = transport, protocol, hiredis.Reader()
        for command in self.handshake:
            reply = await self._send(hiredis.pack_command(command))
            if len(command) == 3 and command[0] == "AUTH" and str(reply) in AUTH_TAKES_ONE_ARGUMENT:
                # a username and a password, but a Redis before 6.0 (AUTH takes the password
                # alone): retried with the password only, as redis-py's connection does
                alone: tuple[Any, ...] = ("AUTH", command[2])
                reply = await self._send(hiredis.pack_command(alone))
            if isinstance(reply, hiredis.ReplyError):
                self.close()
                if command[0] == "AUTH" or str(reply).startswith(("WRONGPASS", "NOAUTH")):
                    raise AuthenticationError(str(reply))
                raise ResponseError(f"{command[0]}: {reply}")

    def _send(self, packed: bytes) -> asyncio.Future[Any]:
        transport = self._transport
        if transport is None or self._waiting is not None:
            raise RedisConnectionError("the batch connection to redis is closed or busy")
        loop = asyncio.get_running_loop()
        waiting = self._waiting = loop.create_future()
        self._timer = loop.call_later(self.timeout_s, self._timed_out)
        transport.write(packed)
        return waiting

    def _received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        while True:  # every reply the data completes: one is due at most
            try:
                reply = reader.gets()
            except hiredis.ProtocolError as exc:
                self._fail(RedisConnectionError(f"unreadable reply from redis: {exc}"))
                return
            if reply is False:
                return  # (the rest of a reply, if any, comes later)
            waiting = self._waiting
            if waiting is None:  # nothing was asked: a server that speaks out of turn is not trusted
                self._fail(RedisConnectionError("unexpected reply from redis"))
                return
            self._waiting = None
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if not waiting.done():
                waiting.set_result(reply)

    def _lost(self, protocol: _Protocol, exc: Exception | None) -> None:
        if protocol is self._protocol:  # (not an old connection's late notice)
            self._fail(RedisConnectionError(f"connection to redis lost: {exc}" if exc else "connection to redis lost"))

    def _timed_out(self) -> None:
        self._timer = None
        self._fail(RedisTimeoutError(f"no answer from redis within {self.timeout_s:g} s"))

    def _fail(self, exc: Exception) -> None:
        """Fail the call in flight (if any) and drop the connection."""
        waiting, self._waiting = self._waiting, None
        self.close()
        if waiting is not None and not waiting.done():
            waiting.set_exception(exc)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        transport, self._transport, self._protocol = self._transport, None, None
        if transport is not None:
            transport.abort()
        waiting, self._waiting = self._waiting, None
        if waiting is not None and not waiting.done():
            waiting.set_exception(RedisConnectionError("the batch connection to redis was closed"))
