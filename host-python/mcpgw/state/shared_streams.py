"""A shared session's streams: the event store for resumability in Redis (MCPGW_REDIS_URL).

Each stream is a Redis Stream `mcpgw:e:<session>:<stream>` whose entry ids are
`<sequence>-0`, so an event id `<stream>_<sequence>` names the same event on every
process. Retention is bounded per stream by count (MCPGW_EVENT_STORE_MAX_EVENTS) and
bytes (MCPGW_EVENT_STORE_MAX_STREAM_BYTES, counted in `<key>:b`), trimmed oldest first by
the one Lua script that appends, and in time by the key's TTL (MCPGW_EVENT_STORE_TTL_S
after the last event).

- The GET stream (`0`) has producers on every process (list_changed, upstream logs,
  server-to-client requests): its sequence is `seq0` in the session record, taken by the
  appending script. The process holding the client's GET connection reads the Redis
  Stream (blocking `XREAD`) into a local `EventStream` that the SSE writer serves.
- A POST's SSE response (`<process>-<n>`) has one producer, the process running its
  requests. Its reader on that process reads the local stream as without Redis; once the
  response is an SSE stream every event is also written through to Redis, in order, with
  an end marker (`<last>-1`) when it is complete, and its meta hash `mcpgw:m:...` names
  the owning process and the request ids it answers.
- A resume (`Last-Event-ID`) on a process that does not hold the stream reads it from
  Redis and follows it. If the owner stops heartbeating before the end marker, the
  resuming process takes the stream over (compare-and-set on the owner) and answers
  every request without a response with a JSON-RPC error naming the loss, then ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Sequence
from typing import Any

import orjson
from redis.exceptions import RedisError

from .budget import EventBudget
from .events import EventStream, parse_event_id
from .registry import StateUnavailable
from .shared import PREFIX, RedisSessions, proc_key, record_key
from .streams import GET_STREAM_ID, SessionStreams

log = logging.getLogger("mcpgw.state")

LOST = -32603  # JSON-RPC internal error: the request's process died with it
READ_BLOCK_MS = 1000  # a follower checks the owner's heartbeat this often while the stream is quiet

# Append one event; trim by count and bytes (one event always stays). KEYS: stream, bytes
# counter, session record, and for a POST stream its meta hash (its TTL follows the events').
# ARGV: data, sequence ('' = the GET stream: the next `seq0`, only if a GET stream was opened),
# max events, max bytes, ttl ms. Returns the sequence, or 0.
APPEND = """
local seq = ARGV[2]
if seq == '' then
  if redis.call('HEXISTS', KEYS[3], 'get') == 0 then return 0 end
  seq = redis.call('HINCRBY', KEYS[3], 'seq0', 1)
end
redis.call('XADD', KEYS[1], seq .. '-0', 'd', ARGV[1])
local bytes = redis.call('INCRBY', KEYS[2], #ARGV[1])
local maxlen, maxbytes = tonumber(ARGV[3]), tonumber(ARGV[4])
local len = redis.call('XLEN', KEYS[1])
while len > 1 and (len > maxlen or bytes > maxbytes) do
  local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1]
  redis.call('XDEL', KEYS[1], first[1])
  bytes = redis.call('DECRBY', KEYS[2], #first[2][2])
  len = len - 1
end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
if KEYS[4] then redis.call('PEXPIRE', KEYS[4], ARGV[5]) end
return tonumber(seq)
"""
# Take over a stream whose owner died: only if it is still that owner's. KEYS: meta. ARGV: dead, new.
TAKE_OVER = """
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] and redis.call('HGET', KEYS[1], 'done') ~= '1' then
  redis.call('HSET', KEYS[1], 'owner', ARGV[2])
  return 1
