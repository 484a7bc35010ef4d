"""Sessions shared by several gateway processes through one Redis (MCPGW_REDIS_URL).

Any process serves any request of any Streamable HTTP session (docs/scale-out.md):

- the session *record* (revision, client info and capabilities, principal, log level)
  is a Redis hash `mcpgw:s:<id>` whose TTL is the idle timeout; every use refreshes it
  with one `PEXPIRE`, whose answer (0: gone) also proves that the session still exists,
  so DELETE or expiry on one process is a 404 on every process at once;
- each process keeps its own live `Session` for it (running requests, outgoing requests,
  streams), materialised from the record on first use and dropped when the record is
  gone or an `ended` message arrives on the `mcpgw:ended` channel;
- a running request's id is claimed with `mcpgw:r2:<session>:<id>` (its value: the
  owning process and the claim's number) for as long as it runs: duplicates are refused across processes; a
  claim whose owner has stopped heartbeating is taken over;
- `notifications/cancelled` and the client's answers to server-to-client requests are
  published to the channel `mcpgw:p:<process>` of the process they are for;
- each process heartbeats `mcpgw:proc:<id>` (TTL `PROC_TTL_MS`), refreshed every
  `HEARTBEAT_S`: a process whose key is gone is dead.

Sessions of the message transports (legacy SSE, WebSocket, stdio) belong to their
connection and stay in this process's memory, as they are without Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import hiredis
import orjson
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..server.context import LOG_LEVELS
from .batch_link import BatchLink, unsupported
from .principal import Principal
from .registry import MemorySessions, StateUnavailable
from .session import Session

log = logging.getLogger("mcpgw.state")

SHARED_TRANSPORT = "streamable-http"  # the one transport whose sessions outlive a connection
PREFIX = "mcpgw:"
ENDED_CHANNEL = PREFIX + "ended"
CHANGED_CHANNEL = PREFIX + "changed"  # a session's log level changed: {"session", "level", "set"}
CATALOG_CHANNEL = PREFIX + "catalog"  # an upstream said list_changed: {"process", "upstream", "notification"}
HEARTBEAT_S = 1.0
STOP_FLUSH_S = 5.0  # on a graceful stop, how long pending writes to Redis may take
PROC_TTL_MS = 3000  # a process that has not heartbeaten for this long is dead
MAKE_ROOM_EVERY_S = 1.0  # a new session at a cap runs idle expiry at most this often (make_room)
# Round trips to Redis never wait longer than this: an unreachable Redis is an error, not a hang.
SOCKET_TIMEOUT_S = 2.0
CONNECT_TIMEOUT_S = 1.0

# How long a session confirmed alive in Redis is served from this process's copy without asking
# again. Its end reaches the copy at once anyway (the `ended` message); this bounds what a missed
# message could cost, and how often a busy session's TTL is refreshed.
LIVENESS_S = 1.0

# How long a process waits for another's answer to "is this claim of yours still running?" (a
# claim that found the id held by a live process, docs/scale-out.md, request ids); no answer in
# time: the id is refused as in use (never run twice), and so after CLAIM_ASKS answers "answered"
# each followed by a takeover that found yet another holder.
CLAIM_ASK_S = SOCKET_TIMEOUT_S
CLAIM_ASKS = 3

# Everything the requests of one event-loop turn need, in one round trip. KEYS: one per
# operation; ARGV: this process, claim TTL, record TTL, heartbeat key prefix, then one op per key.
# A claim's value is `<process>:<n>`, n unique in the process, so a release or a takeover acts
# on that one claim and never on a later claim of the same id:
#   c<n>         claim a request id: free, ours (a stale claim: this process checked its own
#                running ids first), or held by a process that no longer heartbeats -> 1; held
#                by a live process -> the value held (its owner is asked whether it still runs)
#   c<n> <held>  the same, `held` counting as free (its owner said it was answered) -> 1 or the
#                value held now
#   r<n>         release the claim <process>:<n> if it is still there -> 0
#   t            refresh a session record's TTL -> 1, or 0 if it is gone
# HSET on a session record only while it exists: a write racing a DELETE or expiry must not
# leave a partial record behind (with no TTL). KEYS: record. ARGV: field, value, ... Returns
# the fields added, or -1 when the record is gone.
HSET_LIVE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
return redis.call('HSET', KEYS[1], unpack(ARGV))
"""
# A client session's Streamable HTTP upstream sessions, in its record: `uplink:<upstream>` (the
# upstream's Mcp-Session-Id), `upinit:<upstream>` (its initialize result, JSON), `upowner:<upstream>`
# (the process holding its GET stream). KEYS: record. ARGV: upstream id, heartbeat key prefix.
# Returns {id, init, owner, owner alive 1/0}, or nil.
UPSTREAM_FIND = """
local v = redis.call('HMGET', KEYS[1], 'uplink:' .. ARGV[1], 'upinit:' .. ARGV[1], 'upowner:' .. ARGV[1])
if not v[1] then return false end
local owner = v[3] or ''
local alive = 0
if owner ~= '' and redis.call('EXISTS', ARGV[2] .. owner) == 1 then alive = 1 end
return {v[1], v[2] or '{}', owner, alive}
"""
# Record a new upstream session (this process holds its GET stream) if the one recorded is still
# `replacing` ('' for none): two processes that opened one at once cannot both keep theirs.
# KEYS: record. ARGV: upstream id, replacing, id, init, this process. Returns 1, 0 (lost), -1 (no record).
UPSTREAM_RECORD = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local current = redis.call('HGET', KEYS[1], 'uplink:' .. ARGV[1]) or ''
if current ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'uplink:' .. ARGV[1], ARGV[3], 'upinit:' .. ARGV[1], ARGV[4],
  'upowner:' .. ARGV[1], ARGV[5])
