"""One settings object: environment variables and `mcpgw serve` flags mean the same thing."""

from __future__ import annotations

import inspect

import pytest

from mcpgw.edge.backend import load_edge
from mcpgw.edge.contract import EdgeConfig
from mcpgw.edge.middleware import EdgeMiddleware
from mcpgw.edge.outcome_cache import OutcomeCache
from mcpgw.edge.registry import EdgeRegistry
from mcpgw.edge.wasm_core import WasmComponent, verify_component
from mcpgw.settings import Settings


def test_defaults_are_the_documented_ones():
    s = Settings.from_env({})
    assert (s.host, s.port, s.edge) == ("127.0.0.1", 4444, "auto")
    cfg = s.edge_config()
    assert cfg.allowed_origins == ["http://localhost:*", "http://127.0.0.1:*", "http://[::1]:*"]
    assert cfg.allowed_hosts == ["localhost", "127.0.0.1", "[::1]"]
    assert cfg.max_age == 600 and cfg.allow_credentials is False and cfg.path_prefix == ""


def test_environment_variables_are_parsed():
    s = Settings.from_env(
        {
            "MCPGW_PORT": "9000",
            "MCPGW_EDGE": "python",
            "MCPGW_ALLOWED_ORIGINS": "https://a.example, http://localhost:*",
            "MCPGW_ALLOW_CREDENTIALS": "true",
            "MCPGW_CORS_MAX_AGE": "60",
        }
    )
    assert s.port == 9000 and s.edge == "python" and s.allow_credentials is True
    assert s.edge_config().allowed_origins == ["https://a.example", "http://localhost:*"]
    assert s.edge_config().max_age == 60


def test_bad_values_name_the_variable():
    with pytest.raises(ValueError, match="MCPGW_PORT"):
        Settings.from_env({"MCPGW_PORT": "eighty"})
    with pytest.raises(ValueError, match="MCPGW_ALLOW_CREDENTIALS"):
        Settings.from_env({"MCPGW_ALLOW_CREDENTIALS": "maybe"})


def test_host_check_follows_the_bind_address():
    assert Settings.from_env({"MCPGW_HOST": "0.0.0.0"}).edge_config().allowed_hosts == ["*"]
    assert Settings.from_env({"MCPGW_HOST": "::1"}).edge_config().allowed_hosts == ["localhost", "127.0.0.1", "[::1]"]
    explicit = Settings.from_env({"MCPGW_HOST": "0.0.0.0", "MCPGW_ALLOWED_HOSTS": "gw.example.com"})
    assert explicit.edge_config().allowed_hosts == ["gw.example.com"]


def test_serve_flags_mirror_the_environment():
    import httpx

    from conftest import Gateway

    gw = Gateway(
        {"MCPGW_EDGE": "wasm", "MCPGW_PORT": "1"},  # the flags below must win over the environment
        [
            "--edge",
            "python",
            "--port",
            "0",
            "--allowed-origins",
            "https://app.example",
            "--cors-max-age",
            "42",
            "--path-prefix",
            "/gw",
        ],
    )
    try:
        gw.wait_ready_at("/gw/health")
        assert httpx.get(gw.url + "/gw/health").json()["edge"]["backend"] == "python"
        pre = httpx.options(
            gw.url + "/gw/mcp", headers={"origin": "https://app.example", "access-control-request-method": "POST"}
        )
        assert pre.status_code == 204 and pre.headers["access-control-max-age"] == "42"
        assert (
            httpx.options(
                gw.url + "/gw/mcp", headers={"origin": "http://localhost:3000", "access-control-request-method": "POST"}
            ).status_code
            == 403
        )
    finally:
        gw.stop()


def test_bad_flag_values_are_refused_before_serving():
    from conftest import Gateway

    gw = Gateway({}, ["--port", "eighty"])
    try:
        assert gw.proc.wait(60) == 2
        assert "MCPGW_PORT" in gw.log()
    finally:
        gw.stop()


def test_session_cap_answers_503():
    import httpx

    from conftest import Gateway

    gw = Gateway({"MCPGW_EDGE": "python", "MCPGW_MAX_SESSIONS": "2"}).wait_ready()
    try:
        body = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "0"},
            },
        }
        h = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
        codes = [httpx.post(gw.url + "/mcp", json=body, headers=h).status_code for _ in range(3)]
        assert codes == [200, 200, 503]
    finally:
        gw.stop()


def test_the_edge_config_defaults_are_the_gateway_defaults():
    """EdgeConfig() (what tests and benchmarks use) is what the gateway runs with when nothing is
    set: one configuration, not two that can drift apart."""
    assert Settings().edge_config() == EdgeConfig()
    assert Settings.from_env({}).edge_config() == EdgeConfig()


def _defaults(target):
    return [
        name for name, p in inspect.signature(target).parameters.items() if p.default is not inspect.Parameter.empty
    ]


@pytest.mark.parametrize(
    "target, not_settings",
    [
        (EdgeMiddleware, []),
        (OutcomeCache, []),
        (load_edge, ["vectors_dir"]),  # where the self-test reads its vectors: not a setting
        (EdgeRegistry, ["vectors_dir"]),
        (verify_component, []),
        (WasmComponent, ["source"]),  # the label a component is logged under: not a setting
    ],
)
def test_edge_constructors_take_explicit_values_so_settings_hold_every_default(target, not_settings):
    assert _defaults(target) == not_settings
