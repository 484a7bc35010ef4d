//! Native Rust test host for the mcpgw transport-edge component.
//!
//! * [`EdgeComponent`] compiles `transport_core.wasm` once (an [`Engine`] with
//!   fuel metering on); [`EdgeComponent::instantiate`] makes any number of
//!   independent [`EdgeHost`]s from it.
//! * [`EdgeHost`] is one instance in its own [`Store`]: a WASI context that
//!   grants nothing (no preopened dirs, no env, no args, no network, stdio
//!   closed/discarded), a memory limit, and fresh fuel before every call by
//!   production's formula ([`fuel_for_head`]). A trap poisons the instance;
//!   [`EdgeHost::rebuild`] replaces it.
//! * [`json`] converts between the typed WIT values and the encoded JSON of
//!   `docs/edge-contract.md` section 14.
//! * [`vectors`] loads `tests/vectors/*.json`, merges configs, matches
//!   partially and runs cases through both entry points.
//! * [`wire`] is the wire-level parity runner (binary `wire-parity`): raw-TCP
//!   scenarios against a real gateway in both edge modes.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

pub mod compact;
pub mod json;
pub mod vectors;
pub mod wire;

/// Generated bindings for world `transport-core` of `wit/transport.wit`.
pub mod bindings {
    wasmtime::component::bindgen!({
        world: "transport-core",
        path: "../../wit/transport.wit",
    });
}

pub use bindings::exports::mcpgw::edge::transport::{
    Config, ContentKind, EdgeError, Outcome, PreflightResponse, Presence, RequestContext,
    RequestHead, Route, Verdict, VersionInfo, VersionState,
};

/// Default linear-memory cap of one instance.
pub const DEFAULT_MEMORY_LIMIT: usize = 16 << 20;
/// Fuel given before every call (and before instantiation), as in
/// production: the default of `MCPGW_EDGE_FUEL` (`edge_fuel` in
/// host-python/mcpgw/settings.py, `DEFAULT_FUEL` in
/// host-python/mcpgw/edge/wasm_core.py). A normal request costs a few ten
/// thousand units; this only stops runaway guests. `tests/fuel.rs` fails when
/// these numbers and the Python ones disagree.
pub const DEFAULT_FUEL_BASE: u64 = 5_000_000;
/// Fuel added per byte of the encoded request head on an evaluate call
/// (`FUEL_PER_BYTE` in host-python/mcpgw/edge/wasm_core.py): the rules are
/// linear, so a legal large head never runs out.
pub const FUEL_PER_HEAD_BYTE: u64 = 400;

/// Production's fuel for one evaluate call: `base` plus
/// [`FUEL_PER_HEAD_BYTE`] per byte of the encoded head.
pub fn fuel_for_head(base: u64, head_bytes: usize) -> u64 {
    let bytes = u64::try_from(head_bytes).unwrap_or(u64::MAX);
    base.saturating_add(FUEL_PER_HEAD_BYTE.saturating_mul(bytes))
}

/// Workspace root (`tests/native-host/../..`).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| manifest.join("..").join(".."))
}

/// Where the tests look for the component: `$MCPGW_COMPONENT`, else
/// `<workspace>/target/wasm32-wasip2/release/transport_core.wasm`.
pub fn component_path() -> PathBuf {
    match std::env::var_os("MCPGW_COMPONENT") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => workspace_root()
            .join("target")
            .join("wasm32-wasip2")
            .join("release")
            .join("transport_core.wasm"),
    }
}

/// The build command printed when the component is missing.
pub const BUILD_HINT: &str = "cargo build --release --target wasm32-wasip2 -p transport-core";

/// Loads the component from [`component_path`], panicking with a clear
/// message (never skipping) when it is missing. For tests. Compiled once per
/// process (compiling with an unoptimized debug-build Cranelift takes
/// seconds); every caller gets a cheap clone.
pub fn load_component_or_panic() -> EdgeComponent {
    static SHARED: OnceLock<EdgeComponent> = OnceLock::new();
    SHARED.get_or_init(load_component_uncached).clone()
}

