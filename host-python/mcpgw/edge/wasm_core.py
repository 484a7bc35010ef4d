"""The edge contract as a sandboxed WebAssembly component, hosted by wasmtime-py.

Three layers:
- `WasmComponent`: one compiled `.wasm` (engine, component, linker, sha256, version).
- `WasmInstance`: one store + instance, with the fast call path for
  `evaluate-encoded`.
- `WasmCore`: the backend the gateway uses: a configured component, one
  instance, and trap recovery (discard the instance, answer that request with
  the Python fallback, count it, log it).

Nothing is granted: the contract's world (`wit/transport.wit`) imports nothing,
the component is checked to import nothing, and it is instantiated with an
empty linker (no WASI: no clocks, random, stdio, env, files or sockets).

Why a hand-rolled call path: wasmtime-py's generic `Func.__call__` re-reads the
function type and converts values through Python objects on every call (about
20-30 us for one string in and out). `evaluate-encoded` takes and returns one
string, so the call is done straight through the C API with preallocated
argument and result slots. That path depends on the C value layout of the
wasmtime-py build; when a build does not match, the component is called through
wasmtime-py's public API instead (slower, still the component, with a warning).
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from wasmtime import Config, Engine, Store, WasmtimeError
from wasmtime import _bindings as capi  # the raw ctypes functions, without wrappers
from wasmtime import _ffi as ffi
from wasmtime.component import Component, Func, Linker

from ..logsafe import escape
from .compact import CompactCodec, lookup, lookup_raw, reads_packed
from .contract import CONTRACT_VERSION, EdgeConfig, EdgeError, ErrorKind, Header, encode_head
from .python_core import CONTRACT_HEADERS, PythonCore
from .validate import (
    InvalidOutput,
    OutcomeGuard,
    binary_problem,
    export_type_problem,
    redact,
    redact_raw,
    restore,
    version_problem,
)

log = logging.getLogger("mcpgw.edge")

# Fuel per call is linear in the head: the rules are linear (measured at 5-200
# instructions per input byte, JSON included), so a legal large head never runs
# out, while a loop or a superlinear bug still traps. A 12-header head uses ~60k.
DEFAULT_FUEL = 5_000_000
FUEL_PER_BYTE = 400
REBUILD_BACKOFF_S = 5.0
TRAP_LOG_INTERVAL_S = 1.0

_EXPORT_INTERFACE = "mcpgw:edge/transport@1.0.0"
_CONTRACT_NAMES = frozenset(CONTRACT_HEADERS.values())
_REQUIRED_EXPORTS = ("version", "configure", "evaluate", "configure-encoded", "evaluate-encoded")
# Called per request when the component has it (docs/edge-contract.md section 16); else
# `evaluate-encoded` serves.
_COMPACT_EXPORT = "evaluate-compact"


class ComponentLoadError(Exception):
    """The component cannot serve: `reason` says why, for logs and /health."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def classify_trap(message: str) -> str:
    """Bucket a trap message for counting (fuel, panic, memory, other).

    A guest that cannot allocate aborts through `unreachable`, so running out of
    memory inside the guest counts as "panic"; "memory" is an out-of-bounds
    access or a refused memory growth reported by the engine. (Fuel is the only
    interruption configured: no epochs, so no deadline traps.)"""
    text = message.lower()
    if "fuel" in text:
        return "fuel"
    if "unreachable" in text:
        return "panic"
    if "memory" in text or "out of bounds" in text or "alloc" in text:
        return "memory"
    return "other"


def _cause_line(cause: Any) -> str:
    """The informative line of a wasmtime error (the last one: 'wasm trap: ...')."""
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    # Escaped: a trap message can carry the component's own names (its name section).
    return escape(lines[-1] if lines else repr(cause), 300)


def contract_compatible(offered: str, spoken: str = CONTRACT_VERSION) -> bool:
    """Same major version, and at least the minor version the host speaks."""
    try:
        o_major, o_minor = (int(x) for x in offered.split(".")[:2])
        s_major, s_minor = (int(x) for x in spoken.split(".")[:2])
    except ValueError:
        return False
    return o_major == s_major and o_minor >= s_minor


def sandbox_engine() -> Engine:
    """An engine for sandboxed components (the edge, plugins): fuel metering on."""
    config = Config()
    config.consume_fuel = True
    # The contracts have no async functions; without the component-model
    # concurrency machinery each call does less bookkeeping (measured with
    # callgrind: 5.7% fewer instructions per call). Not wrapped by
    # wasmtime-py, so set through the C API when it has it.
    set_concurrency = getattr(capi, "wasmtime_config_concurrency_support_set", None)
    if set_concurrency is not None:
        set_concurrency(config.ptr(), False)
    return Engine(config)