end
return 0
"""


def stream_key(session_id: str, stream_id: str) -> str:
    return f"{PREFIX}e:{session_id}:{stream_id}"


def meta_key(session_id: str, stream_id: str) -> str:
    return f"{PREFIX}m:{session_id}:{stream_id}"


class SharedEvents:
    """The Redis side of every shared session's streams in this process."""

    def __init__(self, sessions: RedisSessions, max_events: int, ttl_s: float, max_stream_bytes: int) -> None:
        self.sessions = sessions
        self.redis = sessions.redis
        self.listening = sessions.listening
        self.max_events = max_events
        self.ttl_ms = max(int(ttl_s * 1000), 1)
        self.max_stream_bytes = max_stream_bytes
        self._append = self.redis.register_script(APPEND)
        self._take_over = self.redis.register_script(TAKE_OVER)

    async def append(
        self, session_id: str, stream_id: str, data: bytes, seq: int | None, meta: str | None = None
    ) -> int:
        key = stream_key(session_id, stream_id)
        keys = [key, key + ":b", record_key(session_id)]
        if meta is not None:
            keys.append(meta)
        try:
            found = await self._append(
                keys=keys,
                args=[data, "" if seq is None else seq, self.max_events, self.max_stream_bytes, self.ttl_ms],
            )
        except RedisError as exc:
            raise self.sessions._failed(exc) from None
        return int(found)


class Mirror:
    """Writes one POST stream's events through to Redis, in order, then its end marker.

    The stream holds its mirror; the mirror holds the stream only while it writes (in its task's
    frame), so once the end marker is out nothing is left in a cycle for the collector."""

    def __init__(self, events: SharedEvents, session_id: str, stream: MirroredStream, requests: Sequence[Any]) -> None:
        self.events = events
        self.session_id = session_id
        self.queue: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue()
        self.requests = list(requests)
        self.task = asyncio.ensure_future(self._write(stream))
        events.sessions.keep(self.task)  # a graceful stop waits for it (the end marker must get out)

    async def _write(self, stream: MirroredStream) -> None:
        events, sid, stream_id = self.events, self.session_id, stream.id
        meta = meta_key(sid, stream_id)
        last = 0
        try:
            async with events.redis.pipeline(transaction=False) as pipe:
                pipe.hset(
                    meta,
                    mapping={"owner": events.sessions.proc, "requests": orjson.dumps(self.requests), "done": ""},
                )
                pipe.pexpire(meta, events.ttl_ms)
                await pipe.execute()
            while (item := await self.queue.get()) is not None:
                last = item[0]
                await events.append(sid, stream_id, item[1], item[0], meta)
            async with events.redis.pipeline(transaction=False) as pipe:
                key = stream_key(sid, stream_id)
                pipe.xadd(key, {"end": "1"}, id=f"{last}-1")
                pipe.pexpire(key, events.ttl_ms)
                pipe.hset(meta, "done", "1")
                pipe.pexpire(meta, events.ttl_ms)
                await pipe.execute()
        except (RedisError, StateUnavailable) as exc:
            # The local reader is unaffected; a resume elsewhere finds the stream incomplete.
            log.warning("stream %s: written through to redis only in part: %s", stream_id, exc)
            stream.mirror = None  # nothing reads the queue any more: stop filling it


class MirroredStream(EventStream):
    """A POST's SSE response: local as always, and written through to Redis once it is SSE."""

    mirror: Mirror | None = None

    def publish(self, message: dict[str, Any] | bytes) -> int | None:
        data = message if isinstance(message, bytes) else orjson.dumps(message)
        seq = super().publish(data)
        if seq is not None and self.mirror is not None:
            self.mirror.queue.put_nowait((seq, data))
        return seq

    def finish(self) -> None:
        if not self.done and self.mirror is not None:
            self.mirror.queue.put_nowait(None)
        super().finish()

    def start_mirror(self, mirror: Mirror, retained: list[tuple[int, bytes]]) -> None:
        self.mirror = mirror
        for item in retained:
            mirror.queue.put_nowait(item)
        if self.done:
            mirror.queue.put_nowait(None)


