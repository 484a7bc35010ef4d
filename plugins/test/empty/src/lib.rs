//! Test-only plugin (never shipped): the floor of a plugin crossing. Its
//! `invoke-encoded` answers `{"continue":null}` without reading its input
//! (no SDK parse, no dispatch), so a call costs only the host's side, the
//! canonical ABI's string copies and wasmtime's call (bench/plugin_crossing.py).

#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

/// What every hook call answers.
pub const ANSWER: &str = "{\"continue\":null}";

#[cfg(target_arch = "wasm32")]
mod export {
    use alloc::string::{String, ToString};
    use alloc::vec;
    use mcpgw_plugin_sdk::bindings::exports::mcpgw::plugin::plugin::Guest;
    use mcpgw_plugin_sdk::bindings::exports::mcpgw::plugin::types as wit;

    pub struct Empty;

    impl Guest for Empty {
        fn describe() -> wit::PluginInfo {
            wit::PluginInfo {
                name: "test-empty".to_string(),
                version: env!("CARGO_PKG_VERSION").to_string(),
                hooks: vec![wit::Hook::ToolPreInvoke, wit::Hook::ToolPostInvoke],
            }
        }
        fn configure(_config_json: String) -> Result<(), String> {
            Ok(())
        }
        fn invoke(_ctx: wit::Context, _payload: String) -> wit::Action {
            wit::Action::Continue
        }
        fn invoke_encoded(_input: String) -> String {
            super::ANSWER.to_string()
        }
    }

    mcpgw_plugin_sdk::bindings::__export_plugin_world!(Empty with_types_in mcpgw_plugin_sdk::bindings);
}

#[cfg(test)]
mod tests {
    #[test]
    fn answers_continue() {
        assert_eq!(super::ANSWER, r#"{"continue":null}"#);
    }
}
