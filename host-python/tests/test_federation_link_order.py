"""The link's own relay of requests (federation/link.py `_relay`, `_pump`): progress and results in
order without one request's progress consumer holding up the others, with or without a tracer
provider (then the SDK's span is opened by the link around the same path), and a cancellation sent
upstream for a request given up, never for one already answered.

A real upstream process (the toy server over Streamable HTTP: its `slow` tool reports progress
every 0.1 s and counts the cancellations it sees), an UpstreamLink in this process, with the
gateway's own HTTP client ("mcpgw") and the SDK's ("sdk"). Each test here failed before its fix
(the review of issue 20's relay) on the paths it was found on (a waiting consumer held up the link
on the link's own path; progress could follow the result with a tracer provider; a cancellation
followed an answer already taken off the wire), but the cancellation counts, which guard the fix.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from typing import Any

import pytest
from mcp.client.streamable_http import StreamableHTTPTransport

from mcpgw.federation.config import UpstreamConfig
from mcpgw.federation.link import UpstreamLink, UpstreamTimeout
from mcpgw.federation.shttp_client import StreamableHttpClient
from mcpgw.observability import mcp_sdk_spans
from upstream_procs import HttpUpstream, toy_http

pytestmark = pytest.mark.timeout(120)

PATHS = ["mcpgw", "sdk", "mcpgw-traced"]  # the client; "-traced": as with a tracer provider set


@pytest.fixture(scope="module")
def toy() -> Iterator[HttpUpstream]:
    up = toy_http("toy")
    yield up
    up.stop()


async def _open(url: str, path: str, monkeypatch: pytest.MonkeyPatch) -> UpstreamLink:
    if path.endswith("-traced"):  # what the link sees with a tracer provider set (no exporter needed)
        monkeypatch.setattr(mcp_sdk_spans, "untraced", lambda: False)
    client = path.removesuffix("-traced")
    link = UpstreamLink(UpstreamConfig(id="up", prefix="up", transport="streamable-http", url=url, client=client))
    await link.open()
    assert link.client == client
    return link


@pytest.mark.parametrize("path", PATHS)
async def test_a_progress_consumer_that_waits_holds_up_only_its_own_call(
    toy: HttpUpstream, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One call's progress consumer blocks (a client reading its stream slowly: the hub waits up to
    slow_reader_wait_s); another call on the same link (the shared catalog link serves every
    stateless client) is answered meanwhile, and the first call's result comes after its progress."""
    link = await _open(toy.url, path, monkeypatch)
    release = asyncio.Event()
    consuming = asyncio.Event()
    seen: list[object] = []

    async def blocked(done: float, total: float | None, message: str | None) -> None:
        consuming.set()
        await release.wait()
        seen.append(done)

    try:
        first = asyncio.ensure_future(
            link.request("tools/call", {"name": "slow", "arguments": {"seconds": 0.3}}, blocked)
        )
        await asyncio.wait_for(consuming.wait(), 30)
        other = await asyncio.wait_for(link.request("tools/call", {"name": "add", "arguments": {"a": 1, "b": 2}}), 30)
        assert other["structuredContent"] == {"result": 3}
        assert not first.done()  # its progress not handed on yet: its result waits
        release.set()
        result: dict[str, Any] = await asyncio.wait_for(first, 30)
        seen.append("result")
        assert result["content"][0]["text"] == "slept 0.3"
        assert seen == [1.0, 2.0, 3.0, "result"]
        assert link._waiting == {}
    finally:
        release.set()
        await link.close()


