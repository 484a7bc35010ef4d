"""How upstream names appear in the merged catalog at `/mcp`, and back.

- Tools and prompts: `<prefix>__<name>` (`files__read_file`). Prefixes have no
  underscore and built-in names no `__`, so the first `__` splits a name back.
- Resource URIs and URI templates: `<prefix>+<uri>` (`files+file:///etc/hosts`),
  which is still a URI (the scheme becomes `files+file`); the known prefix is
  stripped, so an upstream scheme with a `+` of its own survives.

Virtual servers (`/servers/<id>/mcp`) use the upstream's own names unchanged.
"""

from __future__ import annotations

from collections.abc import Container

NAME_SEPARATOR = "__"
URI_SEPARATOR = "+"


def public_name(prefix: str, name: str) -> str:
    return f"{prefix}{NAME_SEPARATOR}{name}"


def split_name(public: str) -> tuple[str, str] | None:
    """(prefix, upstream name), or None for a name with no prefix (a built-in)."""
    prefix, sep, name = public.partition(NAME_SEPARATOR)
    return (prefix, name) if sep and prefix and name else None


def public_uri(prefix: str, uri: str) -> str:
    return f"{prefix}{URI_SEPARATOR}{uri}"


def split_uri(public: str, prefixes: Container[str]) -> tuple[str, str] | None:
    """(prefix, upstream URI) when `public` starts with a known prefix, else None."""
    prefix, sep, uri = public.partition(URI_SEPARATOR)
    return (prefix, uri) if sep and prefix in prefixes and uri else None
