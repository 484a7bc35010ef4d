"""Hostile code: an edge component loaded at start-up or through the admin API can neither
leak nor lie. The hostile variant (guest feature `hostile`) passes every vector, harvests
what crosses across requests, and on paths of its own answers what the contract forbids;
a WAT-built component has the right export names with the wrong types. Each is refused
when it is verified or contained when it runs: never reaching a client."""

from __future__ import annotations

import base64
import hashlib
import logging
import shutil
import subprocess
import sys
import time

import httpx
import orjson
import pytest
import wasmtime
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from conftest import VARIANTS_DIR, Gateway, require_file
from mcpgw.edge.backend import load_edge
from mcpgw.edge.contract import EdgeConfig
from mcpgw.edge.python_core import PythonCore
from mcpgw.edge.registry import EdgeRegistry, SwapRefused
from mcpgw.logsafe import escape
from mcpgw.settings import Settings

TOKEN = "test-admin-token-hostile-0123456789"
AUTH = {"authorization": f"Bearer {TOKEN}"}
CFG = EdgeConfig()
DEFAULTS = Settings()
LIMITS = {
    "fuel": DEFAULTS.edge_fuel,
    "memory_bytes": DEFAULTS.edge_memory_mb * 1024 * 1024,
    "allowed_sha256": frozenset(),
}
TRICKS = ("leak", "leak-vary", "cookie", "crlf", "shape", "status")
ORIGIN = "http://localhost:3000"
SECRET_SESSION = "secret-session-3f1c2b9e7a4d"
SECRET_EVENT = "secret-event-42"
SECRET_QUERY = "session_id=secret-legacy-9b2a"

# Right export names, wrong types: every function is `func() -> u32`.
WRONG_TYPES_WAT = """(component
  (core module $m (func (export "f") (result i32) i32.const 7))
  (core instance $i (instantiate $m))
  (func $f (result u32) (canon lift (core func $i "f")))
  (instance $t
    (export "version" (func $f)) (export "configure" (func $f)) (export "evaluate" (func $f))
    (export "configure-encoded" (func $f)) (export "evaluate-encoded" (func $f)))
  (export "mcpgw:edge/transport@1.0.0" (instance $t)))"""


@pytest.fixture(scope="module")
def hostile_path():
    return require_file(VARIANTS_DIR / "transport_core_hostile.wasm", "run `make variants`")


@pytest.fixture(scope="module")
def wrong_types_wasm() -> bytes:
    return bytes(wasmtime.wat2wasm(WRONG_TYPES_WAT))


def _python(head):
    core = PythonCore()
    core.configure(CFG)
    return core.evaluate(*head)


def _trick_head(trick: str):
    return ("GET", f"/servers/hostile.{trick}/mcp", "", [("host", "127.0.0.1:4444"), ("origin", ORIGIN)])


# --- in process: the host's checks on the component's every answer -------------------


def test_secrets_never_cross_and_the_real_values_come_back(hostile_path):
    edge = load_edge("wasm", CFG, hostile_path, **LIMITS)
    core = edge.backend
    headers = [
        (b"host", b"127.0.0.1:4444"),
        (b"mcp-session-id", SECRET_SESSION.encode()),
        (b"last-event-id", SECRET_EVENT.encode()),
    ]
    out = core.evaluate_raw("GET", b"/mcp", SECRET_QUERY.encode(), headers)
    # What the gateway gets is the real request, as the contract says...
    assert out["forward"]["session_id"] == SECRET_SESSION and out["forward"]["session_state"] == "valid"
    assert out["forward"]["last_event_id"] == SECRET_EVENT
    invalid = core.evaluate_raw("GET", b"/mcp", b"", [(b"mcp-session-id", b"bad id")])
    assert invalid["forward"]["session_state"] == "invalid" and invalid["forward"]["session_id"] is None
    # ...but all the component ever saw were stand-ins: ask it what it harvested.
    dump = orjson.dumps(["GET", "/__mcpgw_hostile/dump", "", []])
    harvest = orjson.loads(core._instance().evaluate_encoded(dump))["harvest"]
    # The valid session id's stand-in; the invalid one crosses as "", and Last-Event-ID (only passed
    # through) does not cross at all in the compact encoding that serves.
    assert harvest.split() == ["s"], harvest
    for secret in (SECRET_SESSION, SECRET_EVENT, "secret-legacy"):
        assert secret not in harvest
    assert core.traps.total == 0


