//! mcpgw transport edge: the rules of docs/edge-contract.md in plain Rust
//! modules, exported as the WIT world `transport-core` by `bindings` (only
//! when compiled for wasm, so the rules test natively).
//!
//! The component is `no_std` + `alloc`: std's runtime (WASI start-up,
//! stdio, the panic hook and its formatting) tripled the component's size
//! for nothing the edge uses. Native builds (tests) keep std.

#![cfg_attr(target_arch = "wasm32", no_std)]
// No panicking shortcut in the shipped code: every index and slice is
// checked, and a state the code rules out goes through `broken_invariant`
// (a trap), never through an unwrap or a silent default. Unit tests may
// use them.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::todo,
        clippy::unimplemented,
        clippy::indexing_slicing,
        clippy::string_slice,
        clippy::get_unwrap,
        clippy::unwrap_in_result,
    )
)]

extern crate alloc;

pub mod accept;
pub mod compact;
pub mod config;
pub mod encoded;
pub mod evaluate;
pub mod headers;
pub mod path;
pub mod text;

#[cfg(target_arch = "wasm32")]
mod bindings;
#[cfg(all(target_arch = "wasm32", feature = "hostile"))]
mod hostile;

pub use config::{Config, ConfigInput, EdgeError};
pub use evaluate::{evaluate, Context, Outcome, Preflight};
pub use headers::Headers;

/// A state the code rules out has happened: a bug here, never the fault of
/// an input. In the component this traps, so the host discards the instance
/// and serves the request from its fallback instead of acting on a wrong
/// answer; natively (tests, fuzzing) it panics naming the invariant.
#[cold]
#[inline(never)]
pub(crate) fn broken_invariant(what: &'static str) -> ! {
    #[cfg(target_arch = "wasm32")]
    {
        let _ = what;
        core::arch::wasm32::unreachable()
    }
    #[cfg(not(target_arch = "wasm32"))]
    unreachable!("broken invariant: {what}")
}

/// Version of this component build.
#[cfg(not(feature = "version-bump"))]
pub const COMPONENT_VERSION: &str = env!("CARGO_PKG_VERSION");
/// Test-only variant: the same rules under another version, for hot-swap tests.
#[cfg(feature = "version-bump")]
pub const COMPONENT_VERSION: &str = "1.0.1-test";
/// Version of the contract it implements (the WIT package version).
#[cfg(not(feature = "contract-2"))]
pub const CONTRACT_VERSION: &str = "1.0.0";
/// Test-only variant: a contract version a 1.x host must refuse.
#[cfg(feature = "contract-2")]
pub const CONTRACT_VERSION: &str = "2.0.0";