class SharedStreams(SessionStreams):
    """Implements `state.session.Attachment` for a shared session (see the module's text)."""

    def __init__(self, session_id: str, events: SharedEvents, max_events: int, ttl_s: float, budget: EventBudget):
        super().__init__(max_events, ttl_s, budget)
        self.session_id = session_id
        self.events = events
        self.proc = events.sessions.proc
        self._stream_ids = itertools.count(1)
        self._followers: dict[str, asyncio.Task[None]] = {}

    def new_stream(self) -> EventStream:
        return MirroredStream(
            f"{self.proc}-{next(self._stream_ids)}", self.max_events, self.ttl_s, self.budget, self.bytes
        )

    def register(self, stream: EventStream, requests: Sequence[Any] = ()) -> None:
        super().register(stream, requests)
        if isinstance(stream, MirroredStream) and stream.mirror is None:
            retained = stream.after(0) or []
            stream.start_mirror(Mirror(self.events, self.session_id, stream, requests), retained)

    async def send(self, message: dict[str, Any]) -> bool:
        """To the session's GET stream, wherever its reader is; False if the client never opened one."""
        if self.closed:
            return False
        try:
            return bool(await self.events.append(self.session_id, GET_STREAM_ID, orjson.dumps(message), None))
        except StateUnavailable:
            return False  # not deliverable now (logged once by the registry), as with no stream open

    # -- readers -----------------------------------------------------------------
    async def reader(self, last_event_id: str | None) -> tuple[EventStream, int]:
        """The stream a GET serves and the sequence it resumes after. LookupError: the
        Last-Event-ID is unknown or no longer retained."""
        if last_event_id is None:
            return await self._follow(GET_STREAM_ID, None)
        parsed = parse_event_id(last_event_id)
        if parsed is None:
            raise LookupError(last_event_id)
        stream_id, seq = parsed
        local = self.streams.get(stream_id)
        if isinstance(local, MirroredStream):
            # This process wrote it: its own retention (all three byte budgets) decides, as in memory.
            if local.after(seq) is None:
                raise LookupError(last_event_id)
            return local, seq
        return await self._follow(stream_id, seq)

    async def _follow(self, stream_id: str, after: int | None) -> tuple[EventStream, int]:
        redis, sid = self.events.redis, self.session_id
        key = stream_key(sid, stream_id)
        try:
            if stream_id == GET_STREAM_ID:
                async with redis.pipeline(transaction=False) as pipe:
                    await self.events.sessions.hset_live(pipe, sid, {"get": "1"})
                    pipe.hget(record_key(sid), "seq0")
                    if after is not None:
                        pipe.xrange(key, min=f"{after + 1}-0")
                    found = await pipe.execute()
                last = int(found[1] or 0)
                entries: Any = found[2] if after is not None else []
                meta: dict[bytes, bytes] = {}
            else:
                async with redis.pipeline(transaction=False) as pipe:
                    pipe.hgetall(meta_key(sid, stream_id))
                    pipe.xrange(key, min=f"{(after or 0) + 1}-0")
                    meta, entries = await pipe.execute()
                if not meta:
                    raise LookupError(stream_id)
                last = after or 0
        except RedisError as exc:
            raise self.events.sessions._failed(exc) from None
        if after is None:
            after = last
        elif after > last and stream_id == GET_STREAM_ID:
            raise LookupError(stream_id)
        data_entries = [(eid, fields) for eid, fields in entries if not eid.endswith(b"-1")]
        if data_entries and int(data_entries[0][0].split(b"-")[0]) != after + 1:
            raise LookupError(stream_id)  # the events after it were trimmed
        local_stream = EventStream(stream_id, self.max_events, self.ttl_s, self.budget, self.bytes)
        local_stream.continue_after(after)
        cursor = f"{after}-0"
        for eid, fields in entries:
            cursor = eid.decode()
            if eid.endswith(b"-1"):
                local_stream.finish()
            else:
                local_stream.publish_at(int(eid.split(b"-")[0]), fields[b"d"])
        old = self.streams.get(stream_id)
        if old is not None and old.listener is not None and stream_id == GET_STREAM_ID:
            raise ConflictError(stream_id)
        self.streams[stream_id] = local_stream
        self.stop_following(stream_id)
        if not local_stream.done:
            owner = meta.get(b"owner", b"").decode() if meta else ""
            requests = orjson.loads(meta[b"requests"]) if meta else []
            self._followers[stream_id] = asyncio.ensure_future(
                self._tail(local_stream, key, cursor, owner, requests, stream_id)
            )
        return local_stream, after

    def stop_following(self, stream_id: str) -> None:
        task = self._followers.pop(stream_id, None)
        if task is not None:
            task.cancel()

    async def _tail(
        self, stream: EventStream, key: str, cursor: str, owner: str, requests: list[Any], stream_id: str
    ) -> None:
        """Follow the Redis Stream into `stream` until it ends, its reader leaves, or (POST
        streams) its owner dies: then the requests it never answered are answered as lost."""
        listening = self.events.listening
        seen_reader = False
        while not stream.done and not self.closed:
            if stream.listener is not None:
                seen_reader = True
            elif seen_reader:
                return  # the GET connection is gone: the next one follows afresh
            try:
                found: Any = await listening.xread({key: cursor}, count=256, block=READ_BLOCK_MS)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                self.events.sessions._failed(exc)
                await asyncio.sleep(READ_BLOCK_MS / 1000)
                continue
            if found:
                for eid, fields in found[0][1]:
                    cursor = eid.decode()
                    if eid.endswith(b"-1"):
                        stream.finish()
                    else:
                        stream.publish_at(int(eid.split(b"-")[0]), fields[b"d"])
                continue
            if owner and owner != self.proc:
                with contextlib.suppress(RedisError, OSError):
                    if not await self.events.redis.exists(proc_key(owner)):
                        await self._answer_lost(stream_id, key, owner, requests, cursor)

    async def _answer_lost(self, stream_id: str, key: str, owner: str, requests: list[Any], cursor: str) -> None:
        """The owner died before finishing: take the stream over and answer what it never did."""
        redis = self.events.redis
        if not await self.events._take_over(keys=[meta_key(self.session_id, stream_id)], args=[owner, self.proc]):
            return  # another process did; its answers arrive through the stream
        answered: set[bytes] = set()
        last = 0
        everything: Any = await redis.xrange(key)
        for eid, fields in everything:
            if eid.endswith(b"-1"):
                continue
            last = int(eid.split(b"-")[0])
            message = orjson.loads(fields[b"d"])
            if isinstance(message, dict) and "id" in message and "method" not in message:
                answered.add(orjson.dumps(message["id"]))
        last = max(last, int(cursor.split("-")[0]))
        lost = [r for r in requests if orjson.dumps(r) not in answered]
        log.warning("stream %s: process %s stopped; %d request(s) answered as lost", stream_id, owner, len(lost))
        for id_ in lost:
            last += 1
            error = {
                "jsonrpc": "2.0",
                "id": id_,
                "error": {
                    "code": LOST,
                    "message": f"Request lost: the gateway process running it ({owner}) stopped; outcome unknown",
                    "data": {"lost": True, "process": owner},
                },
            }
            await self.events.append(self.session_id, stream_id, orjson.dumps(error), last)
        async with redis.pipeline(transaction=False) as pipe:
            pipe.xadd(key, {"end": "1"}, id=f"{last}-1")
            pipe.hset(meta_key(self.session_id, stream_id), "done", "1")
            await pipe.execute()

    def close(self, reason: str) -> None:
        for stream_id in list(self._followers):
            self.stop_following(stream_id)
        super().close(reason)


class ConflictError(Exception):
    """A second GET stream for the session on this process."""
