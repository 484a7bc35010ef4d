"""One plugin component under wasmtime: compile, check imports against grants,
link only the granted host functions, and call it under fuel and memory limits.

The edge's wasm hosting is reused (`edge/wasm_core.py`): the same sandbox
engine, the same fast string-call path (`EncodedCall`) for `invoke-encoded`,
the same trap classification, and `ComponentLoadError` for a refused load.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import threading
import time
from typing import Any

import orjson
from wasmtime import WasmtimeError
from wasmtime import _ffi as ffi
from wasmtime.component import Component, Linker

from ..edge.wasm_core import (
    ComponentLoadError,
    EncodedCall,
    OutputTooLarge,
    _cause_line,
    _fast_path_problem,
    classify_trap,
    instantiate,
    sandbox_engine,
)
from ..logsafe import escape
from .manifest import HOOKS

EXPORT_INTERFACE = "mcpgw:plugin/plugin@1.0.0"
REQUIRED_EXPORTS = ("describe", "configure", "invoke", "invoke-encoded")
# The host interfaces a manifest may grant, by grant name; the version's major must match.
GRANT_INTERFACES = {"log": "mcpgw:plugin/log@1.", "clock": "mcpgw:plugin/clock@1."}
# Plugin log lines: at most this many a second per plugin, the rest counted and tallied.
LOG_LINES_PER_S = 10
LOG_MESSAGE_MAX = 1000

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class PluginFault(Exception):
    """A call the plugin could not answer: `kind` is fuel, panic, memory, other
    (traps), garbage (output that is not an action), oversized (output over the
    manifest's max_output_kb), configure (configure refused) or instantiate."""

    def __init__(self, kind: str, detail: str):
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


class LogSink:
    """The `log` grant: lines into logger `mcpgw.plugin.<name>`, rate-limited."""

    def __init__(self, name: str):
        self.name = name
        self.logger = logging.getLogger(f"mcpgw.plugin.{name}")
        self._window = 0.0
        self._lines = 0
        self.suppressed = 0
        self._lock = threading.Lock()

    def write(self, level: Any, message: Any) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._window >= 1.0:
                if self.suppressed:
                    self.logger.warning("plugin %s: %d log lines suppressed (rate limit)", self.name, self.suppressed)
                self._window, self._lines, self.suppressed = now, 0, 0
            if self._lines >= LOG_LINES_PER_S:
                self.suppressed += 1
                return
            self._lines += 1
        self.logger.log(
            _LEVELS.get(str(level), logging.INFO),
            "plugin %s: %s",
            self.name,
            escape(str(message), LOG_MESSAGE_MAX),
            extra={"plugin": self.name},
        )


def _now_ms() -> int:
    return time.monotonic_ns() // 1_000_000


class _U64Val(ctypes.Structure):
    """A `wasmtime_component_val_t` holding a u64 (kind, then the value at the union's offset)."""

    _fields_ = [("kind", ctypes.c_uint8), ("_pad", ctypes.c_uint8 * 7), ("value", ctypes.c_uint64)]


# `clock.now-ms` straight through the C API: wasmtime-py's generic host-function path (a function
# type object, a conversion per argument and result) cost about 8 µs per call, more than the rest of
# a rate-limit call. Arguments arrive as plain addresses; the one u64 result is written in place.
# Anything but (no argument, one result) is refused with an error (a trap), never written.
_U64 = ffi.WASMTIME_COMPONENT_U64.value
_CLOCK_FAST = ffi.wasmtime_component_val_t.of.offset == _U64Val.value.offset and ctypes.sizeof(
    _U64Val
) <= ctypes.sizeof(ffi.wasmtime_component_val_t)
_RAW_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_void_p,
    ctypes.c_void_p,
    ctypes.c_void_p,
    ctypes.c_void_p,
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_void_p,
    ctypes.c_size_t,
)


def _clock_now_ms(_env: Any, _context: Any, _ty: Any, _args: Any, nargs: int, results: Any, nresults: int) -> Any:
    if nargs != 0 or nresults != 1 or not results:
        err = ffi.wasmtime_error_new(b"clock.now-ms: unexpected signature")
        return ctypes.cast(err, ctypes.c_void_p).value
    slot = _U64Val.from_address(results)
    slot.kind = _U64
    slot.value = time.monotonic_ns() // 1_000_000
    return None


