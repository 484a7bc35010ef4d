//! Test-only plugin (never shipped): built with std, so its component
//! imports WASI (stdio, environment, filesystem, clocks), which no manifest
//! can grant: the host must refuse it when it loads. Were it ever run, its
//! tool-pre-invoke would modify the params into what it could read of a
//! file, the environment and the wall clock.

/// What the probe reports; native builds run it too (the tests).
pub fn probe() -> String {
    let file = std::fs::read_to_string("/etc/hostname").unwrap_or_else(|e| format!("error: {e}"));
    let env = std::env::vars()
        .map(|(k, _)| k)
        .collect::<Vec<_>>()
        .join(",");
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    format!("{{\"file\":{file:?},\"env\":{env:?},\"wall\":{wall}}}")
}

#[cfg(target_arch = "wasm32")]
mod export {
    wit_bindgen::generate!({
        world: "plugin-world",
        path: "../../../wit/plugin.wit",
    });

    use exports::mcpgw::plugin::plugin::Guest;
    use exports::mcpgw::plugin::types as wit;

    struct Probe;

    impl Guest for Probe {
        fn describe() -> wit::PluginInfo {
            wit::PluginInfo {
                name: "test-wasi-probe".to_string(),
                version: env!("CARGO_PKG_VERSION").to_string(),
                hooks: vec![wit::Hook::ToolPreInvoke],
            }
        }
        fn configure(_config_json: String) -> Result<(), String> {
            Ok(())
        }
        fn invoke(_ctx: wit::Context, _payload: String) -> wit::Action {
            wit::Action::Modify(super::probe())
        }
        fn invoke_encoded(_input: String) -> String {
            format!("{{\"modify\":{}}}", super::probe())
        }
    }

    export!(Probe);
}

#[cfg(test)]
mod tests {
    #[test]
    fn probe_is_json_shaped() {
        let p = super::probe();
        assert!(p.starts_with("{\"file\":") && p.ends_with('}'), "{p}");
    }
}