class WasmComponent:
    """A compiled component, ready to instantiate in any number of stores."""

    def __init__(
        self,
        wasm: bytes,
        *,
        fuel: int,
        memory_bytes: int,
        source: str = "<bytes>",
    ):
        self.source = source
        self.sha256 = hashlib.sha256(wasm).hexdigest()
        self.size = len(wasm)
        self.fuel = fuel
        self.memory_bytes = memory_bytes
        self.engine = sandbox_engine()
        try:
            self.component = Component(self.engine, wasm)
        except WasmtimeError as exc:
            why = escape(exc, 300)  # a parse error quotes what it parsed
            raise ComponentLoadError("corrupt", f"{escape(source)} is not a valid component: {why}") from None
        # The contract's world imports nothing, so a component that imports
        # anything (WASI included) is not built for it: refused by name here,
        # rather than by a linker error at instantiation.
        imports = sorted(self.component.type.imports(self.engine))
        if imports:
            raise ComponentLoadError(
                "contract-mismatch", f"component imports {', '.join(imports)}; the edge grants nothing"
            )
        # Right names, wrong types: refused by name here, not by a failing call below.
        if (problem := export_type_problem(self.component, self.engine, _EXPORT_INTERFACE)) is not None:
            raise ComponentLoadError("contract-mismatch", problem)
        self.linker = Linker(self.engine)  # empty on purpose: nothing is linked, nothing granted
        problem = _fast_path_problem()
        self.call_path = "public" if problem else "fast"
        if problem:
            log.warning(
                "edge component %s: %s; calling it through wasmtime-py's public API instead (slower, still wasm)",
                source,
                problem,
            )
        probe = self.instantiate()  # also checks the exports
        # The encoding requests cross in (docs/edge-contract.md sections 14 and 16).
        self.encoding = "compact" if probe.has_compact else "json"
        self.version = probe.version()
        if (problem := version_problem(self.version)) is not None:
            raise ComponentLoadError("contract-mismatch", problem)
        if not contract_compatible(self.version["contract"]):
            raise ComponentLoadError(
                "contract-mismatch",
                f"component speaks contract {self.version['contract']}, gateway speaks {CONTRACT_VERSION}",
            )

    @classmethod
    def from_file(cls, path: str | Path, **limits: Any) -> WasmComponent:
        return cls(read_component(path), source=str(path), **limits)

    def instantiate(self) -> WasmInstance:
        return WasmInstance(self)


def read_component(path: str | Path) -> bytes:
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ComponentLoadError("missing", f"component file {path} does not exist") from None
    except OSError as exc:
        raise ComponentLoadError("unreadable", f"cannot read {path}: {exc}") from None


def verify_component(
    wasm: bytes,
    source: str,
    cases: list[Any],
    *,
    allowed_sha256: frozenset[str],
    fuel: int,
    memory_bytes: int,
) -> tuple[WasmComponent, str]:
    """Every check a component passes before it may serve: sha256 allowlist,
    compile, exports and contract version, then every vector under the sandbox
    limits. Returns the compiled component and the self-test summary; raises
    ComponentLoadError naming the failed check."""
    from .vectors import self_test

    if (problem := binary_problem(wasm)) is not None:  # before compiling: never WAT text
        raise ComponentLoadError(*problem)
    sha = hashlib.sha256(wasm).hexdigest()
    if allowed_sha256 and sha not in allowed_sha256:
        raise ComponentLoadError("not-allowed", f"sha256 {sha} is not in MCPGW_EDGE_ALLOWED_SHA256")
    component = WasmComponent(wasm, source=source, fuel=fuel, memory_bytes=memory_bytes)
    probe = component.instantiate()
    try:
        compact = probe.evaluate_compact if probe.has_compact else None
        report = self_test(probe.configure_encoded_text, probe.evaluate_encoded, cases, compact)
    except Exception as exc:  # noqa: BLE001 - a trap (any wasmtime error) during the self-test fails it
        raise ComponentLoadError("self-test-failed", f"{type(exc).__name__}: {_cause_line(exc)}") from None
    if not report.passed:
        raise ComponentLoadError("self-test-failed", report.summary())
    return component, report.summary()