def _no_finalizer(_env: Any) -> None:
    return None


# The C callbacks (module-level: they must outlive every linker that refers to them).
_CLOCK_CALLBACK = ctypes.cast(_RAW_CALLBACK(_clock_now_ms), ffi.wasmtime_component_func_callback_t)
_NO_FINALIZER = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(_no_finalizer)


def _add_clock(instance: Any) -> None:
    """Define `now-ms` in the linker instance `mcpgw:plugin/clock@1.0.0`."""
    if not _CLOCK_FAST:
        instance.add_func("now-ms", lambda _store: _now_ms())
        return
    name = b"now-ms"
    err = ffi.wasmtime_component_linker_instance_add_func(
        instance.ptr(), ctypes.create_string_buffer(name), len(name), _CLOCK_CALLBACK, None, _NO_FINALIZER
    )
    if ctypes.cast(err, ctypes.c_void_p).value:
        raise WasmtimeError._from_ptr(err)


class PluginComponent:
    """A compiled plugin: its imports checked against its grants, a linker that
    defines only the granted functions. Instantiate it any number of times."""

    def __init__(
        self,
        wasm: bytes,
        *,
        name: str,
        grants: tuple[str, ...],
        fuel: int,
        fuel_per_kb: int = 0,
        memory_bytes: int,
        max_output_bytes: int,
        source: str = "<bytes>",
    ):
        self.name = name
        self.source = source
        self.sha256 = hashlib.sha256(wasm).hexdigest()
        self.size = len(wasm)
        self.grants = grants
        self.fuel = fuel
        self.fuel_per_kb = fuel_per_kb
        self.memory_bytes = memory_bytes
        self.max_output_bytes = max_output_bytes
        self.engine = sandbox_engine()
        try:
            self.component = Component(self.engine, wasm)
        except WasmtimeError as exc:
            raise ComponentLoadError("corrupt", f"{source} is not a valid component: {_cause_line(exc)}") from None
        granted = tuple(GRANT_INTERFACES[g] for g in grants)
        refused = [i for i in sorted(self.component.type.imports(self.engine)) if not i.startswith(granted or ("\0",))]
        if refused:
            wanted = sorted({g for g, p in GRANT_INTERFACES.items() for i in refused if i.startswith(p)})
            hint = (
                f"add {', '.join(map(repr, wanted))} to grants" if wanted else "a plugin may import only log and clock"
            )
            shown = ", ".join(refused[:8]) + (f" and {len(refused) - 8} more" if len(refused) > 8 else "")
            raise ComponentLoadError("import-not-granted", f"plugin imports {shown}, which is not granted ({hint})")
        self.log = LogSink(name)
        self.linker = Linker(self.engine)
        with self.linker.root() as root:
            if "log" in grants:
                with root.add_instance("mcpgw:plugin/log@1.0.0") as log_iface:
                    log_iface.add_func("write", lambda _store, level, message: self.log.write(level, message))
            if "clock" in grants:
                with root.add_instance("mcpgw:plugin/clock@1.0.0") as clock_iface:
                    _add_clock(clock_iface)
        self.call_path = "public" if _fast_path_problem() else "fast"
        probe = PluginInstance(self)
        self.info = probe.describe()

    def instantiate(self, config_json: str) -> PluginInstance:
        inst = PluginInstance(self)
        inst.configure(config_json)
        return inst


