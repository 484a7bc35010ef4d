//! (b) The typed `evaluate` on a structured head: the fuzz input is decoded
//! by `decode_head` (a config selector byte, then method, path, query and
//! header names and values separated by 0xFF), and every invariant of
//! `check_typed` is checked on the outcome.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use transport_core_fuzz::{check_compact, check_typed, configs, decode_head, Configured};

fn all() -> &'static [Configured] {
    static CONFIGS: OnceLock<Vec<Configured>> = OnceLock::new();
    CONFIGS.get_or_init(configs)
}

fuzz_target!(|data: &[u8]| {
    let (selector, head) = decode_head(data);
    let configs = all();
    let configured = &configs[selector % configs.len()];
    let typed = check_typed(configured, &head);
    // The compact twin decides exactly what the typed entry point did.
    check_compact(configured, &head, &typed);
});
