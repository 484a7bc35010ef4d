//! The WIT export: maps the generated types to the rules layer and keeps the
//! instance's configuration. Also the `no_std` runtime pieces: allocator,
//! panic handler and the canonical ABI's `cabi_realloc`.

use alloc::borrow::Cow;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::broken_invariant;
use crate::config::{Config, ConfigInput, EdgeError};
use crate::evaluate::{self as rules, ContentKind, Outcome, Presence, Verdict, VersionState};
use crate::headers::Headers;
use crate::path::Route;

wit_bindgen::generate!({
    world: "transport-core",
    path: "../wit/transport.wit",
});

use exports::mcpgw::edge::transport as wit;

/// The instance's configuration. A component instance is single-threaded
/// and its exports never re-enter, so the lock is always free; `try_lock`
/// turns even an impossible contention into a trap instead of a spin (or
/// a configure that is not kept, an evaluate that answers not-configured).
static CONFIG: spin::Mutex<Option<Config>> = spin::Mutex::new(None);

// memcmp, memcpy and friends come from wasi-libc, as in a std build: the
// linker takes only those few self-contained objects from it (no WASI
// imports, no start-up code).
#[link(name = "c")]
extern "C" {}

#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

/// Nothing here panics on any input (see the property tests); should it
/// happen anyway, trap: the host discards the instance.
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    core::arch::wasm32::unreachable()
}

/// The canonical ABI's allocator export, through which the host passes
/// strings and lists in. wit-bindgen provides it only for wasip1; on wasip2
/// it normally comes from wasi-libc, which a `no_std` build does not link.
/// Same contract as `wit_bindgen::rt::cabi_realloc`.
///
/// # Safety
/// Called by the host per the canonical ABI: `old_ptr`/`old_len`/`align`
/// describe a live allocation made by this function (or `old_len` is 0),
/// and `align` is a power of two.
#[no_mangle]
unsafe extern "C" fn cabi_realloc(
    old_ptr: *mut u8,
    old_len: usize,
    align: usize,
    new_len: usize,
) -> *mut u8 {
    use alloc::alloc::{alloc, realloc, Layout};
    if new_len == 0 {
        return align as *mut u8; // a dangling, aligned pointer for an empty value
    }
    let ptr = if old_len == 0 {
        match Layout::from_size_align(new_len, align) {
            // SAFETY: the layout is valid (checked) and of non-zero size.
            Ok(layout) => unsafe { alloc(layout) },
            Err(_) => core::ptr::null_mut(),
        }
    } else {
        match Layout::from_size_align(old_len, align) {
            // SAFETY: old_ptr was allocated with this layout (the ABI's
            // contract) and new_len is non-zero.
            Ok(layout) => unsafe { realloc(old_ptr, layout, new_len) },
            Err(_) => core::ptr::null_mut(),
        }
    };
    if ptr.is_null() {
        core::arch::wasm32::unreachable();
    }
    ptr
}

struct Component;

/// Test-only variant (feature `fault-injection`): a request path
/// `/__mcpgw_fault/{panic,loop,alloc}` makes the call trap the ways a real
/// bug could, so hosts can test their recovery. The path is the trigger
/// because it always crosses the boundary (hosts pass only the headers the
/// contract reads). Never compiled into the shipped component.
#[cfg(feature = "fault-injection")]
fn inject_fault(path: &str) {
    match path.strip_prefix("/__mcpgw_fault/") {
        // A panic: the panic handler traps with `unreachable`.
        #[expect(clippy::panic, reason = "the fault this test-only variant injects")]
        Some("panic") => panic!("injected fault"),
        // Runs until the host's fuel is exhausted.
        Some("loop") => loop {
            core::hint::black_box(());
        },
        // Takes all the memory the host allows, then touches the byte
        // past its end: an out-of-bounds memory trap.
        Some("alloc") => {
            use core::arch::wasm32::{memory_grow, memory_size};
            while memory_grow(0, 16) != usize::MAX {}
            let end = memory_size(0) * 65536;
            // SAFETY: none; this reads outside linear memory on purpose,
            // which wasm defines as a trap.
            unsafe { core::ptr::read_volatile(end as *const u8) };
        }
        _ => {}
    }
}

fn to_wit_error(err: EdgeError) -> wit::EdgeError {
    match err {
        EdgeError::NotConfigured => wit::EdgeError::NotConfigured,
        EdgeError::InvalidConfig(m) => wit::EdgeError::InvalidConfig(m),
        EdgeError::MalformedInput(m) => wit::EdgeError::MalformedInput(m),
    }
}

fn lock_config() -> spin::MutexGuard<'static, Option<Config>> {
    match CONFIG.try_lock() {
        Some(slot) => slot,
        None => broken_invariant("CONFIG locked: a re-entered or concurrent export"),
    }
}

/// Replaces the configuration (only called with a valid one).
fn store(cfg: Config) {
    *lock_config() = Some(cfg);
}

/// Runs `f` with the configuration, or `None` before a successful configure.
fn with_config<R>(f: impl FnOnce(Option<&Config>) -> R) -> R {
    f(lock_config().as_ref())
}

