//! Test-only plugin (never shipped): one `log` line per tool call, naming the tool, with a newline
//! and a forged log prefix after it (the host must escape both); its component imports `log`, so
//! the host refuses it unless the manifest grants "log".

#![cfg_attr(target_arch = "wasm32", no_std)]

use mcpgw_plugin_sdk::prelude::*;
use mcpgw_plugin_sdk::Level;

#[derive(Default)]
pub struct Chatty {
    calls: u64,
}

export_plugin!(Chatty);

impl Plugin for Chatty {
    const NAME: &'static str = "test-chatty";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const HOOKS: &'static [Hook] = &[Hook::ToolPreInvoke];

    fn tool_pre_invoke(&mut self, ctx: &Context, _params: Payload<'_>) -> Action {
        self.calls += 1;
        let name = ctx.name.as_deref().unwrap_or("?");
        log(
            Level::Warning,
            &format!("call {} of {name}\nERROR mcpgw: forged", self.calls),
        );
        Action::Continue
    }
}