return 1
"""
# Take over the GET stream of a recorded upstream session from a dead process, if no other process
# did first. KEYS: record. ARGV: upstream id, the dead owner ('' for none), this process. Returns 1/0.
UPSTREAM_TAKE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local owner = redis.call('HGET', KEYS[1], 'upowner:' .. ARGV[1]) or ''
if owner ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'upowner:' .. ARGV[1], ARGV[3])
return 1
"""
BATCH = """
local out = {}
for i, key in ipairs(KEYS) do
  local op = ARGV[4 + i]
  local kind = string.sub(op, 1, 1)
  if kind == 'c' then
    local n, free = string.match(op, '^c(%d+) ?(.*)$')
    local mine = ARGV[1] .. ':' .. n
    if redis.call('SET', key, mine, 'NX', 'PX', ARGV[2]) then
      out[i] = 1
    else
      local held = redis.call('GET', key)
      local owner = held and string.match(held, '^[^:]*') or ''
      if held and held ~= free and owner ~= ARGV[1] and redis.call('EXISTS', ARGV[4] .. owner) == 1 then
        out[i] = held
      else
        redis.call('SET', key, mine, 'PX', ARGV[2])
        out[i] = 1
      end
    end
  elseif kind == 'r' then
    if redis.call('GET', key) == ARGV[1] .. ':' .. string.sub(op, 2) then redis.call('DEL', key) end
    out[i] = 0
  else
    out[i] = redis.call('PEXPIRE', key, ARGV[3])
  end
end
return out
"""


