//! Test-only plugin (never shipped): allocates without bound in tool-pre-invoke; the host's memory limit must end the call (the failed allocation traps).

#![cfg_attr(target_arch = "wasm32", no_std)]

use mcpgw_plugin_sdk::prelude::*;

#[derive(Default)]
pub struct Hostile;

export_plugin!(Hostile);

impl Plugin for Hostile {
    const NAME: &'static str = "test-alloc-bomb";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const HOOKS: &'static [Hook] = &[Hook::ToolPreInvoke];

    fn tool_pre_invoke(&mut self, _ctx: &Context, _params: Payload<'_>) -> Action {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(vec![0x5a; 1 << 20]);
            core::hint::black_box(&hoard);
        }
    }
}