def instantiate(
    engine: Engine,
    linker: Linker,
    component: Component,
    memory_bytes: int,
    fuel: int,
    interface: str,
    exports: Iterable[str],
    cause: Callable[[WasmtimeError], str],
    optional: Iterable[str] = (),
) -> tuple[Store, dict[str, Func]]:
    """A fresh store with its limits and fuel, the component instantiated in it, and the named
    functions of `interface` (those in `optional` only when exported); ComponentLoadError
    (instantiate-failed, contract-mismatch) otherwise. The edge and plugins instantiate through
    this one path."""
    store = Store(engine)
    store.set_limits(memory_size=memory_bytes)
    store.set_fuel(fuel)
    try:
        instance = linker.instantiate(store, component)
    except WasmtimeError as exc:
        raise ComponentLoadError("instantiate-failed", cause(exc)) from None
    iface = instance.get_export_index(store, interface)
    if iface is None:
        raise ComponentLoadError("contract-mismatch", f"component does not export {interface}")
    funcs = {}
    for name in exports:
        index = instance.get_export_index(store, name, iface)
        func = instance.get_func(store, index) if index is not None else None
        if func is None:
            raise ComponentLoadError("contract-mismatch", f"component lacks export {name!r}")
        funcs[name] = func
    for name in optional:
        index = instance.get_export_index(store, name, iface)
        func = instance.get_func(store, index) if index is not None else None
        if func is not None:
            funcs[name] = func
    return store, funcs


class WasmInstance:
    """One store and instance. Not thread-safe: one caller at a time (WasmCore holds a lock)."""

    def __init__(self, component: WasmComponent):
        self.component = component
        self._fuel = component.fuel
        # No WASI context: the component has no imports to use one.
        store, funcs = instantiate(
            component.engine,
            component.linker,
            component.component,
            component.memory_bytes,
            self._fuel,
            _EXPORT_INTERFACE,
            _REQUIRED_EXPORTS,
            str,
            (_COMPACT_EXPORT,),
        )
        self.store = store
        self.funcs = funcs
        self.has_compact = _COMPACT_EXPORT in funcs
        if component.call_path != "fast":
            self.evaluate_encoded = self.evaluate_encoded_public  # type: ignore[method-assign]
            self.evaluate_compact = self.evaluate_compact_public  # type: ignore[method-assign]
            return

        self._encoded = EncodedCall(store, funcs["evaluate-encoded"], self._fuel, FUEL_PER_BYTE)
        self.evaluate_encoded = self._encoded.call  # type: ignore[method-assign,assignment]
        if self.has_compact:
            self._compact = EncodedCall(store, funcs[_COMPACT_EXPORT], self._fuel, FUEL_PER_BYTE)
            self.evaluate_compact = self._compact.call  # type: ignore[method-assign,assignment]

    def bound_compact(self, max_size: int) -> None:
        """Refuse a compact answer longer than `max_size` bytes before it is copied out of the
        store (OutputTooLarge; the fast path only: the public one copies every answer)."""
        if self.has_compact and self.component.call_path == "fast":
            self._compact.max_size = max_size

    # --- slow, generic calls (start-up, tests) -------------------------------

    def _call(self, name: str, *args: Any) -> Any:
        self.store.set_fuel(self._fuel)
        return self.funcs[name](self.store, *args)

    def version(self) -> dict[str, str]:
        info = self._call("version")
        return {"component": info.component, "contract": info.contract}

    def configure_encoded_text(self, text: str) -> str:
        """The export as it is: `""` on success, else the JSON-encoded error."""
        out: str = self._call("configure-encoded", text)
        return out

    def configure_encoded(self, text: str) -> None:
        out = self.configure_encoded_text(text)
        if out:
            err = orjson.loads(out)["error"]
            raise EdgeError(err["kind"], err.get("message", ""))

    def configure(self, cfg: EdgeConfig) -> None:
        """Typed `configure` (the record path; slow, used by parity tests)."""
        record = {name.replace("_", "-"): value for name, value in cfg.__dict__.items()}
        result = self._call("configure", _Attrs(record))
        # wasmtime-py lifts `result<_, edge-error>` untagged: None, or the error variant.
        if result is not None:
            raise EdgeError(*_typed_error(result))

    def evaluate_typed(self, method: str, path: str, query: str, headers: Iterable[Header]) -> dict[str, Any]:
        """Typed `evaluate`, converted to the encoded outcome shape (parity tests)."""
        head = _Attrs({"method": method, "path": path, "query": query, "headers": [tuple(h) for h in headers]})
        result = self._call("evaluate", head)
        return typed_outcome_to_dict(result)

    def evaluate_encoded_public(self, head: bytes) -> bytes:
        """`evaluate-encoded` through wasmtime-py's public API: what serves when
        the fast path does not fit this wasmtime-py build. Same fuel, same result."""
        self.store.set_fuel(self._fuel + FUEL_PER_BYTE * len(head))
        out: str = self.funcs["evaluate-encoded"](self.store, head.decode())
        return out.encode()

    def evaluate_compact_public(self, head: bytes) -> bytes:
        """`evaluate-compact` through wasmtime-py's public API (see `evaluate_encoded_public`)."""
        self.store.set_fuel(self._fuel + FUEL_PER_BYTE * len(head))
        out: str = self.funcs[_COMPACT_EXPORT](self.store, head.decode())
        return out.encode()

    # --- the hot path ----------------------------------------------------------

    def evaluate_encoded(self, head: bytes) -> bytes:
        """One encoded head in, one encoded outcome out. Raises WasmtimeError on a trap."""
        return self._encoded(head, self._fuel + FUEL_PER_BYTE * len(head))

    def evaluate_compact(self, head: bytes) -> bytes:
        """One compact head in, the component's compact decisions out (section 16; only when
        `has_compact`). Raises WasmtimeError on a trap."""
        return self._compact(head, self._fuel + FUEL_PER_BYTE * len(head))


