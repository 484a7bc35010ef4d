"""Who is calling: the principal an authenticator (auth/) establishes for one request or a stdio
process. A plain value that sessions are bound to; it lives here, below the engine and the
transports, so that they can carry it without reaching up into auth/."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any

# The ASGI scope key the Router sets for the transports (absent: authentication is off).
SCOPE_KEY = "mcpgw.principal"
# Claims a principal keeps (for policy claim matches, plugins and logs); never the token itself.
KEPT_CLAIMS = ("iss", "sub", "aud", "azp", "client_id", "exp", "groups", "roles", "email", "name")


@dataclass(frozen=True)
class Principal:
    kind: str  # "jwt", "api-key", "anonymous"
    subject: str
    issuer: str = ""
    scopes: frozenset[str] = frozenset()
    claims: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    # (cached: read on every request of a session; an authenticator keeps one principal per
    # token, so each is built once per token)
    @cached_property
    def key(self) -> tuple[str, str, str]:
        """What a session is bound to: the same key is the same caller."""
        return (self.kind, self.issuer, self.subject)

    @cached_property
    def caller(self) -> str:
        """The key as one string (a request's CallContext.caller)."""
        return "\x1f".join(self.key)

    def describe(self) -> dict[str, Any]:
        """What plugins and logs may see: subject, scopes, selected claims (never a token)."""
        return {
            "kind": self.kind,
            "subject": self.subject,
            "issuer": self.issuer,
            "scopes": sorted(self.scopes),
            "claims": {k: v for k, v in self.claims.items() if k in KEPT_CLAIMS},
        }


ANONYMOUS = Principal("anonymous", "")


def same_caller(a: Principal | None, b: Principal | None) -> bool:
    """Sessions opened without authentication (None) match only requests without it."""
    if a is b:
        return True  # (the same principal object: a token's cached principal, every request)
    if a is None or b is None:
        return False
    return a.key == b.key