def redact(url: str) -> str:
    """The URL as logs and /health show it: scheme, user, host, port and database only. A password
    becomes `***`, and the query (redis-py also takes `?password=...`) is not shown at all."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    if parts.password is not None:
        host = (f"{parts.username}:***@" if parts.username else ":***@") + host
    elif parts.username:
        host = f"{parts.username}@{host}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def record_key(session_id: str) -> str:
    return f"{PREFIX}s:{session_id}"


# Versioned: before the claim's value became `<process>:<n>` (commit 0eac599), a claim was
# `mcpgw:r:<session>:<id>` holding `<process>`, and a process of that format would take a new
# value for a dead process's name. Neither format reads the other's keys (docs/scale-out.md,
# "Upgrading").
CLAIM_PREFIX = PREFIX + "r2:"


def claim_key(session_id: str, id_: Any) -> str:
    # orjson of the id: 1 and "1" are different requests (an int's text is orjson's, made directly)
    if type(id_) is int:
        return f"{CLAIM_PREFIX}{session_id}:{id_}"
    return f"{CLAIM_PREFIX}{session_id}:{orjson.dumps(id_).decode()}"


def proc_key(proc: str) -> str:
    return f"{PREFIX}proc:{proc}"


def proc_channel(proc: str) -> str:
    return f"{PREFIX}p:{proc}"


def owner_of_outgoing(id_: Any) -> str | None:
    """The process that sent a server-to-client request, from its id `mcpgw-<process>-<n>`."""
    if isinstance(id_, str) and id_.startswith("mcpgw-"):
        parts = id_.split("-")
        if len(parts) == 3:
            return parts[1]
    return None


def _principal_data(principal: Principal | None) -> bytes:
    if principal is None:
        return b"null"
    return orjson.dumps(
        {
            "kind": principal.kind,
            "subject": principal.subject,
            "issuer": principal.issuer,
            "scopes": sorted(principal.scopes),
            "claims": dict(principal.claims),
        }
    )


def _principal_of(data: bytes) -> Principal | None:
    value = orjson.loads(data)
    if not isinstance(value, dict):
        return None
    return Principal(
        value["kind"], value["subject"], value["issuer"], frozenset(value["scopes"]), dict(value["claims"])
    )


LISTEN_PING_S = 15  # an idle pub/sub or blocking-read connection is pinged this often


class RedisSessions(MemorySessions):
    """Implements `state.registry.SessionRegistry`: Streamable HTTP sessions in Redis, the live
    part of each in this process; other transports' sessions as MemorySessions keeps them."""

    def __init__(self, url: str, max_sessions: int, idle_timeout_s: float) -> None:
        super().__init__(max_sessions, idle_timeout_s)
        self.url = url
        self.proc = secrets.token_hex(6)  # this process, for claims, channels and heartbeats
        self.ttl_ms = max(int(idle_timeout_s * 1000), 1)
        retry = Retry(NoBackoff(), 1)  # one retry: a connection that died with a Redis restart
        self.redis = Redis.from_url(
            url, socket_timeout=SOCKET_TIMEOUT_S, socket_connect_timeout=CONNECT_TIMEOUT_S, retry=retry
        )
        # Pub/sub and blocking reads wait longer than any round trip: their own connections, pinged
        # when idle (health_check_interval) so a connection a NAT or proxy dropped is noticed and
        # replaced instead of leaving this process deaf to the others.
        self.listening = Redis.from_url(
            url, socket_connect_timeout=CONNECT_TIMEOUT_S, socket_timeout=None, health_check_interval=LISTEN_PING_S
        )
        # The per-turn BATCH call (every claimed request's claim and release) is the hot path: it
        # has a connection of its own. Where the URL allows (TCP or a unix socket, with AUTH and
        # SELECT), a small client of our own (state/batch_link.py: a Protocol feeding hiredis's
        # reader, no task per call); otherwise (rediss://, other options) redis-py's connection,
        # driven directly (docs/scale-out.md, cost). Which one: /health (`batch`) and the start-up log.
        pool = ConnectionPool.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT_S)  # URL parsed as redis-py does
        self.batch_fallback = unsupported(pool.connection_class, pool.connection_kwargs)
        self._batch_link: BatchLink | None = None
        self._batch_conn: Any = None
        if self.batch_fallback is None:
            self._batch_link = BatchLink(pool.connection_kwargs, CONNECT_TIMEOUT_S, SOCKET_TIMEOUT_S)
            log.info("state: per-turn BATCH calls on a direct connection to redis (hiredis)")
        else:
            # No socket timeout on it: redis-py would wrap each send in `asyncio.wait_for` (a task
            # per call on Python 3.11); `_call_batch` bounds each attempt with one `asyncio.timeout`.
            self._batch_conn = pool.connection_class(**{**pool.connection_kwargs, "socket_timeout": None})
            log.info("state: per-turn BATCH calls on redis-py's connection: %s", self.batch_fallback)
        self._batch_sha = self.redis.register_script(BATCH).sha
        self.available = False
        self.error = "not connected yet"
        self._hset_live = self.redis.register_script(HSET_LIVE)
        self._upstream_find = self.redis.register_script(UPSTREAM_FIND)
        self._upstream_record = self.redis.register_script(UPSTREAM_RECORD)
        self._upstream_take = self.redis.register_script(UPSTREAM_TAKE)
        self._ops: list[tuple[str, str, asyncio.Future[Any] | None]] = []  # (op, key, its answer)
        self._flushing: asyncio.Task[None] | None = None
        # The request ids this process has claimed (or is claiming) and not released: claim key ->
        # the claim's value. What another process asking "is it still running?" is answered from.
        self._held: dict[str, str] = {}
        self._claims = itertools.count(1)
        self._asks = itertools.count(1)
        self._asked: dict[int, asyncio.Future[bool]] = {}  # our questions to other processes, by number
        self._verified: dict[str, float] = {}  # session id -> when Redis last confirmed it alive
        self._confirming: asyncio.Task[None] | None = None  # idle copies kept here: are their records gone?
        self._room_made: float | None = None  # when a new session at a cap last ran idle expiry (make_room)
        self._background: set[asyncio.Task[Any]] = set()
        # Another process heard an upstream's list_changed: (upstream id, notification); set by gateway.py.
        self.on_catalog: Callable[[str, str], None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._handlers: dict[str, Any] = {  # channel message kinds other modules handle (events)
            "claim?": self._claim_asked,
            "claim!": self._claim_answered,
        }

    # -- availability ------------------------------------------------------------
    def _failed(self, exc: BaseException) -> StateUnavailable:
        if self.available:
            log.error("state: redis at %s unavailable: %s", redact(self.url), exc)
        self.available = False
        self.error = str(exc) or type(exc).__name__
        return StateUnavailable("redis unreachable")

    def _ok(self) -> None:
        if not self.available:
            log.info("state: redis at %s available", redact(self.url))
        self.available = True
        self.error = ""

    def health(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "backend": "redis",
            "url": redact(self.url),
            "process": self.proc,
            "available": self.available,
            "local_sessions": len(self._sessions),
            # the per-turn BATCH call's connection: our own client, or redis-py's and why
            "batch": "direct" if self.batch_fallback is None else f"redis-py ({self.batch_fallback})",
        }
        if self.error:
            found["error"] = self.error
        return found

    # -- sessions ----------------------------------------------------------------
    def _shared(self, session: Session) -> None:
        session.shared = True
        session.outgoing_prefix = f"mcpgw-{self.proc}-"

    async def persist(self, session: Session) -> None:
        if session.transport != SHARED_TRANSPORT:
            return
        self._shared(session)
        key = record_key(session.id)
        record: Any = {
            "revision": session.revision,
            "transport": session.transport,
            "server": orjson.dumps(session.server),
            "client_info": orjson.dumps(session.client_info),
            "capabilities": orjson.dumps(session.client_capabilities),
            "principal": _principal_data(session.principal),
            "log_level": session.log_level,
            "log_level_set": "1" if session.log_level_set else "",
        }
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping=record)
                pipe.pexpire(key, self.ttl_ms)
                await pipe.execute()
        except RedisError as exc:
            raise self._failed(exc) from None
        self._ok()

    async def hset_live(self, pipe: Any, session_id: str, fields: dict[str, str]) -> None:
        """Queue on `pipe` an HSET of the session's record that does nothing once it is gone."""
        args = [part for item in fields.items() for part in item]
        await self._hset_live(keys=[record_key(session_id)], args=args, client=pipe)

    async def store(self, session: Session) -> None:
        """Write back what a request changed in the record (the log level), and tell every process."""
        if not session.shared:
            return
        level_set = "1" if session.log_level_set else ""
        change = {"session": session.id, "level": session.log_level, "set": bool(level_set)}
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                await self.hset_live(pipe, session.id, {"log_level": session.log_level, "log_level_set": level_set})
                pipe.publish(CHANGED_CHANNEL, orjson.dumps(change))
                await pipe.execute()
        except RedisError as exc:
            raise self._failed(exc) from None

    async def lookup(self, session_id: str) -> Session | None:
        session = self._sessions.get(session_id)
        if session is not None and not session.shared:
            return session  # a connection's session (not in Redis)
        now = time.monotonic()
        if session is not None:
            if self.available and now - self._verified.get(session_id, 0.0) < LIVENESS_S:
                return session  # confirmed a moment ago; an `ended` message would have dropped it
            if not await self._op("t", record_key(session_id)):
                self.delete(session_id, "ended")  # expired, or ended by another process
                return None
            self._verified[session_id] = now
            return session
        key = record_key(session_id)
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.pexpire(key, self.ttl_ms)
                pipe.hgetall(key)
                found = await pipe.execute()
        except RedisError as exc:
            raise self._failed(exc) from None
        self._ok()
        if not found[0]:
            return None
        session = self._materialise(session_id, found[1])
        if session is not None:
            self._verified[session_id] = now
        return session

    def delete(self, session_id: str, reason: str = "terminated") -> bool:
        self._verified.pop(session_id, None)
        return super().delete(session_id, reason)

    def make_room(self) -> int:
        """Idle expiry asked by a new session at a cap (max_sessions, max_sessions_per_client): at
        most once per MAKE_ROOM_EVERY_S, so a client repeating initialize at its cap cannot make
        every request pay a pass over every idle session and its keepers (docs/scale-out.md)."""
        now = time.monotonic()
        if self._room_made is not None and now - self._room_made < MAKE_ROOM_EVERY_S:
            return 0
        self._room_made = now
        return self.expire_idle(now)

    def expire_idle(self, now: float | None = None) -> int:
        """Idle expiry of this process's copies. A connection's session (not shared) ends here as in
        memory. A shared session idle *here* may be in use through another process (a load balancer
        keeping its client there), which keeps its record alive in Redis: its copy is forgotten
        (reason `idle`: nothing ends upstream, the copy comes back from the record on next use),
        unless this process holds something the others reach it through (`Session.keepers`: a stdio
        upstream's process, an upstream session's GET stream). Such a copy is kept, and ended
        (`expired`, its upstream sessions with it) only once Redis confirms the record is gone, with
        no refresh of its TTL (docs/scale-out.md, idle expiry)."""
        now = time.monotonic() if now is None else now
        idle = [s for s in self._sessions.values() if now - s.last_active >= self.idle_timeout_s and not s.busy()]
        kept: list[Session] = []
        ended = 0
        for session in idle:
            if session.shared and any(keeper() for keeper in session.keepers):
                kept.append(session)
            else:
                self.delete(session.id, "idle" if session.shared else "expired")
                ended += 1
        if ended:
            log.info("expired %d idle session(s) here", ended)
        if kept and self._confirming is None:
            self._confirming = asyncio.ensure_future(self._expire_confirmed(kept))
            self._confirming.add_done_callback(self._confirmed)
        return ended

    def _confirmed(self, task: asyncio.Task[None]) -> None:
        self._confirming = None
        if not task.cancelled() and task.exception() is not None:
            log.error("session expiry check failed: %s", task.exception())

    async def _expire_confirmed(self, kept: list[Session]) -> None:
        """End the kept idle copies whose record Redis no longer has (EXISTS: its TTL untouched)."""
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for session in kept:
                    pipe.exists(record_key(session.id))
                found = await pipe.execute()
        except RedisError as exc:
            self._failed(exc)
            return
        gone = [session.id for session, exists in zip(kept, found, strict=True) if not exists]
        for session_id in gone:
            self.delete(session_id, "expired")
        if gone:
            log.info("expired %d idle session(s) everywhere", len(gone))

    def _materialise(self, session_id: str, record: dict[bytes, bytes]) -> Session | None:
        try:
            session = Session(
                session_id,
                record[b"revision"].decode(),
                record[b"transport"].decode(),
                server=orjson.loads(record[b"server"]),
                client=None,  # counted against its client address where it was created
                principal=_principal_of(record[b"principal"]),
                log_level=record[b"log_level"].decode(),
                log_level_set=bool(record[b"log_level_set"]),
            )
            session.client_info = orjson.loads(record[b"client_info"])
            session.client_capabilities = orjson.loads(record[b"capabilities"])
        except (KeyError, ValueError, TypeError):
            log.warning("session %s: unreadable record in redis, treated as unknown", session_id[:8])
            return None
        session.ready = session.initialized = True
        self._shared(session)
        # Another process may have materialised it meanwhile: keep the first.
        return self._sessions.setdefault(session_id, session)

    async def terminate(self, session_id: str, reason: str = "terminated") -> bool:
        known = self.delete(session_id, reason)
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.delete(record_key(session_id))
                pipe.publish(ENDED_CHANNEL, session_id)
                deleted, _ = await pipe.execute()
        except RedisError as exc:
            raise self._failed(exc) from None
        return known or bool(deleted)

    # -- requests ----------------------------------------------------------------
    def claim(self, session: Session, id_: Any) -> asyncio.Future[Any]:
        """Claim the id across processes: the future ends truthy (granted) or falsy (in use).
        Cancelled while on its way (its request was), a claim that Redis granted is released by
        `_flush`: it would otherwise block the id on every process."""
        key = claim_key(session.id, id_)
        n = str(next(self._claims))
        self._held[key] = f"{self.proc}:{n}"  # from now on, asked about it, this process says "running"
        return self._op_soon("c" + n, key)

    def release(self, session: Session, id_: Any) -> None:
        """The request is answered: its id is free from now on. Not awaited: the release goes
        with the turn's other operations, and a process that finds the claim still there before
        it lands asks this one, which answers "answered" (docs/scale-out.md, request ids)."""
        key = claim_key(session.id, id_)
        value = self._held.pop(key, None)
        if value is not None:
            self._queue("r" + value.rpartition(":")[2], key, None)

    def _let_go(self, key: str, op: str) -> None:
        """The claim `op` (c<n>...) was refused or given up: no longer ours to answer for."""
        n = op[1:].partition(" ")[0]
        if self._held.get(key) == f"{self.proc}:{n}":
            del self._held[key]

    async def _contend(self, op: str, key: str, held: str, claimed: asyncio.Future[Any]) -> None:
        """A claim found its id held by another live process: ask that process whether the claim
        `held` still runs there. Answered (its release on its way): take the id over if it is
        still that claim (the script's compare), else ask the new holder. Running, no answer
        within CLAIM_ASK_S, or CLAIM_ASKS holders in a row: in use (the request is refused)."""
        n = op[1:].partition(" ")[0]
        granted: Any = 0
        try:
            for _ in range(CLAIM_ASKS):
                if not await self._ask_owner(key, held):
                    break
                if claimed.done():
                    break
                again = await self._op_soon(f"c{n} {held}", key)
                if type(again) is not bytes:
                    granted = again
                    break
                held = again.decode()
        except StateUnavailable as exc:
            self._let_go(key, op)
            if not claimed.done():
                claimed.set_exception(exc)
            return
        if claimed.done():  # given up meanwhile: a grant is released (exactly this claim)
            if granted:
                self._queue("r" + n, key, None)
            self._let_go(key, op)
            return
        if not granted:
            self._let_go(key, op)
        claimed.set_result(granted)

    async def _ask_owner(self, key: str, held: str) -> bool:
        """Whether the process holding the claim `held` says its request is answered."""
        owner = held.partition(":")[0]
        number = next(self._asks)
        answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._asked[number] = answer
        question = {"kind": "claim?", "key": key, "value": held, "from": self.proc, "n": number}
        try:
            await self.send_to(owner, question)
            async with asyncio.timeout(CLAIM_ASK_S):
                return await answer
        except TimeoutError:
            log.warning(
                "request id claim: process %s did not say within %g s whether %s still runs", owner, CLAIM_ASK_S, key
            )
            return False
        finally:
            self._asked.pop(number, None)

    def _claim_asked(self, envelope: dict[str, Any]) -> None:
        """Another process asks whether a claim of ours still runs (its id was sent to it again)."""
        try:
            running = self._held.get(str(envelope["key"])) == envelope["value"]
            reply = {"kind": "claim!", "n": envelope["n"], "answered": not running}
            data = orjson.dumps(reply)
            channel = proc_channel(str(envelope["from"]))
        except (KeyError, TypeError):
            return
        task = asyncio.ensure_future(self._publish(channel, data))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _claim_answered(self, envelope: dict[str, Any]) -> None:
        number = envelope.get("n")
        answer = self._asked.get(number) if isinstance(number, int) else None
        if answer is not None and not answer.done():
            answer.set_result(envelope.get("answered") is True)

    # -- one round trip per event-loop turn ---------------------------------------
    def _queue(self, op: str, key: str, future: asyncio.Future[Any] | None) -> None:
        self._ops.append((op, key, future))
        if self._flushing is None:
            self._flushing = asyncio.ensure_future(self._flush())

    def _op_soon(self, op: str, key: str) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.Future()  # on the running loop
        self._queue(op, key, future)
        return future

    async def _op(self, op: str, key: str) -> int:
        return int(await self._op_soon(op, key))

    async def _flush(self) -> None:
        """Send what the requests queued, as one script call; again while more was queued
        meanwhile (one call in flight at a time: operations reach Redis in the order queued)."""
        try:
            while self._ops:
                await asyncio.sleep(0)  # the rest of this turn's requests queue theirs too
                ops, self._ops = self._ops, []
                args: list[Any] = [self.proc, self.ttl_ms, self.ttl_ms, PREFIX + "proc:", *(op for op, _, _ in ops)]
                try:
                    results = await self._call_batch([key for _, key, _ in ops], args)
                except RedisError as exc:
                    error = self._failed(exc)
                    for op, key, future in ops:
                        if op[0] == "c" and " " not in op:
                            self._let_go(key, op)
                        if future is not None and not future.done():
                            future.set_exception(error)
                    continue
                self._ok()
                for (op, key, future), result in zip(ops, results, strict=True):
                    if future is None:
                        continue
                    if future.done():  # a claim given up on its way (its request was cancelled)
                        if op[0] == "c":
                            if result == 1:  # granted: released (this claim only, by its number)
                                self._ops.append(("r" + op[1:].partition(" ")[0], key, None))
                            self._let_go(key, op)
                    elif type(result) is bytes and " " not in op:  # held by a live process: ask it
                        self._contending(op, key, result.decode(), future)
                    else:
                        if result == 0 and op[0] == "c" and " " not in op:
                            self._let_go(key, op)
                        future.set_result(result)
        finally:
            self._flushing = None

    def _contending(self, op: str, key: str, held: str, claimed: asyncio.Future[Any]) -> None:
        task = asyncio.ensure_future(self._contend(op, key, held, claimed))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _call_batch(self, keys: list[str], args: list[Any]) -> list[Any]:
        """One BATCH call on its own connection: at most SOCKET_TIMEOUT_S per attempt (1 s more to
        connect), retried once at once on a broken connection (a Redis restart; every op is
        idempotent for this process), sent as the script itself when Redis lost it (restarted empty)."""
        link = self._batch_link
        if link is None:
            return await self._call_batch_redis_py(keys, args)
        command: tuple[Any, ...] = ("EVALSHA", self._batch_sha, len(keys), *keys, *args)
        for attempt in (1, 2):
            try:
                found = await link.call(command)
                if isinstance(found, hiredis.ReplyError) and str(found).startswith("NOSCRIPT"):
                    found = await link.call(("EVAL", BATCH, *command[2:]))
            except (RedisConnectionError, RedisTimeoutError):
                link.close()
                if attempt == 2:
                    raise
                continue
            if isinstance(found, hiredis.ReplyError):
                raise ResponseError(str(found))
            return list(found)
        raise AssertionError("unreachable")

    async def _call_batch_redis_py(self, keys: list[str], args: list[Any]) -> list[Any]:
        """`_call_batch` on redis-py's connection (a URL the direct connection does not speak)."""
        conn = self._batch_conn
        for attempt in (1, 2):
            try:
                async with asyncio.timeout(SOCKET_TIMEOUT_S):
                    # Packed by hiredis at once (redis-py's packer encodes each argument in Python).
                    command = ("EVALSHA", self._batch_sha, len(keys), *keys, *args)
                    try:
                        await conn.send_packed_command(hiredis.pack_command(command), check_health=False)
                        found = await conn.read_response()
                    except NoScriptError:
                        command = ("EVAL", BATCH, *command[2:])
                        await conn.send_packed_command(hiredis.pack_command(command), check_health=False)
                        found = await conn.read_response()
                return list(found)
            except (RedisConnectionError, RedisTimeoutError, TimeoutError, OSError) as exc:
                await conn.disconnect(nowait=True)
                if attempt == 2:
                    if isinstance(exc, RedisError):
                        raise
                    raise RedisTimeoutError(f"no answer from redis within {SOCKET_TIMEOUT_S:g} s") from None
        raise AssertionError("unreachable")

    async def forward(self, session: Session, message: dict[str, Any]) -> None:
        try:
            if "method" in message:  # notifications/cancelled: to where the request runs
                params = message.get("params")
                request_id = params.get("requestId") if isinstance(params, dict) else None
                raw = await self.redis.get(claim_key(session.id, request_id))
                owner = raw.decode().partition(":")[0] if isinstance(raw, bytes) else None
            else:  # the client's answer: to the process that asked
                owner = owner_of_outgoing(message.get("id"))
            if owner is not None and owner != self.proc:
                await self.redis.publish(proc_channel(owner), orjson.dumps({"session": session.id, "message": message}))
        except RedisError as exc:
            log.warning("session %s: could not forward a message: %s", session.id[:8], exc)
            self._failed(exc)

    async def link_opened(self, session: Session, upstream: str) -> None:
        """This process opened its own connection to `upstream` for a shared session. If another
        process had one, the upstream now holds a second session for this client, without what
        it kept in the first (subscriptions, its own state): the client is told, once per process
        that opens one (docs/scale-out.md, upstream connections)."""
        if not session.shared:
            return
        field = f"upstream:{upstream}"
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hget(record_key(session.id), field)
                await self.hset_live(pipe, session.id, {field: self.proc})
                before, _ = await pipe.execute()
        except RedisError as exc:
            self._failed(exc)
            return
        if before is None or before.decode() == self.proc:
            return
        log.info("session %s: upstream %s connected again from this process", session.id[:8], upstream)
        await session.notify(
            "notifications/message",
            {
                "level": "warning",
                "logger": "mcpgw",
                "data": (
                    f"upstream {upstream}: this gateway process opened a new upstream session for your session; "
                    "what the upstream kept in the one opened by another gateway process (subscriptions, "
                    "its own state) is not in this one"
                ),
            },
        )

    # -- a client session's Streamable HTTP upstream sessions (federation/hub.py re-attaches them) --
    async def upstream_session(self, session: Session, upstream: str) -> tuple[str, dict[str, Any], str, bool] | None:
        """The upstream session recorded for the client session: (its Mcp-Session-Id, the upstream's
        initialize result, the process holding its GET stream, whether that process is alive)."""
        try:
            found = await self._upstream_find(keys=[record_key(session.id)], args=[upstream, PREFIX + "proc:"])
        except RedisError as exc:
            raise self._failed(exc) from None
        if not found:
            return None
        try:
            init = orjson.loads(found[1])
        except ValueError:
            return None
        return found[0].decode(), init if isinstance(init, dict) else {}, found[2].decode(), bool(found[3])

    async def record_upstream_session(
        self, session: Session, upstream: str, upstream_session: str, init_result: dict[str, Any], replacing: str | None
    ) -> bool:
        """Record the upstream session this process opened (and whose GET stream it holds), unless
        another process recorded one first (False). A session whose record is gone records nothing."""
        args: list[str | bytes] = [upstream, replacing or "", upstream_session, orjson.dumps(init_result), self.proc]
        try:
            done = await self._upstream_record(keys=[record_key(session.id)], args=args)
        except RedisError as exc:
            raise self._failed(exc) from None
        return int(done) != 0

    async def take_upstream_get(self, session: Session, upstream: str, owner: str) -> bool:
        """Hold the recorded upstream session's GET stream from now on, its holder `owner` being dead."""
        try:
            taken = await self._upstream_take(keys=[record_key(session.id)], args=[upstream, owner, self.proc])
        except RedisError as exc:
            raise self._failed(exc) from None
        if taken:
            log.info("session %s: upstream %s: GET stream taken over from %s (gone)", session.id[:8], upstream, owner)
        return bool(taken)

    async def upstream_owner(self, session: Session, upstream: str) -> tuple[str, bool]:
        """The process holding the client session's connection to a stdio upstream ('' for none),
        and whether it still heartbeats (the `upowner:<upstream>` field, as for HTTP upstreams)."""
        try:
            raw = await self.redis.hget(record_key(session.id), f"upowner:{upstream}")
            owner = raw.decode() if isinstance(raw, bytes) else ""
            alive = bool(owner) and bool(await self.redis.exists(proc_key(owner)))
        except RedisError as exc:
            raise self._failed(exc) from None
        return owner, alive

    async def send_to(self, process: str, message: dict[str, Any]) -> None:
        """Publish `message` (with its `kind`, handled there by on_channel) to another process."""
        try:
            await self.redis.publish(proc_channel(process), orjson.dumps(message))
        except RedisError as exc:
            raise self._failed(exc) from None

    async def alive(self, processes: set[str]) -> set[str]:
        """Which of these gateway processes still heartbeat."""
        ordered = sorted(processes)
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for proc in ordered:
                    pipe.exists(proc_key(proc))
                found = await pipe.execute()
        except RedisError as exc:
            raise self._failed(exc) from None
        return {proc for proc, exists in zip(ordered, found, strict=True) if exists}

    def announce_catalog(self, upstream: str, notification: str) -> None:
        """An upstream told this process its list changed: every other process re-reads it too
        (their catalogs, and the sessions that listed through them, would otherwise not know)."""
        data = orjson.dumps({"process": self.proc, "upstream": upstream, "notification": notification})
        task = asyncio.ensure_future(self._publish(CATALOG_CHANNEL, data))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _publish(self, channel: str, data: bytes) -> None:
        try:
            await self.redis.publish(channel, data)
        except RedisError as exc:
            self._failed(exc)

    def _catalog(self, data: bytes) -> None:
        try:
            note = orjson.loads(data)
            if note["process"] != self.proc and self.on_catalog is not None:
                self.on_catalog(str(note["upstream"]), str(note["notification"]))
        except (ValueError, KeyError, TypeError):
            return

    def _changed(self, data: bytes) -> None:
        """Another process changed a session's log level: so does this process's copy."""
        try:
            change = orjson.loads(data)
            session = self._sessions.get(change["session"])
            if session is not None and change["level"] in LOG_LEVELS:
                session.log_level, session.log_level_set = change["level"], bool(change["set"])
        except (ValueError, KeyError, TypeError):
            return

    def _delivered(self, data: bytes) -> None:
        """A message forwarded to this process by another."""
        try:
            envelope = orjson.loads(data)
            handler = self._handlers.get(str(envelope.get("kind"))) if isinstance(envelope, dict) else None
            if handler is not None:  # another module's (on_channel)
                handler(envelope)
                return
            session = self._sessions.get(envelope["session"])
            message = envelope["message"]
        except (ValueError, KeyError, TypeError):
            return
        if session is None:
            return
        if "method" in message:
            params = message.get("params") or {}
            session.cancel(params.get("requestId"))
        else:
            session.resolve(message)

    # -- background: heartbeat, refresh, channels --------------------------------
    def start(self) -> None:
        if not self._tasks:
            self._tasks = [
                asyncio.ensure_future(self._heartbeat()),
                asyncio.ensure_future(self._listen()),
            ]

    def keep(self, task: asyncio.Task[Any]) -> None:
        """Background work a graceful stop waits for (bounded): stream write-through."""
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def stop(self) -> None:
        # Streams finished by the drain (their last events and end markers), answered requests'
        # id releases still on their way.
        pending = self._background | ({self._flushing} if self._flushing is not None else set())
        if pending:
            await asyncio.wait(pending, timeout=STOP_FLUSH_S)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        with contextlib.suppress(RedisError, OSError):
            await self.redis.delete(proc_key(self.proc))  # a clean stop: nobody waits for our heartbeat
        await self.redis.aclose()
        await self.listening.aclose()
        if self._batch_link is not None:
            self._batch_link.close()
        else:
            await self._batch_conn.disconnect()

    async def _heartbeat(self) -> None:
        refresh_every = min(max(self.ttl_ms / 4000, HEARTBEAT_S), 30.0)
        refreshed = time.monotonic()
        while True:
            try:
                await self.redis.set(proc_key(self.proc), b"1", px=PROC_TTL_MS)
                if time.monotonic() - refreshed >= refresh_every:
                    refreshed = time.monotonic()
                    await self._refresh_busy()
                self._ok()
            except RedisError as exc:
                self._failed(exc)
            except Exception:  # a bug here must not stop the heartbeat for good
                log.exception("state heartbeat failed")
            await asyncio.sleep(HEARTBEAT_S)

    async def _refresh_busy(self) -> None:
        """A session with a running request or an open stream here stays alive (as in memory);
        one whose record is gone (missed `ended` message, Redis restarted empty) ends here."""
        shared = [s for s in self._sessions.values() if s.shared and s.busy()]
        if not shared:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for session in shared:
                pipe.pexpire(record_key(session.id), self.ttl_ms)
            alive = await pipe.execute()
        for session, ok in zip(shared, alive, strict=True):
            if not ok:
                self.delete(session.id, "ended")

    def on_channel(self, kind: str, handler: Callable[[dict[str, Any]], None]) -> None:
        """Let another module (federation/hub.py) handle messages of `kind` on this process's channel."""
        self._handlers[kind] = handler

    async def _listen(self) -> None:
        mine = proc_channel(self.proc)
        while True:
            pubsub = self.listening.pubsub()
            try:
                await pubsub.subscribe(ENDED_CHANNEL, CHANGED_CHANNEL, CATALOG_CHANNEL, mine)
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is None:
                        continue
                    channel = message["channel"].decode()
                    if channel == ENDED_CHANNEL:
                        self.delete(message["data"].decode(), "terminated")
                    elif channel == CHANGED_CHANNEL:
                        self._changed(message["data"])
                    elif channel == CATALOG_CHANNEL:
                        self._catalog(message["data"])
                    else:
                        self._delivered(message["data"])
            except (RedisError, OSError) as exc:
                self._failed(exc)
                await asyncio.sleep(HEARTBEAT_S)
            except Exception:
                log.exception("state channel listener failed")
                await asyncio.sleep(HEARTBEAT_S)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
