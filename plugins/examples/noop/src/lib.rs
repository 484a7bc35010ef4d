//! Continues on every hook: the cost of the plugin path itself, for
//! benchmarks and lifecycle tests.

#![cfg_attr(target_arch = "wasm32", no_std)]

use mcpgw_plugin_sdk::prelude::*;

#[derive(Default)]
pub struct Noop;

impl Plugin for Noop {
    const NAME: &'static str = "noop";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const HOOKS: &'static [Hook] = &[
        Hook::ToolPreInvoke,
        Hook::ToolPostInvoke,
        Hook::PromptPreFetch,
        Hook::PromptPostFetch,
        Hook::ResourcePreFetch,
        Hook::ResourcePostFetch,
        Hook::ListFilter,
    ];
}

export_plugin!(Noop);

#[cfg(test)]
mod tests {
    use super::*;
    use mcpgw_plugin_sdk::invoke_encoded;

    #[test]
    fn continues_on_every_hook() {
        for hook in Noop::HOOKS {
            let input = json!({"context": {"hook": hook.name(), "endpoint": "/mcp", "method": "x",
                "request-id": "1"}, "payload": {"a": 1}});
            assert_eq!(
                invoke_encoded(&mut Noop, &input.to_string()),
                "{\"continue\":null}"
            );
        }
    }
}
