"""The everything server's journey (issue 19): every feature the reference server offers, driven by
the mcp SDK's client, recorded case by case as the client saw it, so one journey made directly and
the same made through `/servers/<id>/mcp` and `/mcp` can be compared field by field.

What is volatile is normalised (uuids, times, session ids, task ids, the simulated logging's random
level); on `/mcp` the journey calls the prefixed names and maps the names and URIs it gets back
(`<prefix>__<name>`, `<prefix>+<uri>`: docs/federation.md, "Names on /mcp").
"""

from __future__ import annotations

import base64
import re
from typing import Any

import anyio
import mcp_types as types
from mcp.client.client import Client
from mcp.shared.exceptions import MCPError

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)?")
_SESSION = re.compile(r"SessionId \S+")
_CLOCK = re.compile(r"\b\d{1,2}:\d\d:\d\d(?:\s?[AP]M)?")  # "created at 2:49:12 AM" (the server's local time)
_LEVEL_WORD = re.compile(r"\b(debug|info|notice|warning|error|critical|alert|emergency)\b", re.I)
VOLATILE_KEYS = {"taskId", "createdAt", "lastUpdatedAt", "elicitationId"}

ROOTS = [{"uri": "file:///srv/journey", "name": "journey"}]
DATA_URI = "data:text/plain;base64," + base64.b64encode(b"a journey through the gateway\n").decode()
STATIC = "demo://resource/static/document/features.md"
TEMPLATE = "demo://resource/dynamic/text/{resourceId}"
EVENT_BOUND_S = 30.0  # how long a notification the journey waits for may take (a loaded machine)

# Tool calls, in order: (case, tool, arguments). Tools the client cannot be offered (the server
# lists them only to a client with the capability) are called only when listed.
CALLS: list[tuple[str, str, dict[str, Any]]] = [
    ("tool echo", "echo", {"message": "hello, journey ✓"}),
    ("tool get-annotated-message error", "get-annotated-message", {"messageType": "error", "includeImage": True}),
    ("tool get-annotated-message success", "get-annotated-message", {"messageType": "success"}),
    ("tool get-env", "get-env", {}),
    ("tool get-resource-links", "get-resource-links", {"count": 4}),
    ("tool get-resource-reference Text", "get-resource-reference", {"resourceType": "Text", "resourceId": 3}),
    ("tool get-resource-reference Blob", "get-resource-reference", {"resourceType": "Blob", "resourceId": 4}),
    ("tool get-structured-content", "get-structured-content", {"location": "Chicago"}),
    ("tool get-sum", "get-sum", {"a": 2.5, "b": -7}),
    ("tool get-tiny-image", "get-tiny-image", {}),
    ("tool get-sum, bad arguments", "get-sum", {"a": "two"}),
    ("tool that does not exist", "no-such-tool", {}),
    ("tool get-roots-list", "get-roots-list", {}),
    ("tool trigger-sampling-request", "trigger-sampling-request", {"prompt": "Say hi", "maxTokens": 7}),
    ("tool trigger-elicitation-request", "trigger-elicitation-request", {}),
    (
        "tool trigger-url-elicitation",
        "trigger-url-elicitation",
        {"url": "https://example.com/consent", "elicitationId": "journey-1"},
    ),
    (
        "tool trigger-url-elicitation errorPath",
        "trigger-url-elicitation",
        {"url": "https://example.com/consent", "elicitationId": "journey-2", "errorPath": True},
    ),
]
CAPABILITY_TOOLS = {
    "get-roots-list",
    "trigger-sampling-request",
    "trigger-elicitation-request",
    "trigger-url-elicitation",
}