fn load_component_uncached() -> EdgeComponent {
    let path = component_path();
    if !path.is_file() {
        panic!(
            "\n\nmcpgw component not found at {}\n\
             Build it first (from the workspace root):\n    {BUILD_HINT}\n\
             or point MCPGW_COMPONENT at a built transport_core.wasm.\n\n",
            path.display()
        );
    }
    EdgeComponent::load(&path)
        .unwrap_or_else(|e| panic!("cannot load component {}: {e:?}", path.display()))
}

/// Store data: WASI state plus the resource limiter.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A compiled component plus the linker to instantiate it. Cheap to clone
/// (everything inside is reference-counted) and `Send + Sync`.
#[derive(Clone)]
pub struct EdgeComponent {
    engine: Engine,
    component: Component,
    linker: Linker<HostState>,
    memory_limit: usize,
    fuel_base: u64,
}

impl EdgeComponent {
    /// Compiles the component file at `path`.
    pub fn load(path: &Path) -> wasmtime::Result<Self> {
        let engine = Self::engine()?;
        let component = Component::from_file(&engine, path)?;
        Self::with_component(engine, component)
    }

    /// Compiles a component from bytes (binary component).
    pub fn from_binary(bytes: &[u8]) -> wasmtime::Result<Self> {
        let engine = Self::engine()?;
        let component = Component::from_binary(&engine, bytes)?;
        Self::with_component(engine, component)
    }

    fn engine() -> wasmtime::Result<Engine> {
        let mut cfg = wasmtime::Config::new();
        cfg.wasm_component_model(true);
        cfg.consume_fuel(true);
        Engine::new(&cfg)
    }

    fn with_component(engine: Engine, component: Component) -> wasmtime::Result<Self> {
        let mut linker = Linker::<HostState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        Ok(Self {
            engine,
            component,
            linker,
            memory_limit: DEFAULT_MEMORY_LIMIT,
            fuel_base: DEFAULT_FUEL_BASE,
        })
    }

    /// Memory cap for instances made from now on.
    pub fn with_memory_limit(mut self, bytes: usize) -> Self {
        self.memory_limit = bytes;
        self
    }

    /// Base fuel per call (`MCPGW_EDGE_FUEL`) for instances made from now on.
    pub fn with_fuel_base(mut self, fuel: u64) -> Self {
        self.fuel_base = fuel;
        self
    }

    /// A new, unconfigured instance.
    pub fn instantiate(&self) -> wasmtime::Result<EdgeHost> {
        let (store, core) = self.new_instance(self.fuel_base)?;
        Ok(EdgeHost {
            component: self.clone(),
            store,
            core,
            fuel_base: self.fuel_base,
            poisoned: None,
            last_good_config: None,
            last_fuel_used: 0,
        })
    }

    fn new_instance(
        &self,
        fuel: u64,
    ) -> wasmtime::Result<(Store<HostState>, bindings::TransportCore)> {
        // Grants nothing: no preopens, no env, no args, stdin closed, stdout
        // and stderr discarded, no TCP/UDP/name lookup. Clocks and random
        // stay (the Rust std runtime asks for random seeds).
        let wasi = WasiCtx::builder()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.memory_limit)
            .trap_on_grow_failure(true)
            .instances(4)
            .tables(8)
            .memories(4)
            .build();
        let mut store = Store::new(
            &self.engine,
            HostState {
                wasi,
                table: ResourceTable::new(),
                limits,
            },
        );
        store.limiter(|s| &mut s.limits);
        store.set_fuel(fuel)?;
        let core = bindings::TransportCore::instantiate(&mut store, &self.component, &self.linker)?;
        Ok((store, core))
    }
}

/// The last configuration `configure` accepted, to re-apply after a rebuild.
#[derive(Clone)]
enum GoodConfig {
    Typed(Config),
    Encoded(String),
}

