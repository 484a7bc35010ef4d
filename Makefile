# mcpgw: `make serve` and `make test` set up everything they need on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON  ?= python3
VENV    := .venv
PY      := $(VENV)/bin/python
BUILD   := .build
TARGET  := wasm32-wasip2
PKG_EDGE := host-python/mcpgw/edge
WASM_OUT := target/$(TARGET)/release/transport_core.wasm
WASM_PKG := $(PKG_EDGE)/wasm/transport_core.wasm
GUEST_SRC := $(shell find guest/src -name '*.rs') guest/Cargo.toml wit/transport.wit Cargo.toml Cargo.lock
VECTORS := $(wildcard tests/vectors/*.json)
# Component variants that exist only to exercise failure paths in tests.
VARIANTS_DIR := $(BUILD)/variants
FAULTS_WASM := $(VARIANTS_DIR)/transport_core_faults.wasm
CONTRACT2_WASM := $(VARIANTS_DIR)/transport_core_contract2.wasm
V2_WASM := $(VARIANTS_DIR)/transport_core_v2.wasm
WRONG_WASM := $(VARIANTS_DIR)/transport_core_wrong.wasm


.PHONY: help setup build variants serve test test-python oauth-server test-rust test-wire conformance-suite bench bench-edge load-test load-test-ui fuzz fuzz-native clean

help:
	@echo "make serve       set up and start the gateway on 127.0.0.1:4444 (MCPGW_* variables apply)"
	@echo "make test        set up and run every test (Rust, Python, browser)"
	@echo "make dist        the wheel and sdist into dist/ (pip install dist/mcpgw-*.whl && mcpgw serve)"
	@echo "make bench       every benchmark side by side; report in bench/results/"
	@echo "make bench-edge  per-request edge cost from Python, both backends"
	@echo "make load-test   headless Locust against a gateway (LOAD_EDGE=wasm|python), bounded"
	@echo "make load-test-ui  the same with Locust's web UI"
	@echo "make fuzz        coverage-guided libFuzzer on the edge, then longer differential fuzzing of the two backends"

# --- set-up ----------------------------------------------------------------
$(BUILD)/rust-target.stamp:
	@mkdir -p $(BUILD)
	rustup target list --installed | grep -qx $(TARGET) || rustup target add $(TARGET)
	@touch $@

$(BUILD)/venv.stamp: host-python/pyproject.toml
	@mkdir -p $(BUILD)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e 'host-python[test,lint,dist,otel]'
	@touch $@

setup: $(BUILD)/rust-target.stamp $(BUILD)/venv.stamp

# --- the component -----------------------------------------------------------
$(WASM_OUT): $(BUILD)/rust-target.stamp $(GUEST_SRC)
	cargo build --locked --release --target $(TARGET) -p transport-core
	@touch $@

$(WASM_PKG): $(WASM_OUT)
	@mkdir -p $(dir $@)
	cp $< $@
	@echo "component: $$(stat -c %s $@) bytes, sha256 $$(sha256sum $@ | cut -c1-16)..."

$(BUILD)/vectors.stamp: $(VECTORS)
	@mkdir -p $(BUILD) $(PKG_EDGE)/vectors
	rm -f $(PKG_EDGE)/vectors/*.json
	cp tests/vectors/*.json $(PKG_EDGE)/vectors/
	@touch $@

build: setup $(WASM_PKG) $(BUILD)/vectors.stamp

# One rule per variant: $(VARIANTS_DIR)/transport_core_<name>.wasm built with the guest feature <feature>.
define variant
$(VARIANTS_DIR)/transport_core_$(1).wasm: $(BUILD)/rust-target.stamp $(GUEST_SRC)
	@mkdir -p $(VARIANTS_DIR)
	cargo build --locked --release --target $(TARGET) -p transport-core --features $(2) --target-dir target/variants/$(1)
	cp target/variants/$(1)/$(TARGET)/release/transport_core.wasm $$@
endef
$(eval $(call variant,faults,fault-injection))
$(eval $(call variant,contract2,contract-2))
$(eval $(call variant,v2,version-bump))
$(eval $(call variant,wrong,wrong-answers))
$(eval $(call variant,hostile,hostile))

variants: $(FAULTS_WASM) $(CONTRACT2_WASM) $(V2_WASM) $(WRONG_WASM) $(VARIANTS_DIR)/transport_core_hostile.wasm

# --- plugins -----------------------------------------------------------------
# The example plugins (plugins/examples, shipped in plugins/dist/) and the test-only hostile
# ones (plugins/test, in plugins/dist/test/), all from one cargo build; docs/plugins.md.
PLUGINS       := tool-guard redact args-guard rate-limit noop
TEST_PLUGINS  := loop alloc-bomb panic garbage huge-output wasi-probe clock-ungranted chatty empty
PLUGIN_CRATES := mcpgw-plugin-sdk $(PLUGINS) $(TEST_PLUGINS:%=test-%)
PLUGIN_SRC    := $(shell find plugins/sdk plugins/examples plugins/test -name '*.rs' -o -name Cargo.toml) wit/plugin.wit Cargo.toml Cargo.lock
PLUGIN_DIST   := $(PLUGINS:%=plugins/dist/%.wasm) $(TEST_PLUGINS:%=plugins/dist/test/%.wasm)

$(BUILD)/plugins.stamp: $(BUILD)/rust-target.stamp $(PLUGIN_SRC)
	cargo build --locked --release --target $(TARGET) $(PLUGIN_CRATES:%=-p %)
	@touch $@
plugins/dist/test/%.wasm: $(BUILD)/plugins.stamp
	@mkdir -p $(dir $@)
	cp target/$(TARGET)/release/test_$(subst -,_,$*).wasm $@
plugins/dist/%.wasm: $(BUILD)/plugins.stamp
	@mkdir -p $(dir $@)
	cp target/$(TARGET)/release/$(subst -,_,$*).wasm $@

.PHONY: plugins test-plugins
plugins: $(PLUGIN_DIST)

# The SDK's and each plugin's unit tests, natively; the SDK's integration tests check the built
# components' imports and build the plugin docs/plugins.md writes from scratch.
test-plugins: plugins
	cargo test --locked $(PLUGIN_CRATES:%=-p %)

# --- packaging -----------------------------------------------------------------
# `make dist`: the sdist and, built from it, the wheel (component, vectors and console inside; the
# example plugins are not: they are built by `make plugins` and named by path in the config).
# pypa/build (the `dist` extra) in an isolated environment with the backend pyproject.toml names.
DIST_SRC := $(shell find host-python/mcpgw -type f -not -path '*/__pycache__/*') host-python/pyproject.toml
$(BUILD)/dist.stamp: $(WASM_PKG) $(BUILD)/vectors.stamp $(BUILD)/venv.stamp $(DIST_SRC)
	rm -rf dist
	$(PY) -m build --outdir dist host-python >/dev/null
	@ls -l dist
	@touch $@

.PHONY: dist
dist: setup $(BUILD)/dist.stamp

# --- run -------------------------------------------------------------------
serve: build plugins
	$(VENV)/bin/mcpgw serve

# --- tests -----------------------------------------------------------------
# Debian's Chromium for the cross-origin browser test (playwright drives it; no browser download).
$(BUILD)/chromium.stamp:
	@mkdir -p $(BUILD)
	command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	@touch $@

# Debian's redis-server for the scale-out tests and benchmarks (they start their own on a free
# loopback port, no persistence; the packaged service is not used).
$(BUILD)/redis.stamp:
	@mkdir -p $(BUILD)
	command -v redis-server >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }
	@touch $@

# rustfmt and clippy with warnings as errors: the workspace natively (all targets), the
# component for wasm32-wasip2 as shipped and with each variant's feature; the fuzz crate
# (outside the workspace) is format-checked only (linting it would build libFuzzer's C++).
.PHONY: lint-rust
$(BUILD)/rust-lint.stamp:
	@mkdir -p $(BUILD)
	{ cargo fmt --version && cargo clippy --version; } >/dev/null 2>&1 || rustup component add clippy rustfmt
	@touch $@

lint-rust: $(BUILD)/rust-target.stamp $(BUILD)/rust-lint.stamp
	cargo fmt --all --check
	cd guest/fuzz && cargo fmt --check
	cargo clippy --locked --workspace --all-targets -- -D warnings
	cargo clippy --locked --target $(TARGET) $(PLUGIN_CRATES:%=-p %) -- -D warnings
	for f in "" fault-injection contract-2 version-bump wrong-answers; do \
	  cargo clippy --locked --target $(TARGET) -p transport-core $${f:+--features $$f} -- -D warnings || exit 1; \
	done

test-rust: build lint-rust
	cargo test --locked -p transport-core
	MCPGW_COMPONENT=$(abspath $(WASM_OUT)) cargo test --locked -p native-host

# The official MCP conformance suite and the Node 22 it needs, both from npm; the script pins
# them and keeps its own stamp, so a second run does nothing.
conformance-suite:
	@bash tests/e2e/conformance/install.sh >/dev/null

# A real OAuth 2.1 authorization server for the auth tests: oidc-provider from npm, run on the
# Node 22 the conformance suite installs; the script pins it and keeps its own stamp.
oauth-server: conformance-suite
	@bash tests/e2e/oauth/install.sh >/dev/null

# The reference MCP "everything" server from npm, an upstream of the federation tests over
# Streamable HTTP, legacy SSE and stdio; the script pins it and keeps its own stamp.
.PHONY: everything-server
everything-server: conformance-suite
	@bash tests/e2e/everything/install.sh >/dev/null

# ruff (lint, then format --check) on every Python file in the repository and mypy --strict on
# the mcpgw package; the configuration is in host-python/pyproject.toml.
.PHONY: lint-python
lint-python: $(BUILD)/venv.stamp
	cd host-python && ../$(VENV)/bin/ruff check . ../bench ../tests/load ../tests/e2e ../guest/fuzz
	cd host-python && ../$(VENV)/bin/ruff format --check . ../bench ../tests/load ../tests/e2e ../guest/fuzz
	cd host-python && ../$(VENV)/bin/mypy

test-python: lint-python build variants plugins dist $(BUILD)/chromium.stamp conformance-suite oauth-server everything-server $(BUILD)/redis.stamp $(BUILD)/wrk.stamp
	cd host-python && MCPGW_TEST_VARIANTS=$(abspath $(VARIANTS_DIR)) ../$(PY) -m pytest -q

# Raw-TCP scenarios (tests/scenarios/) replayed against the gateway in wasm and python mode,
# transcripts diffed, a control client alongside, live counts back to baseline after each;
# then the same against gateways sharing a redis-server (--redis), whose transcripts must equal
# the in-memory run's, but for the event id a 400 quotes back: Redis event ids are longer
# (`<process>-<n>_<seq>`, the same on every process), so that message and its Content-Length differ.
WIRE_OUT := target/wire-parity
test-wire: build $(BUILD)/redis.stamp
	cargo build --locked -p native-host --bin wire-parity
	rm -rf $(WIRE_OUT)/transcripts $(WIRE_OUT)-redis/transcripts
	target/debug/wire-parity --repo $(CURDIR) --python $(abspath $(PY)) --out $(WIRE_OUT)
	target/debug/wire-parity --repo $(CURDIR) --python $(abspath $(PY)) --out $(WIRE_OUT)-redis --redis
	diff -r -I '^[^ ]* <   content-length: ' -I "Last-Event-ID '[^']*' is unknown or no longer retained" \
	  $(WIRE_OUT)/transcripts $(WIRE_OUT)-redis/transcripts

test: test-rust test-plugins test-python test-wire

bench-edge: build
	$(PY) bench/edge_cost.py

# --- benchmarks and load tests ---------------------------------------------------
# wrk (Debian) generates the HTTP load; the SDK reference server gets its own virtualenv with the
# same pinned SDK and HTTP stack; Locust gets one too (its dependencies are not the gateway's).
SDK_VENV    := $(BUILD)/bench-sdk-venv
LOCUST_VENV := $(BUILD)/locust-venv
LOAD_EDGE   ?= wasm
LOAD_USERS  ?= 50
LOAD_TIME   ?= 90s

$(BUILD)/wrk.stamp:
	@mkdir -p $(BUILD)
	command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
	@touch $@

# valgrind (Debian): callgrind counts the instructions a request costs (bench/metrics.py), a figure
# a busy shared machine does not move.
$(BUILD)/valgrind.stamp:
	@mkdir -p $(BUILD)
	command -v valgrind >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null; }
	@touch $@

$(BUILD)/bench-deps.stamp: $(BUILD)/venv.stamp
	$(PY) -m pip install --quiet --disable-pip-version-check -e 'host-python[test,bench]'
	test -x $(SDK_VENV)/bin/python || $(PYTHON) -m venv $(SDK_VENV)
	$(SDK_VENV)/bin/python -m pip install --quiet --disable-pip-version-check \
	  mcp==2.3.0 uvicorn==0.54.0 uvloop==0.23.0 httptools==0.9.0
	@touch $@

# FastMCP's proxy, the relay table's "user's alternative" (bench/fastmcp_proxy.py), in its own
# virtualenv: its dependencies are not the gateway's.
FASTMCP_VENV := $(BUILD)/bench-fastmcp-venv
$(BUILD)/bench-fastmcp.stamp:
	@mkdir -p $(BUILD)
	test -x $(FASTMCP_VENV)/bin/python || $(PYTHON) -m venv $(FASTMCP_VENV)
	$(FASTMCP_VENV)/bin/python -m pip install --quiet --disable-pip-version-check \
	  fastmcp==4.1.6 uvicorn==0.54.0 uvloop==0.23.0 httptools==0.9.0
	@touch $@

$(BUILD)/locust.stamp:
	@mkdir -p $(BUILD)
	test -x $(LOCUST_VENV)/bin/python || $(PYTHON) -m venv $(LOCUST_VENV)
	$(LOCUST_VENV)/bin/python -m pip install --quiet --disable-pip-version-check locust==2.47.0
	@touch $@

bench: build plugins $(BUILD)/wrk.stamp $(BUILD)/valgrind.stamp $(BUILD)/bench-deps.stamp $(BUILD)/bench-fastmcp.stamp $(BUILD)/redis.stamp
	$(PY) bench/run.py

# Headless and bounded; LOAD_EDGE=wasm|python picks the edge, so runs compare across modes.
load-test: build $(BUILD)/locust.stamp
	$(PY) tests/load/run.py --edge $(LOAD_EDGE) --locust $(LOCUST_VENV)/bin/locust -- \
	  --headless -u $(LOAD_USERS) -r 10 -t $(LOAD_TIME) --only-summary

load-test-ui: build $(BUILD)/locust.stamp
	$(PY) tests/load/run.py --edge $(LOAD_EDGE) --locust $(LOCUST_VENV)/bin/locust

FUZZ_SECONDS ?= 60

# Coverage-guided libFuzzer (cargo-fuzz, on stable via RUSTC_BOOTSTRAP) on the edge's entry
# points: no panic, no broken invariant, no allocation past 64 MiB; FUZZ_SECONDS per target.
fuzz-native:
	FUZZ_SECONDS=$(FUZZ_SECONDS) guest/fuzz/run.sh

fuzz: build fuzz-native
	cd host-python && MCPGW_FUZZ_EXAMPLES=20000 ../$(PY) -m pytest -q tests/test_differential.py
	MCPGW_COMPONENT=$(abspath $(WASM_OUT)) MCPGW_FUZZ_CASES=20000 cargo test --locked -p native-host --test differential
	PROPTEST_CASES=20000 cargo test --locked -p transport-core --test properties

clean:
	rm -rf $(BUILD) target $(PKG_EDGE)/wasm/*.wasm $(PKG_EDGE)/vectors dist