fn headers_to_wit(list: rules::HeaderList<'_>) -> Vec<(String, String)> {
    list.as_slice()
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

fn route(r: Route) -> wit::Route {
    match r {
        Route::Mcp => wit::Route::Mcp,
        Route::Sse => wit::Route::Sse,
        Route::Message => wit::Route::Message,
        Route::Ws => wit::Route::Ws,
        Route::Health => wit::Route::Health,
        Route::Other => wit::Route::Other,
    }
}

fn presence(p: Presence) -> wit::Presence {
    match p {
        Presence::Absent => wit::Presence::Absent,
        Presence::Valid => wit::Presence::Valid,
        Presence::Invalid => wit::Presence::Invalid,
    }
}

fn version_state(v: VersionState) -> wit::VersionState {
    match v {
        VersionState::Absent => wit::VersionState::Absent,
        VersionState::Supported => wit::VersionState::Supported,
        VersionState::Unsupported => wit::VersionState::Unsupported,
    }
}

fn content_kind(c: ContentKind) -> wit::ContentKind {
    match c {
        ContentKind::Absent => wit::ContentKind::Absent,
        ContentKind::Json => wit::ContentKind::Json,
        ContentKind::Other => wit::ContentKind::Other,
    }
}

fn verdict(v: Verdict) -> wit::Verdict {
    match v {
        Verdict::Absent => wit::Verdict::Absent,
        Verdict::Allowed => wit::Verdict::Allowed,
        Verdict::Denied => wit::Verdict::Denied,
    }
}

fn outcome_to_wit(outcome: Outcome<'_>) -> wit::Outcome {
    let owned = |s: Option<Cow<'_, str>>| s.map(|s| s.into_owned());
    match outcome {
        Outcome::Preflight(p) => wit::Outcome::Preflight(wit::PreflightResponse {
            status: p.status(),
            headers: headers_to_wit(p.headers()),
        }),
        Outcome::Forward(ctx) => {
            let cors_headers = headers_to_wit(ctx.cors_headers());
            wit::Outcome::Forward(wit::RequestContext {
                method: ctx.method.to_string(),
                route: route(ctx.route()),
                server_id: ctx.server_id().map(str::to_string),
                path: ctx.path.path.into_owned(),
                session_state: presence(ctx.session_state),
                session_id: owned(ctx.session_id),
                protocol_version: owned(ctx.protocol_version),
                protocol_state: version_state(ctx.protocol_state),
                revision: ctx.revision.map(str::to_string),
                accept_json: ctx.accept_json,
                accept_sse: ctx.accept_sse,
                content_type: content_kind(ctx.content_type),
                origin: owned(ctx.origin),
                origin_state: verdict(ctx.origin_state),
                host_state: verdict(ctx.host_state),
                last_event_id: owned(ctx.last_event_id),
                mcp_method: owned(ctx.mcp_method),
                mcp_name: owned(ctx.mcp_name),
                cors_headers,
            })
        }
    }
}

impl wit::Guest for Component {
    fn version() -> wit::VersionInfo {
        wit::VersionInfo {
            component: crate::COMPONENT_VERSION.to_string(),
            contract: crate::CONTRACT_VERSION.to_string(),
        }
    }

    fn configure(cfg: wit::Config) -> Result<(), wit::EdgeError> {
        let input = ConfigInput {
            allowed_origins: cfg.allowed_origins,
            allowed_hosts: cfg.allowed_hosts,
            allow_credentials: cfg.allow_credentials,
            allowed_headers: cfg.allowed_headers,
            max_age: cfg.max_age,
            supported_versions: cfg.supported_versions,
            default_version: cfg.default_version,
            path_prefix: cfg.path_prefix,
        };
        let cfg = Config::new(input).map_err(to_wit_error)?;
        store(cfg);
        Ok(())
    }

    fn evaluate(head: wit::RequestHead) -> Result<wit::Outcome, wit::EdgeError> {
        #[cfg(feature = "fault-injection")]
        inject_fault(&head.path);
        with_config(|cfg| {
            let cfg = cfg.ok_or(wit::EdgeError::NotConfigured)?;
            let headers =
                Headers::collect(head.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
            Ok(outcome_to_wit(rules::evaluate(
                cfg,
                &head.method,
                &head.path,
                headers,
            )))
        })
    }

    fn configure_encoded(cfg: String) -> String {
        match crate::encoded::config_from_json(&cfg).and_then(Config::new) {
            Ok(cfg) => {
                store(cfg);
                String::new()
            }
            Err(err) => crate::encoded::error_json(&err),
        }
    }

    fn evaluate_encoded(head: String) -> String {
        #[cfg(feature = "fault-injection")]
        if let Ok(parsed) = crate::encoded::head_from_json(&head) {
            inject_fault(&parsed.path);
        }
        let honest = with_config(|cfg| crate::encoded::evaluate_encoded(cfg, &head));
        #[cfg(feature = "hostile")]
        if let Some(lie) = crate::hostile::intercept(&head, &honest) {
            return lie;
        }
        honest
    }

    fn evaluate_compact(head: String) -> String {
        #[cfg(feature = "fault-injection")]
        if let Some(parsed) = crate::compact::head_from_compact(&head) {
            inject_fault(parsed.path);
        }
        let honest = with_config(|cfg| crate::compact::evaluate_compact(cfg, &head));
        #[cfg(feature = "hostile")]
        if let Some(lie) = crate::hostile::intercept_compact(&head, &honest) {
            return lie;
        }
        honest
    }
}

export!(Component);