class EncodedCall:
    """The fast path for an export that takes one string and returns one (the
    edge's `evaluate-encoded` and `evaluate-compact`, a plugin's `invoke-encoded`):
    straight through the C API with preallocated slots, built once per instance.
    Only when `_fast_path_problem()` is None (the caller checks).

    Per call: the argument's bytes are copied into a buffer the argument slot points
    at for good (up to `ARG_CAPACITY` bytes; a longer one is borrowed, pointed at
    through ctypes, and the slot points back at the buffer afterwards), the slots are
    read and written as 64-bit words through memoryviews (no ctypes field descriptors),
    and the two foreign calls (set the fuel, call) take prebuilt ctypes values only.
    The answer is not freed after it is copied out: `wasmtime_component_func_call`
    assigns its result into the slot, which drops (frees) the value the slot held, so
    each call frees the previous answer and the last one is freed with this object
    (`__del__`; `tests/test_wasm_host.py` checks that a million answers leave the
    process's memory where it was)."""

    ARG_CAPACITY = 4096

    def __init__(self, store: Store, func: Any, fuel: int = 0, fuel_per_byte: int = 0):
        # Raw addresses of the function handle, the store context, one string
        # argument slot and one result slot.
        self._ctx = store._context()
        self._func = func._func
        # The slots live in bytearrays, so that they can be read and written as words.
        self._arg_mem = bytearray(ctypes.sizeof(_StrVal))
        self._arg = _StrVal.from_buffer(self._arg_mem)
        self._arg.kind = _STRING
        self._arg_words = memoryview(self._arg_mem).cast("Q")
        self._result_mem = bytearray(ctypes.sizeof(_StrOut))
        self._result = _StrOut.from_buffer(self._result_mem)
        self._result_words = memoryview(self._result_mem).cast("Q")
        self._buffer = ctypes.create_string_buffer(self.ARG_CAPACITY)
        self._buffer_view = memoryview(self._buffer).cast("B")
        self._buffer_address = ctypes.addressof(self._buffer)
        self._arg_words[2] = self._buffer_address  # for good: a borrowed argument points back here after
        # Built once as ctypes values: a ctypes call converts a plain int argument into one on
        # every call (measured: about a third of the crossing's host-side cost).
        self._call_args = (
            ctypes.c_void_p(ctypes.addressof(self._func)),
            ctypes.c_void_p(ctypes.cast(self._ctx, ctypes.c_void_p).value),
            ctypes.c_void_p(ctypes.addressof(self._arg)),
            ctypes.c_size_t(1),
            ctypes.c_void_p(ctypes.addressof(self._result)),
            ctypes.c_size_t(1),
        )
        self._ctx_addr = self._call_args[1]
        self._result_vec = ctypes.c_void_p(ctypes.addressof(self._result) + _StrOut.size.offset)
        self._fuel = (0, ctypes.c_uint64(0))  # the last fuel asked for, as an int and as a ctypes value
        # `call`'s fuel: `fuel` + `fuel_per_byte` per argument byte, as ctypes values by length.
        self._base_fuel = fuel
        self._fuel_per_byte = fuel_per_byte
        self._fuel_by_length: list[Any] = [None] * (self.ARG_CAPACITY + 1)
        # `call`'s `max_size` (0: none): a longer answer raises OutputTooLarge, not copied out.
        self.max_size = 0

    def call(self, data: bytes) -> bytes:
        """One call with the fuel the instance gives per argument length (the hot path: the
        edge's per-request crossing; `__call__` and `_invoke` in one frame). Raises WasmtimeError
        on a trap."""
        n = len(data)
        if n > self.ARG_CAPACITY:
            return self(data, self._base_fuel + self._fuel_per_byte * n, self.max_size)
        fuel = self._fuel_by_length[n]
        if fuel is None:
            fuel = self._fuel_by_length[n] = ctypes.c_uint64(self._base_fuel + self._fuel_per_byte * n)
        self._buffer_view[:n] = data
        self._arg_words[1] = n
        err = _set_fuel(self._ctx_addr, fuel)
        if err:
            raise WasmtimeError._from_ptr(ctypes.cast(err, ctypes.POINTER(capi.wasmtime_error_t)))
        err = _func_call(*self._call_args)
        if err:
            raise WasmtimeError._from_ptr(ctypes.cast(err, ctypes.POINTER(capi.wasmtime_error_t)))
        words = self._result_words
        if words[0] & 0xFF != _STRING:  # the kind is the slot's first byte
            raise WasmtimeError("the encoded export returned a non-string value")
        size = words[1]
        if self.max_size and size > self.max_size:
            _byte_vec_delete(self._result_vec)
            raise OutputTooLarge(size)
        # A bytes copy through an array view: cheaper than ctypes.string_at, itself a foreign call.
        return (_CHARS[size] if size < _CHARS_CACHED else ctypes.c_char * size).from_address(words[2]).raw

    def __call__(self, data: bytes, fuel: int, max_size: int = 0) -> bytes:
        """Raises WasmtimeError on a trap; the store gets `fuel` for this call. With `max_size`,
        an answer longer than that raises OutputTooLarge before it is copied out of the store."""
        if self._fuel[0] != fuel:
            self._fuel = (fuel, ctypes.c_uint64(fuel))
        n = len(data)
        if n <= self.ARG_CAPACITY:
            self._buffer_view[:n] = data
            self._arg_words[1] = n
            return self._invoke(self._fuel[1], max_size)
        arg = self._arg
        arg.size = n
        arg.data = data  # borrowed, not copied: the C API takes arguments as const
        try:
            return self._invoke(self._fuel[1], max_size)
        finally:
            self._arg_words[2] = self._buffer_address

    def _invoke(self, fuel: Any, max_size: int) -> bytes:
        err = _set_fuel(self._ctx_addr, fuel)
        if err:
            raise WasmtimeError._from_ptr(ctypes.cast(err, ctypes.POINTER(capi.wasmtime_error_t)))
        err = _func_call(*self._call_args)
        if err:
            raise WasmtimeError._from_ptr(ctypes.cast(err, ctypes.POINTER(capi.wasmtime_error_t)))
        words = self._result_words
        if words[0] & 0xFF != _STRING:  # the kind is the slot's first byte
            raise WasmtimeError("the encoded export returned a non-string value")
        size = words[1]
        if max_size and size > max_size:
            _byte_vec_delete(self._result_vec)
            raise OutputTooLarge(size)
        # A bytes copy through an array view: cheaper than ctypes.string_at, itself a foreign call.
        # Not freed here: the next call's result drops it (the class docstring).
        return (_CHARS[size] if size < _CHARS_CACHED else ctypes.c_char * size).from_address(words[2]).raw

    def __del__(self) -> None:
        """Frees the last answer the result slot holds (a string with its bytes, until the next
        call would drop it); `wasm_byte_vec_delete` leaves the slot empty."""
        try:
            words = self._result_words
            if words[0] & 0xFF == _STRING and words[2]:
                _byte_vec_delete(self._result_vec)
        except Exception:  # noqa: BLE001 - interpreter shutdown: nothing left to free into
            pass