/// Why a call did not return a value.
#[derive(Debug)]
pub enum CallError {
    /// The guest trapped (or ran out of fuel / memory) during this call. The
    /// instance is now poisoned.
    Trap(wasmtime::Error),
    /// A previous call trapped; call [`EdgeHost::rebuild`] first.
    Poisoned(String),
}

impl CallError {
    /// The wasm trap code, when there is one (e.g. `Trap::OutOfFuel`).
    pub fn trap_code(&self) -> Option<Trap> {
        match self {
            CallError::Trap(e) => e.downcast_ref::<Trap>().copied(),
            CallError::Poisoned(_) => None,
        }
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Trap(e) => write!(f, "guest trapped: {e:?}"),
            CallError::Poisoned(why) => {
                write!(
                    f,
                    "instance is poisoned by an earlier trap ({why}); rebuild it"
                )
            }
        }
    }
}

impl std::error::Error for CallError {}

/// One component instance in its own store.
pub struct EdgeHost {
    component: EdgeComponent,
    store: Store<HostState>,
    core: bindings::TransportCore,
    fuel_base: u64,
    poisoned: Option<String>,
    last_good_config: Option<GoodConfig>,
    last_fuel_used: u64,
}

impl EdgeHost {
    /// Loads and instantiates in one go.
    pub fn load(path: &Path) -> wasmtime::Result<Self> {
        EdgeComponent::load(path)?.instantiate()
    }