@pytest.mark.parametrize("via", ["evaluate", "evaluate_raw"])
@pytest.mark.parametrize("encoding", ["compact", "json"])
@pytest.mark.parametrize("trick", TRICKS)
def test_each_lie_is_an_invalid_output_trap_answered_by_python(hostile_path, trick, encoding, via, caplog):
    """In the compact encoding that serves and in the JSON one (components without the compact export);
    through `evaluate` and through `evaluate_raw` (ASGI bytes: the compact byte path, what serves)."""
    core = load_edge("wasm", CFG, hostile_path, **LIMITS).backend
    assert core.encoding == "compact"
    core.encoding = encoding
    head = _trick_head(trick)
    with caplog.at_level(logging.WARNING, logger="mcpgw.edge"):
        if via == "evaluate":
            out = core.evaluate(*head)
        else:
            method, path, query, headers = head
            raw = [(n.encode(), v.encode()) for n, v in headers]
            out = core.evaluate_raw(method, path.encode(), query.encode(), raw)
    assert out == _python(head)
    assert core.traps.by_kind["invalid-output"] == 1 and core.traps.total == 1
    assert any("invalid-output" in r.getMessage() for r in caplog.records)
    assert all("\r" not in r.getMessage() and "\n" not in r.getMessage() for r in caplog.records)


def test_invalid_output_feeds_automatic_rollback(component_path, hostile_path):
    rollback = {"rollback_traps": 3, "rollback_window_s": 60}
    registry = EdgeRegistry(load_edge("wasm", CFG, component_path, **LIMITS), CFG, **LIMITS, **rollback)
    good = registry.edge.backend
    registry.activate(registry.verify_file(hostile_path), "test")  # it passes every vector
    hostile = registry.edge.backend
    for trick in TRICKS[:3]:
        assert registry.edge.evaluate(*_trick_head(trick)) == _python(_trick_head(trick))
    assert hostile.traps.by_kind["invalid-output"] == 3
    assert registry.edge.backend is good
    assert registry.events[-1]["actor"] == "auto-rollback"


def test_right_names_wrong_types_is_refused_by_name(component_path, wrong_types_wasm):
    rollback = {"rollback_traps": 3, "rollback_window_s": 60}
    registry = EdgeRegistry(load_edge("wasm", CFG, component_path, **LIMITS), CFG, **LIMITS, **rollback)
    with pytest.raises(SwapRefused) as refused:
        registry.verify(wrong_types_wasm, "wrong-types")
    assert refused.value.step == "contract"
    assert "export 'version' has type func()->u32" in refused.value.detail


def test_escape_keeps_a_log_line_one_line():
    assert escape("a\r\nINFO mcpgw: forged\x00é") == "a\\r\\nINFO mcpgw: forged\\x00\\xe9"
    assert escape("x" * 500, 10) == "x" * 10 + "..."


# --- real gateway processes ----------------------------------------------------------


def _client_session(gw: Gateway) -> str:
    """A 2025-11-25 session opened with the gateway: its id is what the component must never see."""
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    r = httpx.post(gw.url + "/mcp", json=init, headers=headers)
    assert r.status_code == 200, r.text
    return r.headers["mcp-session-id"]


def _assert_contained(gw: Gateway, session: str) -> None:
    """Every trick answered as the Python edge would: no header the edge may not set, no
    CR LF, the contract's Vary, nothing harvested; a legitimate request still works."""
    for trick in TRICKS:
        r = httpx.get(
            gw.url + f"/servers/hostile.{trick}/mcp",
            headers={"origin": ORIGIN, "mcp-session-id": session, "last-event-id": SECRET_EVENT},
        )
        assert r.status_code == 404 and r.json()["error"]["message"] == "Unknown server: hostile." + trick, trick
        names = [n.lower() for n in r.headers]
        assert "set-cookie" not in names and "x-mcpgw-harvest" not in names and "x-injected" not in names
        assert r.headers.get_list("vary") == ["Origin"], r.headers
        assert r.headers["access-control-allow-origin"] == ORIGIN
        for value in r.headers.values():
            assert session not in value and " s" not in value
    ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
    headers = {
        "accept": "application/json, text/event-stream",
        "content-type": "application/json",
        "mcp-session-id": session,
        "mcp-protocol-version": "2025-11-25",
    }
    assert httpx.post(gw.url + "/mcp", json=ping, headers=headers).json()["result"] == {}


