//! (c) `configure-encoded`, then `evaluate-encoded` under the configuration
//! it accepted: the fuzz input is the config JSON, optionally followed by
//! 0xFF and the head JSON. Checks: `""` or an `invalid-config` error; a
//! refused config leaves the previous one in force; an accepted one equals
//! the typed `Config::new` of the same input; then every check of
//! `check_encoded` under that (fuzzed) configuration.
#![no_main]

use libfuzzer_sys::{fuzz_target, Corpus};
use serde_json::Value;
use transport_core::config::Config;
use transport_core::encoded::{config_from_json, configure_encoded};
use transport_core_fuzz::{base_input, check_encoded, Configured, SEP};

fuzz_target!(|data: &[u8]| -> Corpus {
    let (config, head) = match data.iter().position(|b| *b == SEP) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let (Ok(config), Ok(head)) = (std::str::from_utf8(config), std::str::from_utf8(head)) else {
        return Corpus::Reject;
    };
    let base = Config::new(base_input()).expect("base config");
    let mut state = Some(base.clone());
    let out = configure_encoded(&mut state, config);
    if out.is_empty() {
        let input = config_from_json(config).expect("configure-encoded accepted the text");
        let configured = Configured::new(input).expect("configure-encoded accepted the config");
        assert_eq!(state.as_ref(), Some(&configured.config));
        if !head.is_empty() {
            check_encoded(&configured, head);
        }
    } else {
        let v: Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("configure-encoded answered non-JSON ({e}): {out:?}"));
        assert_eq!(v["error"]["kind"], "invalid-config", "{out}");
        assert!(v["error"]["message"].is_string(), "{out}");
        assert_eq!(
            state,
            Some(base),
            "a refused config replaced the previous one"
        );
        assert!(
            out.len() <= 1024 + 6 * config.len(),
            "error of {} bytes",
            out.len()
        );
    }
    Corpus::Keep
});
