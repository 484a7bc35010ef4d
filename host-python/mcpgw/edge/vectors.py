"""The edge vectors (tests/vectors/, shipped in the package): loading and checking.

Used by the start-up self-test of `MCPGW_EDGE=auto|wasm`, by hot-swap
verification, and by the Python tests for both backends.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from .contract import EdgeConfig, EdgeError, encode_head

PACKAGED_DIR = Path(__file__).with_name("vectors")
BASE_CONFIG = "base-config.json"


@dataclass
class Case:
    file: str
    name: str
    reason: str
    config: dict[str, Any]
    expect: dict[str, Any]
    request: dict[str, Any] | None = None
    edge_config: EdgeConfig | None = field(default=None, repr=False)

    @property
    def head(self) -> tuple[str, str, str, list[tuple[str, str]]]:
        assert self.request is not None
        r = self.request
        return r["method"], r["path"], r.get("query", ""), [tuple(h) for h in r["headers"]]


def load_cases(directory: Path = PACKAGED_DIR) -> list[Case]:
    directory = Path(directory)
    base = orjson.loads((directory / BASE_CONFIG).read_bytes())
    cases: list[Case] = []
    for path in sorted(directory.glob("*.json")):
        if path.name == BASE_CONFIG:
            continue
        data = orjson.loads(path.read_bytes())
        file_config = data.get("config", {})
        for raw in data["cases"]:
            config = {**base, **file_config, **raw.get("config", {})}
            case = Case(
                file=path.name,
                name=raw["name"],
                reason=raw["reason"],
                config=config,
                expect=raw["expect"],
                request=raw.get("request"),
            )
            try:
                case.edge_config = EdgeConfig.from_mapping(config)
            except EdgeError:
                case.edge_config = None  # a config-only case about an ill-typed config
            cases.append(case)
    return cases


def matches(expected: Any, actual: Any) -> bool:
    """Partial match: expected object keys must be present and equal (recursively)."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(k in actual and matches(v, actual[k]) for k, v in expected.items())
    return bool(expected == actual)


def config_outcome(configure_encoded: Callable[[str], str], case: Case) -> dict[str, Any]:
    """Run a configure-only case through an encoded `configure`: `{"ok": true}` or the error."""
    out = configure_encoded(orjson.dumps(case.config).decode())
    return orjson.loads(out) if out else {"ok": True}


@dataclass
class SelfTestReport:
    total: int
    failures: list[str]

    @property
    def passed(self) -> bool:
        return self.total > 0 and not self.failures

    def summary(self) -> str:
        if self.total == 0:
            return "no vectors found"
        if not self.failures:
            return f"{self.total} vectors passed"
        return f"{len(self.failures)} of {self.total} vectors failed (first: {self.failures[0]})"


def self_test(
    configure_encoded: Callable[[str], str],
    evaluate_encoded: Callable[[bytes], bytes],
    cases: list[Case],
    evaluate_compact: Callable[[bytes], bytes] | None = None,
) -> SelfTestReport:
    """Run every case through an encoded configure/evaluate pair, and each request case also
    through `evaluate_compact` (the compact encoding, host half included) when given: with the
    headers letter by letter and, when the component reads it, in the packed form."""
    from .compact import evaluate_compact_with, reads_packed
    from .validate import InvalidOutput

    failures: list[str] = []
    forms: tuple[bool, ...] | None = None  # packed or not, known once a configuration is in
    for case in cases:
        if case.request is None:
            got = config_outcome(configure_encoded, case)
        else:
            err = configure_encoded(orjson.dumps(case.config).decode())
            if err:
                failures.append(f"{case.name}: config refused: {err}")
                continue
            got = orjson.loads(evaluate_encoded(encode_head(*case.head)))
            if evaluate_compact is not None and case.edge_config is not None:
                if forms is None:
                    forms = (False, True) if reads_packed(evaluate_compact) else (False,)
                method, path, _, headers = case.head
                for packed in forms:
                    try:
                        compact = evaluate_compact_with(
                            evaluate_compact, case.edge_config, method, path, headers, packed
                        )
                    except (ValueError, InvalidOutput) as exc:  # too long to encode, or refused by the guard
                        compact = {"refused": str(exc)}
                    if not matches(case.expect, compact):
                        form = "compact, packed" if packed else "compact"
                        failures.append(f"{case.name} ({form}): expected {case.expect}, got {compact}")
        if not matches(case.expect, got):
            failures.append(f"{case.name}: expected {case.expect}, got {got}")
    return SelfTestReport(total=len(cases), failures=failures)