# Array types for copying an answer out, by length (`ctypes.c_char * n` looks its type up each time).
_CHARS_CACHED = 512
_CHARS = tuple(ctypes.c_char * n for n in range(_CHARS_CACHED))


class OutputTooLarge(Exception):
    """An encoded call's answer over the caller's `max_size` (bytes in args[0]); it was not copied."""


class _StrVal(ctypes.Structure):
    """`wasmtime_component_val_t` holding a string, with the byte pointer typed
    so that a Python bytes object can be assigned without a copy."""

    _fields_ = [
        ("kind", ctypes.c_uint8),
        ("size", ctypes.c_size_t),
        ("data", ctypes.c_char_p),
        ("_pad", ctypes.c_uint64),
    ]


class _StrOut(ctypes.Structure):
    """The result slot: the same layout, the byte pointer as a plain address
    (reading a c_char_p field would copy up to the first NUL)."""

    _fields_ = [
        ("kind", ctypes.c_uint8),
        ("size", ctypes.c_size_t),
        ("data", ctypes.c_void_p),
        ("_pad", ctypes.c_uint64),
    ]


def _prototype(name: str, restype: Any) -> Any:
    """Our own prototype for a C API function (the shared wasmtime-py prototype stays
    untouched). It declares no argument types: EncodedCall passes only prebuilt ctypes
    values, whose own type says how each is passed (c_void_p, c_size_t, c_uint64, as the
    C signatures below), so a call converts nothing (declared argtypes cost a converter
    call per argument per call). A PYFUNCTYPE: the caller keeps the GIL, as for a C
    function of Python's own, instead of releasing and taking it again around each of a
    crossing's three calls (1.2k of ~81k instructions per browser POST). Every sandboxed
    call is fuel-bounded and made from the event loop, which waits for it either way; a
    host import called back from inside (a plugin's clock) takes the GIL it already holds."""
    # wasmtime-py's loaded library is `dll` in its private _bindings module, not re-exported.
    address = ctypes.cast(getattr(capi.dll, name), ctypes.c_void_p).value  # type: ignore[attr-defined]
    # A symbol getattr resolved has an address: `.value` is None only for NULL.
    return ctypes.PYFUNCTYPE(restype)(address)  # type: ignore[arg-type]