    /// `true` after a trap, until [`EdgeHost::rebuild`].
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.is_some()
    }

    /// Fuel consumed by the last call (instantiation counts as a call).
    pub fn last_fuel_used(&self) -> u64 {
        self.last_fuel_used
    }

    /// Changes the base fuel of every following call (evaluate calls add
    /// [`FUEL_PER_HEAD_BYTE`] per byte of head).
    pub fn set_fuel_base(&mut self, fuel: u64) {
        self.fuel_base = fuel;
    }

    /// Throws the instance (and its store) away and instantiates a fresh one,
    /// then re-applies the last configuration `configure` or
    /// `configure-encoded` accepted, if any. Required after a trap: a trapped
    /// component instance cannot be entered again.
    pub fn rebuild(&mut self) -> wasmtime::Result<()> {
        self.rebuild_unconfigured()?;
        match self.last_good_config.clone() {
            None => Ok(()),
            Some(GoodConfig::Typed(cfg)) => match self.configure(&cfg) {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(wasmtime::Error::msg(format!(
                    "re-applying the last accepted config failed: {e:?}"
                ))),
                Err(e) => Err(wasmtime::Error::msg(e.to_string())),
            },
            Some(GoodConfig::Encoded(cfg)) => match self.configure_encoded(&cfg) {
                Ok(s) if s.is_empty() => Ok(()),
                Ok(s) => Err(wasmtime::Error::msg(format!(
                    "re-applying the last accepted config failed: {s}"
                ))),
                Err(e) => Err(wasmtime::Error::msg(e.to_string())),
            },
        }
    }

    /// Like [`EdgeHost::rebuild`] but leaves the new instance unconfigured
    /// (and forgets the last configuration).
    pub fn rebuild_unconfigured(&mut self) -> wasmtime::Result<()> {
        let (store, core) = self.component.new_instance(self.fuel_base)?;
        self.store = store;
        self.core = core;
        self.poisoned = None;
        Ok(())
    }

    /// Runs one export call with `fuel`; a trap poisons the instance.
    fn call<R>(
        &mut self,
        what: &str,
        fuel: u64,
        f: impl FnOnce(&bindings::TransportCore, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        if let Some(why) = &self.poisoned {
            return Err(CallError::Poisoned(why.clone()));
        }
        if let Err(e) = self.store.set_fuel(fuel) {
            return Err(CallError::Trap(e));
        }
        let result = f(&self.core, &mut self.store);
        let left = self.store.get_fuel().unwrap_or(0);
        self.last_fuel_used = fuel.saturating_sub(left);
        match result {
            Ok(r) => Ok(r),
            Err(e) => {
                self.poisoned = Some(format!("{what}: {e}"));
                Err(CallError::Trap(e))
            }
        }
    }

    /// `version: func() -> version-info`.
    pub fn version(&mut self) -> Result<VersionInfo, CallError> {
        self.call("version", self.fuel_base, |core, store| {
            core.mcpgw_edge_transport().call_version(store)
        })
    }

    /// `configure: func(cfg: config) -> result<_, edge-error>`.
    pub fn configure(&mut self, cfg: &Config) -> Result<Result<(), EdgeError>, CallError> {
        let r = self.call("configure", self.fuel_base, |core, store| {
            core.mcpgw_edge_transport().call_configure(store, cfg)
        })?;
        if r.is_ok() {
            self.last_good_config = Some(GoodConfig::Typed(cfg.clone()));
        }
        Ok(r)
    }

    /// `configure-encoded: func(cfg: string) -> string`.
    pub fn configure_encoded(&mut self, cfg: &str) -> Result<String, CallError> {
        let r = self.call("configure-encoded", self.fuel_base, |core, store| {
            core.mcpgw_edge_transport()
                .call_configure_encoded(store, cfg)
        })?;
        if r.is_empty() {
            self.last_good_config = Some(GoodConfig::Encoded(cfg.to_owned()));
        }
        Ok(r)
    }

    /// `evaluate: func(head: request-head) -> result<outcome, edge-error>`,
    /// with the fuel `evaluate-encoded` would get for the same head.
    pub fn evaluate(
        &mut self,
        head: &RequestHead,
    ) -> Result<Result<Outcome, EdgeError>, CallError> {
        let fuel = fuel_for_head(self.fuel_base, json::encode_head(head).len());
        self.call("evaluate", fuel, |core, store| {
            core.mcpgw_edge_transport().call_evaluate(store, head)
        })
    }

    /// `evaluate-encoded: func(head: string) -> string`.
    pub fn evaluate_encoded(&mut self, head: &str) -> Result<String, CallError> {
        let fuel = fuel_for_head(self.fuel_base, head.len());
        self.call("evaluate-encoded", fuel, |core, store| {
            core.mcpgw_edge_transport()
                .call_evaluate_encoded(store, head)
        })
    }

    /// `evaluate-compact: func(head: string) -> string` (section 16).
    pub fn evaluate_compact(&mut self, head: &str) -> Result<String, CallError> {
        let fuel = fuel_for_head(self.fuel_base, head.len());
        self.call("evaluate-compact", fuel, |core, store| {
            core.mcpgw_edge_transport()
                .call_evaluate_compact(store, head)
        })
    }

    /// `configure` with the result as encoded JSON (`{"ok": true}` or the
    /// error object).
    pub fn configure_json(&mut self, cfg: &Config) -> Result<serde_json::Value, CallError> {
        Ok(json::configure_result_to_json(&self.configure(cfg)?))
    }

    /// `configure-encoded` with the result parsed (`""` becomes `{"ok": true}`).
    pub fn configure_encoded_json(&mut self, cfg: &str) -> Result<serde_json::Value, CallError> {
        Ok(json::parse_configure_encoded(&self.configure_encoded(cfg)?))
    }

    /// `evaluate` with the result converted to its encoded JSON form.
    pub fn evaluate_json(&mut self, head: &RequestHead) -> Result<serde_json::Value, CallError> {
        Ok(json::result_to_json(&self.evaluate(head)?))
    }

    /// `evaluate-encoded` of `head` with the answer parsed as JSON (a reply
    /// that is not JSON becomes a JSON string holding the raw reply, which
    /// then fails every comparison).
    pub fn evaluate_encoded_json(
        &mut self,
        head: &RequestHead,
    ) -> Result<serde_json::Value, CallError> {
        let out = self.evaluate_encoded(&json::encode_head(head))?;
        Ok(json::parse_reply(&out))
    }
}
