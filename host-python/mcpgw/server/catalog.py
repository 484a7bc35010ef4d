"""What a server offers: tools, resources, resource templates, prompts and completions.

The catalog knows MCP shapes, nothing of transports or sessions; a tool gets a
`CallContext` to report progress and log through whatever stream carries it.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from .context import CallContext
from .jsonrpc import INVALID_PARAMS, JsonRpcError

RESOURCE_NOT_FOUND = -32002  # the MCP spec's code for resources/read of an unknown URI


class ToolArgumentError(ValueError):
    """Arguments that do not fit the tool's input schema: reported as a tool result with isError."""


ToolFn = Callable[[dict[str, Any], CallContext], Awaitable[str]]


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    input_schema: dict[str, Any]
    run: ToolFn
    # Sends nothing before its result (no progress, log or request to the client) and waits on
    # nothing outside the process: a transport may answer a call of it in the connection's own task.
    quiet: bool = False

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "inputSchema": self.input_schema}


@dataclass(frozen=True)
class Resource:
    uri: str
    name: str
    description: str
    mime_type: str
    text: str | None = None
    blob: str | None = None  # base64, for binary contents

    def describe(self) -> dict[str, Any]:
        return {"uri": self.uri, "name": self.name, "description": self.description, "mimeType": self.mime_type}

    def contents(self) -> dict[str, Any]:
        body = {"text": self.text} if self.blob is None else {"blob": self.blob}
        return {"uri": self.uri, "mimeType": self.mime_type, **body}


@dataclass(frozen=True)
class ResourceTemplate:
    """A URI template with simple `{name}` variables (RFC 6570 level 1), each matching one path segment."""

    uri_template: str
    name: str
    description: str
    mime_type: str
    render: Callable[[dict[str, str]], str]
    complete: Callable[[str, str], list[str]] = lambda _arg, _value: []

    def describe(self) -> dict[str, Any]:
        return {
            "uriTemplate": self.uri_template,
            "name": self.name,
            "description": self.description,
            "mimeType": self.mime_type,
        }

    def match(self, uri: str) -> dict[str, str] | None:
        pattern = "".join(
            f"(?P<{part[1:-1]}>[^/]+)" if part.startswith("{") else re.escape(part)
            for part in re.split(r"(\{[A-Za-z_][A-Za-z0-9_]*\})", self.uri_template)
        )
        found = re.fullmatch(pattern, uri)
        return found.groupdict() if found else None


@dataclass(frozen=True)
class PromptArgument:
    name: str
    description: str
    required: bool
    choices: tuple[str, ...] = ()  # offered by completion/complete

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "required": self.required}


@dataclass(frozen=True)
class Prompt:
    name: str
    description: str
    arguments: tuple[PromptArgument, ...]
    render: Callable[[dict[str, str]], str]

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "arguments": [a.describe() for a in self.arguments]}


MAX_COMPLETIONS = 100  # the spec caps completion values per response at 100


# The result key of each list method, as the catalog serialises it.
LIST_KEYS = {
    "tools/list": "tools",
    "resources/list": "resources",
    "resources/templates/list": "resourceTemplates",
    "prompts/list": "prompts",
}


