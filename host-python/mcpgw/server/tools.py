"""Built-in tools: what the gateway serves with no upstream configured."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


class ToolArgumentError(ValueError):
    """Arguments that do not fit the tool's input schema."""


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    input_schema: dict[str, Any]
    run: Callable[[dict[str, Any]], str]

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "inputSchema": self.input_schema}


def _echo(args: dict[str, Any]) -> str:
    text = args.get("text")
    if not isinstance(text, str):
        raise ToolArgumentError("'text' must be a string")
    return text


def _number(args: dict[str, Any], key: str) -> float | int:
    value = args.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ToolArgumentError(f"'{key}' must be a number")
    return value


def _add(args: dict[str, Any]) -> str:
    return str(_number(args, "a") + _number(args, "b"))


BUILTIN_TOOLS: dict[str, Tool] = {
    t.name: t
    for t in (
        Tool(
            "echo",
            "Returns the given text unchanged.",
            {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
            _echo,
        ),
        Tool(
            "add",
            "Adds two numbers.",
            {
                "type": "object",
                "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                "required": ["a", "b"],
            },
            _add,
        ),
    )
}