class PluginInstance:
    """One store and instance. One caller at a time (the pool hands it out)."""

    def __init__(self, component: PluginComponent):
        self.component = component
        store, funcs = instantiate(
            component.engine,
            component.linker,
            component.component,
            component.memory_bytes,
            component.fuel,
            EXPORT_INTERFACE,
            REQUIRED_EXPORTS,
            _cause_line,
        )
        self.store = store
        self.funcs = funcs
        self._encoded = EncodedCall(store, funcs["invoke-encoded"]) if component.call_path == "fast" else None

    def _call(self, name: str, *args: Any, fuel: int = 0) -> Any:
        self.store.set_fuel(fuel or self.component.fuel)
        try:
            return self.funcs[name](self.store, *args)
        except WasmtimeError as exc:
            raise PluginFault(classify_trap(str(exc)), _cause_line(exc)) from None

    def describe(self) -> dict[str, Any]:
        info = self._call("describe")
        hooks = [str(h) for h in info.hooks]
        unknown = [h for h in hooks if h not in HOOKS]
        if unknown:
            raise ComponentLoadError("contract-mismatch", f"describe() names unknown hooks {unknown}")
        return {"name": str(info.name), "version": str(info.version), "hooks": hooks}

    def configure(self, config_json: str) -> None:
        err = self._call("configure", config_json)
        if err is not None:  # result<_, string> lifts untagged: None or the error text
            raise PluginFault("configure", f"configure refused: {escape(str(err), 300)}")

    def invoke_typed(self, ctx: dict[str, Any], payload: str) -> Any:
        """Typed `invoke` (measurement and parity tests; the request path uses invoke-encoded)."""
        return self._call("invoke", _Record(ctx), payload)

    def budget(self, data: bytes) -> tuple[int, int]:
        """(fuel, largest answer in bytes) for a call with this input: `fuel` plus `fuel_per_kb` per
        started KiB of the input, and `max_output_kb` plus the input's own size (a plugin that
        rewrites a large result answers about as much as it got)."""
        c = self.component
        return c.fuel + c.fuel_per_kb * ((len(data) + 1023) >> 10), c.max_output_bytes + len(data)

    def invoke_encoded(self, data: bytes) -> bytes:
        """One encoded call: raises PluginFault on a trap or an oversized output."""
        c = self.component  # self.budget(data), inline: this runs on every hook call
        fuel, max_output = c.fuel + c.fuel_per_kb * ((len(data) + 1023) >> 10), c.max_output_bytes + len(data)
        if self._encoded is not None:
            try:
                out = self._encoded(data, fuel, max_output)
            except WasmtimeError as exc:
                raise PluginFault(classify_trap(str(exc)), _cause_line(exc)) from None
            except OutputTooLarge as exc:
                raise PluginFault("oversized", f"output of {exc.args[0]} bytes over {max_output}") from None
            return out
        out = str(self._call("invoke-encoded", data.decode(), fuel=fuel)).encode()
        if len(out) > max_output:
            raise PluginFault("oversized", f"output of {len(out)} bytes over {max_output}")
        return out


class _Record:
    """Attribute access over a dict, as wasmtime-py's record lowering wants (kebab keys)."""

    def __init__(self, data: dict[str, Any]):
        self._data = data

    def __getattr__(self, name: str) -> Any:
        try:
            return self._data[name]
        except KeyError:
            raise AttributeError(name) from None


CONTINUE = b'{"continue":null}'  # what the SDK answers when nothing changes: no parse needed
CONTINUED = ("continue", None)


def parse_action(out: bytes) -> tuple[str, Any]:
    """`{"continue": null}` | `{"modify": <json>}` | `{"deny": {"code": int, "message": str}}`."""
    if out == CONTINUE:
        return CONTINUED
    try:
        action = orjson.loads(out)
    except orjson.JSONDecodeError:
        raise PluginFault("garbage", "output is not JSON") from None
    if not isinstance(action, dict) or len(action) != 1:
        raise PluginFault("garbage", "output is not one of continue, modify, deny")
    ((kind, value),) = action.items()
    if kind == "continue":
        return "continue", None
    if kind == "modify":
        if not isinstance(value, dict):
            raise PluginFault("garbage", "modify must carry a JSON object")
        return "modify", value
    if kind == "deny":
        if (
            not isinstance(value, dict)
            or not isinstance(value.get("code"), int)
            or isinstance(value.get("code"), bool)
            or not isinstance(value.get("message"), str)
        ):
            raise PluginFault("garbage", "deny must carry an integer code and a string message")
        return "deny", value
    raise PluginFault("garbage", f"unknown action {escape(kind, 40)!r}")


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)