def test_started_with_the_hostile_component_nothing_reaches_a_client(hostile_path):
    gw = Gateway({"MCPGW_EDGE": "wasm", "MCPGW_EDGE_COMPONENT": str(hostile_path)}).wait_ready()
    try:
        session = _client_session(gw)
        _assert_contained(gw, session)
        edge = httpx.get(gw.url + "/health").json()["edge"]
        assert edge["backend"] == "wasm" and edge["traps"]["invalid-output"] == len(TRICKS)
        assert "path" not in edge["component"]
    finally:
        gw.stop()


def test_swapped_in_through_the_admin_api_it_is_contained_then_rolled_back(component_path, hostile_path):
    gw = Gateway({"MCPGW_ADMIN_TOKEN": TOKEN, "MCPGW_EDGE_ROLLBACK_TRAPS": str(len(TRICKS) + 1)}).wait_ready()
    try:
        session = _client_session(gw)
        forged = "x.wasm\nWARNING mcpgw.admin: admin swap by 10.9.9.9: forged"
        r = httpx.post(
            gw.url + "/admin/edge/swap", params={"name": forged}, content=hostile_path.read_bytes(), headers=AUTH
        )
        assert r.status_code == 200, r.text
        edge = httpx.get(gw.url + "/health").json()["edge"]
        public = orjson.dumps(edge).decode()
        # /health names the version and since when, not who swapped it in, from where, or file paths.
        assert edge["component"]["sha256"] == hashlib.sha256(hostile_path.read_bytes()).hexdigest()
        assert edge["since"] > 0 and edge["reason"] == "swapped in through the admin API"
        for private in ("127.0.0.1", "admin upload", "x.wasm", str(component_path), '"path"', '"source"'):
            assert private not in public, private
        _assert_contained(gw, session)
        assert httpx.get(gw.url + "/health").json()["edge"]["traps"]["invalid-output"] == len(TRICKS)
        # One more lie and the rollback threshold is reached.
        httpx.get(gw.url + "/servers/hostile.cookie/mcp", headers={"origin": ORIGIN})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status = httpx.get(gw.url + "/admin/edge/status", headers=AUTH).json()
            if status["events"][-1]["action"] == "rollback":
                break
            time.sleep(0.1)
        assert status["events"][-1]["actor"] == "auto-rollback", status
        assert status["active"]["sha256"] != hashlib.sha256(hostile_path.read_bytes()).hexdigest()
        log = gw.log()
        assert "rolling back automatically" in log
        # The name was logged escaped, inside the real line: no forged line of its own.
        assert not any(line.startswith("WARNING mcpgw.admin: admin swap by 10.9.9.9") for line in log.splitlines())
        assert "x.wasm\\nWARNING mcpgw.admin" in log
    finally:
        gw.stop()


def test_wat_text_and_wrong_types_are_refused_by_name_with_an_audit_line(wrong_types_wasm):
    gw = Gateway({"MCPGW_ADMIN_TOKEN": TOKEN}).wait_ready()
    try:
        wat = "(component (core module $m (func $f SECRET_WAT_TEXT)))"
        r = httpx.post(gw.url + "/admin/edge/verify", params={"name": "t.wat"}, content=wat, headers=AUTH)
        assert r.status_code == 422 and r.json()["step"] == "compile"
        assert "binary format only" in r.json()["detail"] and "SECRET_WAT_TEXT" not in r.text
        r = httpx.post(gw.url + "/admin/edge/swap", params={"name": "w.wasm"}, content=wrong_types_wasm, headers=AUTH)
        assert r.status_code == 422 and r.json()["step"] == "contract", r.text
        assert "export 'version' has type func()->u32" in r.json()["detail"]
        assert httpx.get(gw.url + "/health").json()["edge"]["component"]["version"] == "1.0.0"
        log = gw.log()
        assert "SECRET_WAT_TEXT" not in log
        sha = hashlib.sha256(wrong_types_wasm).hexdigest()
        assert "admin swap by 127.0.0.1" in log and f"sha256 {sha} refused at step contract" in log
    finally:
        gw.stop()


def test_at_start_up_wrong_types_refuse_to_serve(tmp_path, wrong_types_wasm):
    bad = tmp_path / "wrong-types.wasm"
    bad.write_bytes(wrong_types_wasm)
    gw = Gateway({"MCPGW_EDGE": "wasm", "MCPGW_EDGE_COMPONENT": str(bad)})
    try:
        assert gw.proc.wait(60) == 1
        assert "contract-mismatch: export 'version' has type func()->u32" in gw.log()
    finally:
        gw.stop()


