//! Test-only plugin (never shipped): loops forever in tool-pre-invoke; the host's fuel must end the call.

#![cfg_attr(target_arch = "wasm32", no_std)]

use mcpgw_plugin_sdk::prelude::*;

#[derive(Default)]
pub struct Hostile;

export_plugin!(Hostile);

impl Plugin for Hostile {
    const NAME: &'static str = "test-loop";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const HOOKS: &'static [Hook] = &[Hook::ToolPreInvoke];

    fn tool_pre_invoke(&mut self, _ctx: &Context, _params: Payload<'_>) -> Action {
        let mut n: u64 = 0;
        loop {
            n = core::hint::black_box(n.wrapping_add(1));
        }
    }
}