def _fast_path_problem() -> str | None:
    """Why the fast path cannot run on this wasmtime build, or None.

    Checked when a component loads, not at import: a mismatch must end in the
    public call path with a warning, never in a gateway that cannot start."""
    try:
        val, vec = ffi.wasmtime_component_val_t, ffi.wasm_byte_vec_t
        fits = all(
            ctypes.sizeof(t) == ctypes.sizeof(val)
            # Read on the class, a ctypes field is a CField descriptor with .offset;
            # typeshed types it as the field's value.
            and t.size.offset == val.of.offset + vec.size.offset  # type: ignore[attr-defined]
            and t.data.offset == val.of.offset + vec.data.offset  # type: ignore[attr-defined]
            for t in (_StrVal, _StrOut)
        )
    except AttributeError as exc:  # a binding the check reads was renamed
        return f"wasmtime-py's bindings are not the ones the fast path was written for ({exc})"
    # EncodedCall reads and writes the slots as 64-bit words: kind, size, data, padding.
    fits = fits and all(
        ctypes.sizeof(t) == 32 and t.size.offset == 8 and t.data.offset == 16 for t in (_StrVal, _StrOut)
    )
    if not fits:
        return "wasmtime's component value layout differs from the one the fast path was written for"
    if _func_call is None:
        return "wasmtime's C API lacks the functions the fast path calls"
    return None


_VP = ctypes.c_void_p
try:
    _STRING = ffi.WASMTIME_COMPONENT_STRING.value
    # (func*, context*, args*, size_t nargs, results*, size_t nresults) -> error*
    _func_call = _prototype("wasmtime_component_func_call", _VP)
    # (context*, uint64_t fuel) -> error*
    _set_fuel = _prototype("wasmtime_context_set_fuel", _VP)
    # (wasm_byte_vec_t*) -> void
    _byte_vec_delete = _prototype("wasm_byte_vec_delete", None)
except AttributeError:  # a binding or symbol is missing: reported by _fast_path_problem()
    # None marks a build the fast path does not fit; _fast_path_problem() then keeps it unused.
    _STRING = _func_call = _set_fuel = _byte_vec_delete = None  # type: ignore[assignment]


class _Attrs:
    """Attribute access over a dict, as wasmtime-py's record lowering wants."""

    def __init__(self, data: dict[str, Any]):
        self._data = data

    def __getattr__(self, name: str) -> Any:
        try:
            return self._data[name]
        except KeyError:
            raise AttributeError(name) from None


def _typed_error(err: Any) -> tuple[ErrorKind, str]:
    tag = getattr(err, "tag", err)
    payload = getattr(err, "payload", None)
    return tag, payload or ""


