//! Test-only plugin (never shipped): answers what the contract does not
//! allow. Its `invoke-encoded` ignores the SDK and returns, by the called
//! tool's name: `wrong-shape` → `{"allow": true}`, `array` → `[]`,
//! `bad-deny` → a deny whose code is a string, `two-actions` → continue and
//! modify at once, `empty` → ``, anything else → text that is not JSON. The
//! typed `invoke` modifies with text that is not JSON; `describe` is correct
//! so that the plugin loads.

#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use alloc::string::String;

/// The answer for a call of `tool`.
pub fn answer(input: &str) -> String {
    let pick = |needle: &str| input.contains(&alloc::format!("\"name\":\"{needle}\""));
    let out = if pick("wrong-shape") {
        r#"{"allow": true}"#
    } else if pick("array") {
        "[]"
    } else if pick("bad-deny") {
        r#"{"deny": {"code": "nope", "message": 3}}"#
    } else if pick("two-actions") {
        r#"{"continue": null, "modify": {}}"#
    } else if pick("empty") {
        ""
    } else {
        "this is not JSON {"
    };
    String::from(out)
}

#[cfg(target_arch = "wasm32")]
mod export {
    use alloc::string::{String, ToString};
    use alloc::vec;
    use mcpgw_plugin_sdk::bindings::exports::mcpgw::plugin::plugin::Guest;
    use mcpgw_plugin_sdk::bindings::exports::mcpgw::plugin::types as wit;

    pub struct Garbage;

    impl Guest for Garbage {
        fn describe() -> wit::PluginInfo {
            wit::PluginInfo {
                name: "test-garbage".to_string(),
                version: env!("CARGO_PKG_VERSION").to_string(),
                hooks: vec![wit::Hook::ToolPreInvoke, wit::Hook::ToolPostInvoke],
            }
        }
        fn configure(_config_json: String) -> Result<(), String> {
            Ok(())
        }
        fn invoke(_ctx: wit::Context, _payload: String) -> wit::Action {
            wit::Action::Modify("this is not JSON {".to_string())
        }
        fn invoke_encoded(input: String) -> String {
            super::answer(&input)
        }
    }

    mcpgw_plugin_sdk::bindings::__export_plugin_world!(Garbage with_types_in mcpgw_plugin_sdk::bindings);
}

#[cfg(test)]
mod tests {
    #[test]
    fn answers_by_tool_name() {
        assert_eq!(super::answer(r#"{"payload":{"name":"array"}}"#), "[]");
        assert_eq!(
            super::answer(r#"{"payload":{"name":"echo"}}"#),
            "this is not JSON {"
        );
    }
}
