//! Test-only plugin (never shipped): tool-pre-invoke modifies the params into one 100 MB JSON string; the host must bound what it accepts.

#![cfg_attr(target_arch = "wasm32", no_std)]

use mcpgw_plugin_sdk::prelude::*;

#[derive(Default)]
pub struct Hostile;

export_plugin!(Hostile);

impl Plugin for Hostile {
    const NAME: &'static str = "test-huge-output";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const HOOKS: &'static [Hook] = &[Hook::ToolPreInvoke];

    fn tool_pre_invoke(&mut self, _ctx: &Context, _params: Payload<'_>) -> Action {
        Action::Modify(Value::String("x".repeat(100 * 1024 * 1024)))
    }
}