def typed_outcome_to_dict(result: Any) -> dict[str, Any]:
    """Map a typed `result<outcome, edge-error>` to the encoded outcome shape.

    Both cases are variants, so wasmtime-py lifts this result tagged: Variant("ok"|"err", payload)."""
    if getattr(result, "tag", None) == "err":
        kind, message = _typed_error(result.payload)
        return {"error": {"kind": kind, "message": message}}
    outcome = result.payload if getattr(result, "tag", None) == "ok" else result
    payload = outcome.payload
    if outcome.tag == "preflight":
        return {"preflight": {"status": payload.status, "headers": [list(h) for h in payload.headers]}}
    fields = {name.replace("-", "_"): value for name, value in payload.__dict__.items()}
    fields["cors_headers"] = [list(h) for h in fields["cors_headers"]]
    return {"forward": fields}


@dataclass
class TrapCounts:
    total: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)


# Every backend's traps since the process started (/metrics: a counter must not restart on a swap;
# each backend's own `traps` are what /health reports for the active version).
PROCESS_TRAPS = TrapCounts()


class WasmCore:
    """The wasm edge backend: a configured component, its instance, trap recovery.

    One instance, not one per thread: the gateway calls the edge from its event
    loop only. A store must never be entered by two threads at once (wasmtime-py's
    public call path lets go of the GIL during a call), so calls hold a lock: free
    when uncontended, and a caller on another thread waits instead of corrupting
    the store."""

    def __init__(self, component: WasmComponent, config: EdgeConfig):
        self.component = component
        self.tag = f"wasm/{component.version['component']}/{component.sha256[:12]}"
        # Called with (self, kind) after each counted failure; the registry
        # uses it for automatic rollback.
        self.on_trap: Any = None
        self._config_json = config.to_json()
        self._guard = OutcomeGuard(config)  # every outcome is checked before it is used or cached
        self._codec = CompactCodec(config)  # ... on the compact path, by building it from decisions
        self._fallback = PythonCore()
        self._fallback.configure(config)
        self.traps = TrapCounts()
        self.crossings = 0  # calls that entered the component (requests Python served are not counted)
        self._lock = threading.Lock()
        self._retry_at = 0.0
        self._log_after = 0.0
        self._log_suppressed = 0
        # Fail now, not on the first request, if the config is refused.
        first = self.component.instantiate()
        first.configure_encoded(self._config_json)
        first.bound_compact(self._codec.largest_read)
        # The encoding every request crosses in: compact when the component exports it, its
        # headers in the packed form when the component reads it (section 16).
        self.encoding = "compact" if first.has_compact else "json"
        self._codec.packed = first.has_compact and reads_packed(first.evaluate_compact)
        self._inst: WasmInstance | None = first

    def _instance(self) -> WasmInstance | None:
        """The instance, rebuilt after a failure; None while a failed rebuild
        is backing off (requests are then served by Python). Lock held."""
        return self._inst or self._rebuild()

    def _rebuild(self) -> WasmInstance | None:
        if time.monotonic() < self._retry_at:
            return None
        try:
            inst = self.component.instantiate()
            inst.configure_encoded(self._config_json)
            inst.bound_compact(self._codec.largest_read)
        except Exception as exc:  # noqa: BLE001 - any failed rebuild backs off and Python serves meanwhile
            self._retry_at = time.monotonic() + REBUILD_BACKOFF_S
            self._count("rebuild-failed")
            log.error(
                "edge component %s: cannot build a fresh instance (%s); Python serves for %.0f s",
                self.component.version.get("component"),
                _cause_line(exc),
                REBUILD_BACKOFF_S,
            )
            return None
        self._inst = inst
        return inst

    def evaluate(self, method: str, path: str, query: str, headers: list[Header]) -> dict[str, Any]:
        if self.encoding == "compact":
            found = lookup(headers)
            head = self._codec.head(method, path, found)
            if head is not None:
                return self._evaluate_compact(head, method, path, found)
        wanted = _CONTRACT_NAMES
        pairs = [(key, v) for n, v in headers if (key := n.lower()) in wanted]
        crossing, secrets = redact(pairs)
        return restore(self._evaluate(encode_head(method, path, "", crossing), method, path, "", crossing), secrets)

    def evaluate_raw(
        self, method: str, raw_path: bytes, query: bytes, headers: list[tuple[bytes, bytes]]
    ) -> dict[str, Any]:
        """The ASGI hot path: header bytes as received. Only the headers the contract
        reads cross into the sandbox (never Authorization or Cookie), decoded as latin-1;
        session ids and Last-Event-ID as stand-ins, the query not at all (validate.redact).
        In the compact encoding (the default) only what a rule reads crosses (compact.py)."""
        if self.encoding == "compact":
            written = self._codec.head_bytes(method, raw_path, headers)
            if written is not None:  # what serves: `_evaluate_compact` for a head written from the bytes
                with self._lock:
                    inst = self._inst or self._rebuild()
                    if inst is not None:
                        self.crossings += 1
                        try:
                            return self._codec.outcome_bytes(
                                inst.evaluate_compact(written[0]), method, raw_path, written[1]
                            )
                        except Exception as exc:  # noqa: BLE001 - a trap or an answer the contract does not allow
                            self._fail(exc)
                    return self._fallback._evaluate(method, raw_path.decode("latin-1"), lookup_raw(headers))
            path = raw_path.decode("latin-1")
            head, found = self._codec.head_raw(method, path, headers)
            if head is not None:
                return self._evaluate_compact(head, method, path, found)
        else:
            path = raw_path.decode("latin-1")
        crossing, secrets = redact_raw(headers, CONTRACT_HEADERS)
        return restore(self._evaluate(orjson.dumps([method, path, "", crossing]), method, path, "", crossing), secrets)

    def _evaluate(self, head: bytes, method: str, path: str, query: str, headers: list[Header]) -> dict[str, Any]:
        with self._lock:
            inst = self._inst or self._rebuild()
            if inst is None:
                return self._fallback.evaluate(method, path, query, headers)
            self.crossings += 1
            try:
                out: dict[str, Any] = orjson.loads(inst.evaluate_encoded(head))
            except Exception as exc:  # noqa: BLE001 - a trap, or output that is not JSON: never a failed request
                return self._recover(exc, method, path, query, headers)
            # Wrong shape, a header the edge may not set, a value it may not give, an
            # error for a well-formed head: Python answers, counted as invalid-output.
            problem = self._guard.check(out, method, path, headers)
            if problem is not None:
                return self._recover(InvalidOutput(problem), method, path, query, headers)
            return out

    def _evaluate_compact(self, head: bytes, method: str, path: str, found: dict[str, str]) -> dict[str, Any]:
        """The compact crossing: the context is built from the component's decisions and the
        values the host holds (`found`: section 1's `get` of the real head), checked as it is
        built; any failure is counted like a trap and Python answers from the same values."""
        with self._lock:
            inst = self._inst or self._rebuild()
            if inst is None:
                return self._fallback._evaluate(method, path, found)
            self.crossings += 1
            try:
                return self._codec.outcome(inst.evaluate_compact(head), method, path, found)
            except Exception as exc:  # noqa: BLE001 - a trap or an answer the contract does not allow
                self._fail(exc)
                return self._fallback._evaluate(method, path, found)

    def _count(self, kind: str) -> None:
        """Lock held."""
        self.traps.total += 1
        self.traps.by_kind[kind] += 1
        PROCESS_TRAPS.total += 1
        PROCESS_TRAPS.by_kind[kind] += 1
        if self.on_trap is not None:
            self.on_trap(self, kind)

    def _recover(self, cause: Any, method: str, path: str, query: str, headers: list[Header]) -> dict[str, Any]:
        """Lock held."""
        self._fail(cause)
        return self._fallback.evaluate(method, path, query, headers)

    def _fail(self, cause: Any) -> None:
        """Count and log a failed call and drop its instance. Lock held."""
        self._inst = None  # a trapped instance is unusable: rebuild on next call
        if isinstance(cause, WasmtimeError):
            kind = classify_trap(str(cause))
        else:  # JSON that is not a valid outcome for the head, or output that is not JSON at all
            kind = "invalid-output" if isinstance(cause, (InvalidOutput, OutputTooLarge)) else "error"
        self._count(kind)
        # Every trap is counted; the log gets at most one line a second, so
        # hostile traffic that trips a guest bug cannot flood it.
        now = time.monotonic()
        if now < self._log_after:
            self._log_suppressed += 1
        else:
            self._log_after = now + TRAP_LOG_INTERVAL_S
            suppressed, self._log_suppressed = self._log_suppressed, 0
            log.warning(
                "edge component %s failed (%s): %s; request served by the Python fallback%s",
                self.component.version.get("component"),
                kind,
                _cause_line(cause),
                f" ({suppressed} more failures in the last interval, not logged)" if suppressed else "",
            )
