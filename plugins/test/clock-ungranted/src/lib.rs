//! Test-only plugin (never shipped): calls the clock without needing it; its component imports `clock`, so the host refuses it unless the manifest grants "clock".

#![cfg_attr(target_arch = "wasm32", no_std)]

use mcpgw_plugin_sdk::prelude::*;

#[derive(Default)]
pub struct Hostile;

export_plugin!(Hostile);

impl Plugin for Hostile {
    const NAME: &'static str = "test-clock-ungranted";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const HOOKS: &'static [Hook] = &[Hook::ToolPreInvoke];

    fn tool_pre_invoke(&mut self, _ctx: &Context, _params: Payload<'_>) -> Action {
        core::hint::black_box(now_ms());
        Action::Continue
    }
}