# --- signatures ----------------------------------------------------------------------


def _keypair():
    private = Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return private, base64.b64encode(public).decode()


def test_signed_components_only_when_signing_keys_are_set(component_path, v2_component_path, tmp_path):
    private, public = _keypair()
    other, _ = _keypair()
    signed = tmp_path / "transport_core.wasm"
    shutil.copyfile(component_path, signed)
    env = {"MCPGW_EDGE": "wasm", "MCPGW_EDGE_COMPONENT": str(signed), "MCPGW_EDGE_SIGNING_KEYS": public}

    # At start-up: no <component>.sig, no edge.
    unsigned = Gateway(env)
    try:
        assert unsigned.proc.wait(60) == 1
        assert "signature: unsigned" in unsigned.log()
    finally:
        unsigned.stop()

    (tmp_path / "transport_core.wasm.sig").write_text(base64.b64encode(private.sign(signed.read_bytes())).decode())
    gw = Gateway({**env, "MCPGW_ADMIN_TOKEN": TOKEN}).wait_ready()
    try:
        assert httpx.get(gw.url + "/health").json()["edge"]["verification"]["signing_keys"] == 1
        v2 = v2_component_path.read_bytes()
        url = gw.url + "/admin/edge/swap"
        r = httpx.post(url, content=v2, headers=AUTH)
        assert r.status_code == 422 and r.json()["step"] == "signature" and "unsigned" in r.json()["detail"]
        bad = base64.urlsafe_b64encode(other.sign(v2)).decode()
        r = httpx.post(url, params={"signature": bad}, content=v2, headers=AUTH)
        assert r.status_code == 422 and r.json()["step"] == "signature" and "does not verify" in r.json()["detail"]
        r = httpx.post(url, params={"signature": "not base64!"}, content=v2, headers=AUTH)
        assert r.status_code == 422 and r.json()["step"] == "signature"
        good = base64.urlsafe_b64encode(private.sign(v2)).decode()
        r = httpx.post(url, params={"signature": good}, content=v2, headers=AUTH)
        assert r.status_code == 200, r.text
        assert httpx.get(gw.url + "/health").json()["edge"]["component"]["version"] == "1.0.1-test"

        # The CLI passes a signature too: --signature FILE, or FILE.sig next to the component.
        def core(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "mcpgw.cli", "core", "--url", gw.url, "--token", TOKEN, *args],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )

        upload = tmp_path / "v2" / "transport_core.wasm"
        upload.parent.mkdir()
        upload.write_bytes(v2)
        sigs = {"good": good, "bad": bad, "junk": "not base64!"}
        for name, text in sigs.items():
            (tmp_path / f"{name}.sig").write_text(text + "\n")
        unsigned = core("verify", str(upload))
        assert unsigned.returncode == 1 and '"step": "signature"' in unsigned.stdout and "unsigned" in unsigned.stdout
        wrong = core("verify", str(upload), "--signature", str(tmp_path / "bad.sig"))
        assert wrong.returncode == 1 and "does not verify" in wrong.stdout
        junk = core("verify", str(upload), "--signature", str(tmp_path / "junk.sig"))
        assert junk.returncode == 2 and "is not a signature" in junk.stderr  # refused before any upload
        missing = core("verify", str(upload), "--signature", str(tmp_path / "none.sig"))
        assert missing.returncode == 2 and "no such file" in missing.stderr
        verified = core("verify", str(upload), "--signature", str(tmp_path / "good.sig"))
        assert verified.returncode == 0 and '"verified": true' in verified.stdout, verified.stdout
        assert core("rollback").returncode == 0
        assert httpx.get(gw.url + "/health").json()["edge"]["component"]["version"] != "1.0.1-test"
        shutil.copyfile(tmp_path / "good.sig", upload.with_name("transport_core.wasm.sig"))
        swapped = core("swap", str(upload))
        assert swapped.returncode == 0, swapped.stdout + swapped.stderr
        assert f"sending the signature {upload}.sig" in swapped.stderr
        assert httpx.get(gw.url + "/health").json()["edge"]["component"]["version"] == "1.0.1-test"
    finally:
        gw.stop()


def test_an_unreadable_signing_key_is_a_setting_error():
    r = subprocess.run(
        [sys.executable, "-m", "mcpgw.cli", "serve"],
        env={"MCPGW_EDGE_SIGNING_KEYS": "not-a-key", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 2 and "MCPGW_EDGE_SIGNING_KEYS: entry 1" in r.stderr
