"""One source of truth per fact: where a fact must be repeated, these fail when the copies disagree."""

from __future__ import annotations

import ast
import inspect
import re
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

import pytest

from mcpgw import protocol
from mcpgw.edge import contract
from mcpgw.server.builtin import builtin_catalog
from mcpgw.server.dispatcher import Dispatcher
from mcpgw.server.engine import SessionEngine
from mcpgw.settings import Settings
from mcpgw.state.registry import MemorySessions
from mcpgw.transports.sse import SseOptions
from mcpgw.transports.streamable_http import HttpOptions

PACKAGE = Path(__file__).resolve().parents[1] / "mcpgw"
REPO = PACKAGE.parents[1]
REVISION_LITERAL = re.compile(r"^20\d\d-\d\d-\d\d$")


def test_the_revisions_the_edge_is_configured_with_are_the_protocol_module_s():
    assert contract.SUPPORTED_VERSIONS == protocol.ALL_REVISIONS
    assert contract.DEFAULT_VERSION == protocol.DEFAULT_REVISION
    assert Settings().edge_config().supported_versions == list(protocol.ALL_REVISIONS)
    assert Settings().edge_config().default_version == protocol.DEFAULT_REVISION
    assert contract.EdgeConfig().supported_versions == list(protocol.ALL_REVISIONS)


def test_the_revision_sets_are_subsets_of_the_revisions():
    assert (*protocol.SESSIONFUL_REVISIONS, protocol.STATELESS_REVISION) == protocol.ALL_REVISIONS
    assert max(protocol.SESSIONFUL_REVISIONS) == protocol.LATEST_SESSIONFUL
    assert set(protocol.SESSIONFUL_REVISIONS) >= protocol.BATCH_REVISIONS
    assert set(protocol.SESSIONFUL_REVISIONS) >= protocol.PRIMING_REVISIONS
    assert protocol.DEFAULT_REVISION in protocol.SESSIONFUL_REVISIONS


def test_server_discover_offers_exactly_the_protocol_revisions():
    assert Dispatcher(builtin_catalog()).discover_result()["supportedVersions"] == list(protocol.ALL_REVISIONS)


def test_no_module_but_protocol_py_spells_a_revision():
    """A revision written as a string literal anywhere else in the package is a second copy."""
    found = [
        f"{path.relative_to(PACKAGE)}:{node.lineno}: {node.value}"
        for path in PACKAGE.rglob("*.py")
        if path.name != "protocol.py"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and REVISION_LITERAL.match(node.value)
    ]
    assert found == []


def test_the_docs_name_every_revision():
    transports = (REPO / "docs" / "transports.md").read_text()
    assert all(revision in transports for revision in protocol.ALL_REVISIONS)


def _defaults(target: Any) -> list[str]:
    if isinstance(target, type) and hasattr(target, "__dataclass_fields__"):
        return [f.name for f in fields(target) if f.default is not MISSING or f.default_factory is not MISSING]
    return [
        name for name, p in inspect.signature(target).parameters.items() if p.default is not inspect.Parameter.empty
    ]


@pytest.mark.parametrize("target", [HttpOptions, SseOptions, MemorySessions, SessionEngine])
def test_constructors_take_explicit_values_so_settings_hold_every_default(target):
    assert _defaults(target) == []


def test_every_setting_is_documented_in_docs_configuration_md():
    documented = (REPO / "docs" / "configuration.md").read_text()
    assert [f.name for f in fields(Settings) if f"`MCPGW_{f.name.upper()}`" not in documented] == []