class Journey:
    """One client's journey against one endpoint. `prefix` set: the endpoint is `/mcp`."""

    def __init__(self, tag: str, prefix: str | None = None, capable: bool = True) -> None:
        # The everything server keeps session resources in one map for all its sessions, by URI:
        # journeys run side by side name theirs apart (`tag`), normalised back.
        self.tag, self.prefix, self.capable = tag, prefix, capable
        self.cases: dict[str, Any] = {}
        self.asked: list[tuple[str, Any]] = []  # server-to-client requests, as the client got them
        self.notes: list[tuple[str, Any]] = []  # notifications/message and resources/updated
        self._heard = anyio.Event()
        self.client: Client | None = None

    # -- names -----------------------------------------------------------------------------------
    def tool(self, name: str) -> str:
        return f"{self.prefix}__{name}" if self.prefix else name

    def uri(self, uri: str) -> str:
        return f"{self.prefix}+{uri}" if self.prefix else uri

    def norm(self, value: Any, key: str = "") -> Any:
        """The value with volatile parts replaced and /mcp's names mapped back."""
        if isinstance(value, dict):
            return {k: self.norm(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [self.norm(v, key) for v in value]
        if not isinstance(value, str):
            return value
        if key in VOLATILE_KEYS:
            return f"<{key}>"
        if key == "blob":  # a dynamic blob is text with a time in it, base64-encoded
            try:
                decoded = base64.b64decode(value, validate=True).decode()
            except ValueError:
                return value
            return "<base64 of> " + self.norm(decoded)
        if self.prefix and key in ("name", "uri", "uriTemplate"):
            value = value.removeprefix(f"{self.prefix}__" if key == "name" else f"{self.prefix}+")
        value = _CLOCK.sub("<clock>", _TIME.sub("<time>", _UUID.sub("<uuid>", value))).replace(self.tag, "<tag>")
        return _SESSION.sub("SessionId <id>", value)

    # -- the client's side -------------------------------------------------------------------------
    def callbacks(self) -> dict[str, Any]:
        """The SDK client's callbacks: a capable client declares sampling, elicitation (form and
        url) and roots; the other declares nothing."""
        if not self.capable:
            return {"message_handler": self._on_message}
        return {
            "message_handler": self._on_message,
            "sampling_callback": self._sampling,
            "elicitation_callback": self._elicitation,
            "list_roots_callback": self._roots,
        }

    async def _sampling(self, ctx: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        self.asked.append(("sampling/createMessage", params.model_dump(by_alias=True, mode="json", exclude_none=True)))
        text = f"sampled {len(params.messages)} message(s), max {params.max_tokens} tokens"
        return types.CreateMessageResult(
            role="assistant", model="journey-model", content=types.TextContent(type="text", text=text)
        )

    async def _elicitation(self, ctx: Any, params: Any) -> types.ElicitResult:
        asked = params.model_dump(by_alias=True, mode="json", exclude_none=True)
        self.asked.append(("elicitation/create", asked))
        if asked.get("mode") == "url":
            return types.ElicitResult(action="accept")
        return types.ElicitResult(action="accept", content={"name": "Ada", "check": True, "integer": 7})

    async def _roots(self, ctx: Any) -> types.ListRootsResult:
        self.asked.append(("roots/list", {}))
        return types.ListRootsResult.model_validate({"roots": ROOTS})

    async def _on_message(self, message: Any) -> None:
        if isinstance(message, types.LoggingMessageNotification):
            self.notes.append(
                ("notifications/message", message.params.model_dump(by_alias=True, mode="json", exclude_none=True))
            )
        elif isinstance(message, types.ResourceUpdatedNotification):
            self.notes.append(
                ("notifications/resources/updated", message.params.model_dump(by_alias=True, mode="json"))
            )
        else:
            return
        self._heard.set()
        self._heard = anyio.Event()

    async def _heard_one(self, method: str, since: int) -> Any:
        with anyio.fail_after(EVENT_BOUND_S):
            while True:
                found = [params for name, params in self.notes[since:] if name == method]
                if found:
                    return found[0]
                await self._heard.wait()

    # -- requests ------------------------------------------------------------------------------------
    async def raw(self, method: str, params: dict[str, Any], on_progress: Any = None) -> dict[str, Any]:
        """One request as it goes on the wire; its result (or error) as it came back."""
        assert self.client is not None
        opts: dict[str, Any] = {"headers": {"mcp-protocol-version": self.client.protocol_version}}
        if on_progress is not None:
            opts["on_progress"] = on_progress
        try:
            return await self.client.session._dispatcher.send_raw_request(method, params, opts)  # type: ignore[arg-type]
        except MCPError as exc:
            return {"error": exc.error.model_dump(by_alias=True, mode="json", exclude_none=True)}

    async def record(self, case: str, method: str, params: dict[str, Any], on_progress: Any = None) -> dict[str, Any]:
        result = await self.raw(method, params, on_progress)
        self.cases[case] = self.norm(self.mine(result))
        return result

    def mine(self, result: dict[str, Any]) -> dict[str, Any]:
        """A list result with, on /mcp, only this upstream's entries (the built-ins and the other
        upstreams are listed there too)."""
        if not self.prefix:
            return result
        kept = dict(result)
        for field, key, mark in (
            ("tools", "name", "__"),
            ("prompts", "name", "__"),
            ("resources", "uri", "+"),
            ("resourceTemplates", "uriTemplate", "+"),
        ):
            if isinstance(result.get(field), list):
                kept[field] = [e for e in result[field] if str(e.get(key, "")).startswith(self.prefix + mark)]
        return kept

    async def run(self, client: Client) -> dict[str, Any]:
        self.client = client
        init = client.session.initialize_result.model_dump(by_alias=True, mode="json", exclude_none=True)
        if self.prefix is None:
            self.cases["initialize"] = self.norm(init)
        # A task first: it runs (4 s) while the rest of the journey goes on.
        created = await self.raw(
            "tools/call",
            {"name": self.tool("simulate-research-query"), "arguments": {"topic": "gateways"}, "task": {"ttl": 60000}},
        )
        self.cases["task: tools/call simulate-research-query (task-augmented)"] = self.norm(created)
        await self.record("logging/setLevel debug", "logging/setLevel", {"level": "debug"})
        await self.record("ping", "ping", {})

        listed = await self.raw("tools/list", {})
        mine = sorted((self.norm(t) for t in self.mine(listed).get("tools", [])), key=lambda t: t["name"])
        self.cases["tools/list"] = mine
        names = {t["name"] for t in mine}
        for case, tool, arguments in CALLS:
            if tool in CAPABILITY_TOOLS and tool not in names:
                continue
            before = len(self.asked)
            await self.record(case, "tools/call", {"name": self.tool(tool), "arguments": arguments})
            # roots/list is asked when the server likes (after initialize, by each upstream of a
            # /mcp session): not part of a call's case, checked once below.
            asked = [a for a in self.asked[before:] if a[0] != "roots/list"]
            if asked:
                self.cases[case + ": asked of the client"] = self.norm(asked)

        progress: list[tuple[float, float | None, str | None]] = []

        async def on_progress(done: float, total: float | None, message: str | None) -> None:
            progress.append((done, total, message))

        await self.record(
            "tool trigger-long-running-operation",
            "tools/call",
            {"name": self.tool("trigger-long-running-operation"), "arguments": {"duration": 1, "steps": 2}},
            on_progress,
        )
        self.cases["tool trigger-long-running-operation: progress"] = progress
        if self.capable:
            self.cases["roots/list asked of the client"] = any(name == "roots/list" for name, _ in self.asked)

        # A session resource made by a tool, then read back through the link the tool answered.
        linked = await self.record(
            "tool gzip-file-as-resource (link)",
            "tools/call",
            {"name": self.tool("gzip-file-as-resource"), "arguments": {"name": f"{self.tag}.txt.gz", "data": DATA_URI}},
        )
        links = [c["uri"] for c in linked.get("content", []) if c.get("type") == "resource_link"]
        if links:
            await self.record("resources/read the tool's resource_link", "resources/read", {"uri": links[0]})
        await self.record(
            "tool gzip-file-as-resource (embedded)",
            "tools/call",
            {
                "name": self.tool("gzip-file-as-resource"),
                "arguments": {"name": f"{self.tag}-embedded.txt.gz", "data": DATA_URI, "outputType": "resource"},
            },
        )

        # Resources and templates.
        resources = self.mine(await self.record("resources/list", "resources/list", {}))
        for resource in resources.get("resources", []):
            name = self.norm(resource)["uri"].rsplit("/", 1)[-1]
            await self.record(f"resources/read {name}", "resources/read", {"uri": resource["uri"]})
        await self.record("resources/templates/list", "resources/templates/list", {})
        for kind in ("text", "blob"):
            uri = self.uri(f"demo://resource/dynamic/{kind}/5")
            await self.record(f"resources/read template {kind}/5", "resources/read", {"uri": uri})
        await self.record("resources/read unknown", "resources/read", {"uri": self.uri("demo://resource/nothing/here")})

        # Subscriptions: subscribe, have the server send updates, hear one, stop, unsubscribe.
        await self.record("resources/subscribe", "resources/subscribe", {"uri": self.uri(STATIC)})
        since = len(self.notes)
        await self.record(
            "tool toggle-subscriber-updates on",
            "tools/call",
            {"name": self.tool("toggle-subscriber-updates"), "arguments": {}},
        )
        self.cases["notifications/resources/updated"] = self.norm(
            await self._heard_one("notifications/resources/updated", since)
        )
        await self.record(
            "tool toggle-subscriber-updates off",
            "tools/call",
            {"name": self.tool("toggle-subscriber-updates"), "arguments": {}},
        )
        await self.record("resources/unsubscribe", "resources/unsubscribe", {"uri": self.uri(STATIC)})

        # Logging: the simulated messages at the level set above (their level is random).
        since = len(self.notes)
        await self.record(
            "tool toggle-simulated-logging on",
            "tools/call",
            {"name": self.tool("toggle-simulated-logging"), "arguments": {}},
        )
        message = self.norm(await self._heard_one("notifications/message", since))
        message["level"] = "<random level>"
        data = _LEVEL_WORD.sub("<random level>", str(message.get("data")))
        message["data"] = data.replace(
            "<random level> level-message", "<random level>-level message"
        )  # "Alert level-message"
        self.cases["notifications/message (simulated logging)"] = message
        await self.record(
            "tool toggle-simulated-logging off",
            "tools/call",
            {"name": self.tool("toggle-simulated-logging"), "arguments": {}},
        )

        # Prompts and completion.
        prompts = self.mine(await self.record("prompts/list", "prompts/list", {}))
        arguments = {
            "simple-prompt": {},
            "args-prompt": {"city": "Oslo", "state": "Viken"},
            "completable-prompt": {"department": "Engineering", "name": "Alice"},
            "resource-prompt": {"resourceType": "Text", "resourceId": "2"},
        }
        for prompt in prompts.get("prompts", []):
            name = self.norm(prompt)["name"]
            await self.record(
                f"prompts/get {name}", "prompts/get", {"name": prompt["name"], "arguments": arguments.get(name, {})}
            )
        await self.record(
            "prompts/get missing argument", "prompts/get", {"name": self.tool("args-prompt"), "arguments": {}}
        )
        ref = {"type": "ref/prompt", "name": self.tool("completable-prompt")}
        await self.record(
            "completion/complete prompt department",
            "completion/complete",
            {"ref": ref, "argument": {"name": "department", "value": "E"}},
        )
        await self.record(
            "completion/complete prompt name in context",
            "completion/complete",
            {
                "ref": ref,
                "argument": {"name": "name", "value": ""},
                "context": {"arguments": {"department": "Engineering"}},
            },
        )
        await self.record(
            "completion/complete resource template",
            "completion/complete",
            {
                "ref": {"type": "ref/resource", "uri": self.uri(TEMPLATE)},
                "argument": {"name": "resourceId", "value": "1"},
            },
        )

        # The task started at the beginning: polled until it ends, then its result.
        task_id = created.get("task", {}).get("taskId")
        if task_id is not None:
            with anyio.fail_after(60):
                while True:  # polled, as the task protocol has clients do
                    status = await self.raw("tasks/get", {"taskId": task_id})
                    if status.get("status") not in ("working", None):
                        break
                    await anyio.sleep(0.25)
            self.cases["task: tasks/get (ended)"] = self.norm(status)
            await self.record("task: tasks/result", "tasks/result", {"taskId": task_id})
            listed_tasks = await self.raw("tasks/list", {})
            self.cases["task: tasks/list"] = self.norm(listed_tasks)
            await self.record("task: tasks/cancel (ended)", "tasks/cancel", {"taskId": task_id})
        return self.cases
