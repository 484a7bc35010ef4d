"""`[auth.policy]`: who may reach which endpoint and see or call which tool, prompt or resource.

```toml
[[auth.policy.rules]]
endpoint = "/servers/billing/*"      # /mcp, /sse, /ws, /servers/<id>/mcp|sse|ws (globs)
scopes = ["billing"]

[[auth.policy.rules]]
tool = ["*__delete_*", "sleep"]      # names as /mcp shows them (<prefix>__<name>)
scopes = ["admin"]
claims = { groups = ["ops", "sre"] } # each claim must equal one of the values (or contain one)
```

A target (an endpoint, a name) is allowed when every rule that matches it is satisfied; a
target no rule matches is allowed. An endpoint refusal is HTTP 403 insufficient_scope; a name
refusal hides the name (filtered from lists; a call gets the unknown-name error).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..state.principal import Principal

KINDS = ("endpoint", "tool", "prompt", "resource")


@dataclass(frozen=True)
class Rule:
    kind: str
    patterns: tuple[re.Pattern[str], ...]
    globs: tuple[str, ...]
    scopes: frozenset[str]
    claims: tuple[tuple[str, frozenset[str]], ...]

    def matches(self, target: str) -> bool:
        return any(p.fullmatch(target) for p in self.patterns)

    def satisfied(self, principal: Principal | None) -> bool:
        if principal is None:
            return not self.scopes and not self.claims
        if not self.scopes <= principal.scopes:
            return False
        for claim, wanted in self.claims:
            value = principal.claims.get(claim)
            values = value if isinstance(value, list) else [value]
            if not any(isinstance(v, str) and v in wanted for v in values):
                return False
        return True


class Policy:
    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules
        self._by_kind = {kind: [r for r in rules if r.kind == kind] for kind in KINDS}
        self.names = any(self._by_kind[k] for k in ("tool", "prompt", "resource"))
        self.endpoint_rules = bool(self._by_kind["endpoint"])

    def endpoint_scopes(self, endpoint: str) -> tuple[str, ...]:
        """The scopes the rules of an endpoint name (for the WWW-Authenticate `scope`)."""
        found: set[str] = set()
        for rule in self._by_kind["endpoint"]:
            if rule.matches(endpoint):
                found |= rule.scopes
        return tuple(sorted(found))

    def allows(self, kind: str, target: str, principal: Principal | None) -> bool:
        return all(rule.satisfied(principal) for rule in self._by_kind[kind] if rule.matches(target))

    def scopes_supported(self) -> list[str]:
        return sorted({s for r in self.rules for s in r.scopes})


EMPTY = Policy([])


def parse_policy(table: Any, fail: Callable[[str, int | None], Exception]) -> Policy:
    """`table` is the `[auth.policy]` table; `fail(message, rule_index)` builds the error (with the line)."""
    if not isinstance(table, dict):
        raise fail("auth.policy must be a table", None)
    for key in table:
        if key != "rules":
            raise fail(f"auth.policy: unknown key {key!r}; known: rules", None)
    raw_rules = table.get("rules", [])
    if not isinstance(raw_rules, list):
        raise fail("auth.policy.rules must be an array of tables ([[auth.policy.rules]])", None)
    rules = []
    for index, raw in enumerate(raw_rules):
        where = f"auth.policy.rules[{index}]"
        if not isinstance(raw, dict):
            raise fail(f"{where} must be a table", index)
        for key in raw:
            if key not in (*KINDS, "scopes", "claims"):
                raise fail(f"{where}: unknown key {key!r}; known: {', '.join(KINDS)}, scopes, claims", index)
        kinds = [k for k in KINDS if k in raw]
        if len(kinds) != 1:
            raise fail(f"{where} needs exactly one of {', '.join(KINDS)}", index)
        kind = kinds[0]
        globs = raw[kind] if isinstance(raw[kind], list) else [raw[kind]]
        if not globs or not all(isinstance(g, str) and g for g in globs):
            raise fail(f"{where}.{kind} must be a glob string or a list of them", index)
        scopes = raw.get("scopes", [])
        if not isinstance(scopes, list) or not all(isinstance(s, str) and s and " " not in s for s in scopes):
            raise fail(f"{where}.scopes must be a list of scope strings", index)
        claims = raw.get("claims", {})
        if not isinstance(claims, dict):
            raise fail(f"{where}.claims must be a table of claim = value or [values]", index)
        pairs = []
        for claim, wanted in claims.items():
            values = wanted if isinstance(wanted, list) else [wanted]
            if not values or not all(isinstance(v, str) for v in values):
                raise fail(f"{where}.claims.{claim} must be a string or a list of strings", index)
            pairs.append((claim, frozenset(values)))
        if not scopes and not pairs:
            raise fail(f"{where} names neither scopes nor claims (it would require nothing)", index)
        rules.append(
            Rule(
                kind,
                tuple(re.compile(fnmatch.translate(g)) for g in globs),
                tuple(globs),
                frozenset(scopes),
                tuple(pairs),
            )
        )
    return Policy(rules)


def rule_lines(text: str) -> list[int]:
    """Line numbers of each `[[auth.policy.rules]]` header, in order (for error messages)."""
    return [
        number
        for number, raw in enumerate(text.splitlines(), 1)
        if re.fullmatch(r"\s*\[\[\s*auth\s*\.\s*policy\s*\.\s*rules\s*\]\]\s*(#.*)?", raw)
    ]


def describe(policy: Policy) -> list[Mapping[str, Any]]:
    return [
        {
            "kind": r.kind,
            "match": list(r.globs),
            "scopes": sorted(r.scopes),
            "claims": {c: sorted(v) for c, v in r.claims},
        }
        for r in policy.rules
    ]
