//! Test-only plugin (never shipped): panics in tool-pre-invoke, which traps.

#![cfg_attr(target_arch = "wasm32", no_std)]

use mcpgw_plugin_sdk::prelude::*;

#[derive(Default)]
pub struct Hostile;

export_plugin!(Hostile);

impl Plugin for Hostile {
    const NAME: &'static str = "test-panic";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const HOOKS: &'static [Hook] = &[Hook::ToolPreInvoke];

    fn tool_pre_invoke(&mut self, _ctx: &Context, _params: Payload<'_>) -> Action {
        panic!("test-panic: injected panic")
    }
}