@dataclass
class Catalog:
    tools: dict[str, Tool] = field(default_factory=dict)
    resources: dict[str, Resource] = field(default_factory=dict)
    templates: list[ResourceTemplate] = field(default_factory=list)
    prompts: dict[str, Prompt] = field(default_factory=dict)
    # Bumped by `changed()`; the pre-serialised lists are of one version.
    version: int = 0
    _serialised: dict[str, tuple[int, orjson.Fragment]] = field(default_factory=dict, repr=False, compare=False)

    def changed(self) -> None:
        """Say the catalog changed (what changes it must call this): its lists are serialised anew."""
        self.version += 1

    def tool_list(self) -> list[dict[str, Any]]:
        return [t.describe() for t in self.tools.values()]

    def listing(self, method: str) -> list[dict[str, Any]]:
        """The items of a list method's result (`LIST_KEYS`)."""
        if method == "tools/list":
            return self.tool_list()
        if method == "resources/list":
            return [r.describe() for r in self.resources.values()]
        if method == "resources/templates/list":
            return [t.describe() for t in self.templates]
        return [p.describe() for p in self.prompts.values()]

    def serialised(self, method: str) -> orjson.Fragment:
        """`listing(method)` as JSON bytes, serialised once per catalog version."""
        cached = self._serialised.get(method)
        if cached is None or cached[0] != self.version:
            cached = self._serialised[method] = (self.version, orjson.Fragment(orjson.dumps(self.listing(method))))
        return cached[1]

    async def call_tool(self, params: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        name = params.get("name")
        if not isinstance(name, str):
            raise JsonRpcError(INVALID_PARAMS, "tools/call needs params.name")
        tool = self.tools.get(name)
        if tool is None:
            raise JsonRpcError(INVALID_PARAMS, f"Unknown tool: {name}")
        args = params.get("arguments")
        if args is None:
            args = {}
        if not isinstance(args, dict):
            raise JsonRpcError(INVALID_PARAMS, "params.arguments must be an object")
        try:
            text = await tool.run(args, ctx)
        except ToolArgumentError as exc:
            # A tool-level failure the model can read and correct: a result, not a protocol error.
            return {"content": [{"type": "text", "text": str(exc)}], "isError": True}
        return {"content": [{"type": "text", "text": text}], "isError": False}

    def read_resource(self, uri: Any) -> dict[str, Any]:
        if not isinstance(uri, str):
            raise JsonRpcError(INVALID_PARAMS, "resources/read needs params.uri")
        resource = self.resources.get(uri)
        if resource is not None:
            return {"contents": [resource.contents()]}
        for template in self.templates:
            values = template.match(uri)
            if values is not None:
                return {"contents": [{"uri": uri, "mimeType": template.mime_type, "text": template.render(values)}]}
        raise JsonRpcError(RESOURCE_NOT_FOUND, f"Resource not found: {uri}", {"uri": uri})

    def get_prompt(self, params: dict[str, Any]) -> dict[str, Any]:
        prompt = self.prompts.get(params.get("name"))  # type: ignore[arg-type]
        if prompt is None:
            raise JsonRpcError(INVALID_PARAMS, f"Unknown prompt: {params.get('name')}")
        args = params.get("arguments")
        if args is None:
            args = {}
        if not isinstance(args, dict) or not all(isinstance(v, str) for v in args.values()):
            raise JsonRpcError(INVALID_PARAMS, "prompt arguments must be an object of strings")
        missing = [a.name for a in prompt.arguments if a.required and a.name not in args]
        if missing:
            raise JsonRpcError(INVALID_PARAMS, f"Missing required arguments: {', '.join(missing)}")
        text = prompt.render(args)
        return {
            "description": prompt.description,
            "messages": [{"role": "user", "content": {"type": "text", "text": text}}],
        }

    def complete(self, params: dict[str, Any]) -> dict[str, Any]:
        ref, argument = params.get("ref"), params.get("argument")
        if not isinstance(ref, dict) or not isinstance(argument, dict):
            raise JsonRpcError(INVALID_PARAMS, "completion/complete needs params.ref and params.argument")
        name, value = argument.get("name"), argument.get("value", "")
        if not isinstance(name, str) or not isinstance(value, str):
            raise JsonRpcError(INVALID_PARAMS, "argument.name and argument.value must be strings")
        values: list[str] = []
        if ref.get("type") == "ref/prompt":
            prompt = self.prompts.get(ref.get("name"))  # type: ignore[arg-type]
            if prompt is None:
                raise JsonRpcError(INVALID_PARAMS, f"Unknown prompt: {ref.get('name')}")
            for arg in prompt.arguments:
                if arg.name == name:
                    values = [c for c in arg.choices if c.startswith(value)]
        elif ref.get("type") == "ref/resource":
            template = next((t for t in self.templates if t.uri_template == ref.get("uri")), None)
            if template is None:
                raise JsonRpcError(INVALID_PARAMS, f"Unknown resource template: {ref.get('uri')}")
            values = template.complete(name, value)
        else:
            raise JsonRpcError(INVALID_PARAMS, "ref.type must be ref/prompt or ref/resource")
        return {
            "completion": {
                "values": values[:MAX_COMPLETIONS],
                "total": len(values),
                "hasMore": len(values) > MAX_COMPLETIONS,
            }
        }
