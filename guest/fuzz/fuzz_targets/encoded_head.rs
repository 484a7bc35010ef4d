//! (a) `evaluate-encoded` after configuring with the base config: the fuzz
//! input is the head JSON. Checks: always a JSON answer; `malformed-input`
//! exactly when serde_json refuses the head; otherwise the typed outcome
//! with every invariant of `check_typed`.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::{fuzz_target, Corpus};
use transport_core::encoded::{configure_encoded, evaluate_encoded};
use transport_core_fuzz::{
    base_input, check_compact_garbage, check_encoded, Configured, BASE_CONFIG,
};

fn base() -> &'static Configured {
    static BASE: OnceLock<Configured> = OnceLock::new();
    BASE.get_or_init(|| {
        // Configured through the encoded entry point, as a host does.
        let mut state = None;
        assert_eq!(configure_encoded(&mut state, BASE_CONFIG), "");
        let configured = Configured::new(base_input()).expect("base config");
        assert_eq!(state.as_ref(), Some(&configured.config));
        configured
    })
}

fuzz_target!(|data: &[u8]| -> Corpus {
    // The WIT string is UTF-8: other bytes cannot reach the component.
    let Ok(text) = std::str::from_utf8(data) else {
        return Corpus::Reject;
    };
    let configured = base();
    check_encoded(configured, text);
    // The same bytes as a compact head: refused or answered, never a panic.
    check_compact_garbage(configured, text);
    // Not configured: `not-configured` whatever the input.
    let out = evaluate_encoded(None, text);
    assert!(
        out.starts_with("{\"error\":{\"kind\":\"not-configured\""),
        "{out}"
    );
    Corpus::Keep
});