@pytest.mark.parametrize("path", PATHS)
async def test_progress_reaches_its_caller_before_the_result(
    toy: HttpUpstream, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each progress is handed on, in order, before the result that follows it (a consumer that
    takes a moment each time: the SDK's dispatcher ran each in a task, and the result could pass)."""
    link = await _open(toy.url, path, monkeypatch)
    seen: list[object] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        await asyncio.sleep(0.05)
        seen.append(done)

    try:
        await link.request("tools/call", {"name": "slow", "arguments": {"seconds": 0.3}}, on_progress)
        seen.append("result")
        assert seen == [1.0, 2.0, 3.0, "result"]
    finally:
        await link.close()


@pytest.mark.parametrize("path", PATHS)
async def test_a_timed_out_and_a_cancelled_call_are_cancelled_upstream(
    toy: HttpUpstream, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    link = await _open(toy.url, path, monkeypatch)

    async def cancellations() -> int:
        found = await link.request("tools/call", {"name": "cancellations"})
        return int(found["structuredContent"]["result"])

    try:
        before = await cancellations()
        with pytest.raises(UpstreamTimeout):
            await link.request("tools/call", {"name": "slow", "arguments": {"seconds": 5}}, timeout=0.3)
        call = asyncio.ensure_future(link.request("tools/call", {"name": "slow", "arguments": {"seconds": 5}}))
        await asyncio.sleep(0.3)
        call.cancel()
        await asyncio.gather(call, return_exceptions=True)
        for _ in range(300):  # the upstream counts a cancellation as its handler ends (bounded at 30 s)
            if await cancellations() - before == 2:
                break
            await asyncio.sleep(0.1)
        assert await cancellations() - before == 2
        assert link._waiting == {}
    finally:
        await link.close()


class _Answer:
    """The answer future of one waiting request, as the pump sees it: the caller's task is cancelled
    right after the answer is set, before that task resumes (the window the fix closes)."""

    def __init__(self, future: asyncio.Future[Any], caller: asyncio.Future[Any]) -> None:
        self.future, self.caller = future, caller

    def done(self) -> bool:
        return self.future.done()

    def set_result(self, outcome: Any) -> None:
        self.future.set_result(outcome)
        self.caller.cancel()


class _Seen:
    def __init__(self, waiting: Any, caller: asyncio.Future[Any]) -> None:
        self.answer = _Answer(waiting.answer, caller)
        self.on_progress = waiting.on_progress


class _CancelOnAnswer(dict[str, Any]):
    caller: asyncio.Future[Any] | None = None

    def get(self, key: str, default: Any = None) -> Any:
        waiting = super().get(key, default)
        if waiting is None or self.caller is None:
            return waiting
        return _Seen(waiting, self.caller)


@pytest.mark.parametrize("path", PATHS)
async def test_no_cancellation_is_sent_for_a_request_already_answered(
    toy: HttpUpstream, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The caller is cancelled after its answer arrived but before its task took it: the answer is
    dropped with the caller, and no notifications/cancelled goes upstream for a finished request."""
    link = await _open(toy.url, path, monkeypatch)
    sent: list[str] = []
    notify = link.notify

    async def spy(method: str, params: dict[str, Any] | None = None) -> None:
        sent.append(method)
        await notify(method, params)

    monkeypatch.setattr(link, "notify", spy)
    waiting = _CancelOnAnswer()
    monkeypatch.setattr(link, "_waiting", waiting)
    try:
        call = asyncio.ensure_future(link.request("tools/call", {"name": "slow", "arguments": {"seconds": 0.1}}))
        waiting.caller = call
        outcome = (await asyncio.wait_for(asyncio.gather(call, return_exceptions=True), 30))[0]
        assert isinstance(outcome, asyncio.CancelledError)
        assert waiting == {}
        waiting.caller = None
        assert (await link.request("tools/call", {"name": "add", "arguments": {"a": 1, "b": 2}}))["structuredContent"]
        assert "notifications/cancelled" not in sent
    finally:
        await link.close()


@pytest.mark.parametrize("path", ["mcpgw", "sdk"])
async def test_a_list_changed_the_first_call_causes_is_heard(
    toy: HttpUpstream, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The upstream (the SDK's server) drops what it sends on its own while it holds no GET stream
    of the session, and both clients open that stream in a task of its own: a link is open only
    once its GET stream was answered, so a list_changed its very first call causes arrives. The
    GET is held back half a second here (a loaded machine); the SDK client's link did not wait."""
    real_lean, real_sdk = StreamableHttpClient._get_stream, StreamableHTTPTransport.handle_get_stream

    async def lean_later(self: Any) -> None:
        await asyncio.sleep(0.5)
        await real_lean(self)

    async def sdk_later(self: Any, *args: Any) -> None:
        await asyncio.sleep(0.5)
        await real_sdk(self, *args)

    monkeypatch.setattr(StreamableHttpClient, "_get_stream", lean_later)
    monkeypatch.setattr(StreamableHTTPTransport, "handle_get_stream", sdk_later)
    heard = asyncio.Event()

    class Handler:
        async def upstream_notification(self, link: UpstreamLink, method: str, params: dict[str, Any]) -> None:
            if method == "notifications/tools/list_changed":
                heard.set()

        async def upstream_request(self, link: UpstreamLink, method: str, params: dict[str, Any]) -> dict[str, Any]:
            raise AssertionError(method)

    link = UpstreamLink(
        UpstreamConfig(id="up", prefix="up", transport="streamable-http", url=toy.url, client=path), Handler()
    )
    await link.open()
    assert link.client == path
    try:
        name = f"early{path}{os.getpid()}"
        grown = await link.request("tools/call", {"name": "grow", "arguments": {"name": name}})
        assert grown["content"][0]["text"] == f"added {name}"
        await asyncio.wait_for(heard.wait(), 20)
    finally:
        await link.close()
