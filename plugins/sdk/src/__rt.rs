//! What [`export_plugin!`](crate::export_plugin) expands to calls into this
//! module; on wasm32 it is also the `no_std` runtime (allocator, panic
//! handler, `cabi_realloc`). Not a public API.

pub use alloc::string::String;

#[cfg(target_arch = "wasm32")]
pub use wasm::*;

#[cfg(target_arch = "wasm32")]
mod wasm {
    use alloc::string::ToString;
    use alloc::vec::Vec;

    use crate::bindings::exports::mcpgw::plugin::types as wit;
    use crate::{dispatch, Action, Context, Hook, Plugin, Principal, INTERNAL_ERROR};

    // memcmp, memcpy and friends come from wasi-libc, as in a std build: the
    // linker takes only those few self-contained objects from it (no WASI
    // imports, no start-up code).
    #[link(name = "c")]
    extern "C" {}

    #[global_allocator]
    static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

    /// A panic (or an allocation the host's memory limit refuses) traps: the
    /// host counts it and discards the instance.
    #[panic_handler]
    fn panic(_: &core::panic::PanicInfo) -> ! {
        core::arch::wasm32::unreachable()
    }

    /// The canonical ABI's allocator export, through which the host passes
    /// strings and lists in. wit-bindgen provides it only for wasip1; on
    /// wasip2 it normally comes from wasi-libc, which a `no_std` build does
    /// not link. Same contract as `wit_bindgen::rt::cabi_realloc`.
    ///
    /// # Safety
    /// Called by the host per the canonical ABI: `old_ptr`/`old_len`/`align`
    /// describe a live allocation made by this function (or `old_len` is 0),
    /// and `align` is a power of two.
    #[no_mangle]
    unsafe extern "C" fn cabi_realloc(
        old_ptr: *mut u8,
        old_len: usize,
        align: usize,
        new_len: usize,
    ) -> *mut u8 {
        use alloc::alloc::{alloc, realloc, Layout};
        if new_len == 0 {
            return align as *mut u8; // a dangling, aligned pointer for an empty value
        }
        let ptr = if old_len == 0 {
            match Layout::from_size_align(new_len, align) {
                // SAFETY: the layout is valid (checked) and of non-zero size.
                Ok(layout) => unsafe { alloc(layout) },
                Err(_) => core::ptr::null_mut(),
            }
        } else {
            match Layout::from_size_align(old_len, align) {
                // SAFETY: old_ptr was allocated with this layout (the ABI's
                // contract) and new_len is non-zero.
                Ok(layout) => unsafe { realloc(old_ptr, layout, new_len) },
                Err(_) => core::ptr::null_mut(),
            }
        };
        if ptr.is_null() {
            core::arch::wasm32::unreachable();
        }
        ptr
    }

    /// The instance's plugin value, made on first use. An instance is
    /// single-threaded and its exports never re-enter, so the lock is always
    /// free; `try_lock` turns an impossible contention into a trap.
    pub struct Slot<P>(spin::Mutex<Option<P>>);

    impl<P: Plugin> Slot<P> {
        #[allow(clippy::new_without_default)] // const, for a static
        pub const fn new() -> Self {
            Slot(spin::Mutex::new(None))
        }

        pub fn with<R>(&self, f: impl FnOnce(&mut P) -> R) -> R {
            let Some(mut guard) = self.0.try_lock() else {
                core::arch::wasm32::unreachable()
            };
            f(guard.get_or_insert_with(P::default))
        }
    }

    fn hook_to_wit(hook: Hook) -> wit::Hook {
        match hook {
            Hook::ToolPreInvoke => wit::Hook::ToolPreInvoke,
            Hook::ToolPostInvoke => wit::Hook::ToolPostInvoke,
            Hook::PromptPreFetch => wit::Hook::PromptPreFetch,
            Hook::PromptPostFetch => wit::Hook::PromptPostFetch,
            Hook::ResourcePreFetch => wit::Hook::ResourcePreFetch,
            Hook::ResourcePostFetch => wit::Hook::ResourcePostFetch,
            Hook::ListFilter => wit::Hook::ListFilter,
        }
    }

    fn hook_from_wit(hook: wit::Hook) -> Hook {
        match hook {
            wit::Hook::ToolPreInvoke => Hook::ToolPreInvoke,
            wit::Hook::ToolPostInvoke => Hook::ToolPostInvoke,
            wit::Hook::PromptPreFetch => Hook::PromptPreFetch,
            wit::Hook::PromptPostFetch => Hook::PromptPostFetch,
            wit::Hook::ResourcePreFetch => Hook::ResourcePreFetch,
            wit::Hook::ResourcePostFetch => Hook::ResourcePostFetch,
            wit::Hook::ListFilter => Hook::ListFilter,
        }
    }

    pub fn describe<P: Plugin>() -> wit::PluginInfo {
        wit::PluginInfo {
            name: P::NAME.to_string(),
            version: P::VERSION.to_string(),
            hooks: P::HOOKS
                .iter()
                .copied()
                .map(hook_to_wit)
                .collect::<Vec<_>>(),
        }
    }

    /// The typed `invoke`: the same dispatch as `invoke-encoded`.
    pub fn invoke<P: Plugin>(plugin: &mut P, ctx: wit::Context, payload: &str) -> wit::Action {
        let ctx = Context {
            hook: hook_from_wit(ctx.hook),
            endpoint: ctx.endpoint,
            upstream: ctx.upstream,
            method: ctx.method,
            name: ctx.name,
            principal: ctx.principal.map(|p| Principal {
                subject: p.subject,
                scopes: p.scopes,
                claims_json: p.claims_json,
            }),
            request_id: ctx.request_id,
            session_hash: ctx.session_hash,
        };
        let action = match crate::checked_payload(payload) {
            Ok(payload) => dispatch(plugin, &ctx, payload),
            Err(e) => Action::deny(
                INTERNAL_ERROR,
                alloc::format!("plugin {}: payload is not JSON: {e}", P::NAME),
            ),
        };
        match action {
            Action::Continue => wit::Action::Continue,
            Action::Modify(value) => wit::Action::Modify(value.to_string()),
            Action::Deny { code, message } => wit::Action::Deny(wit::Denial { code, message }),
        }
    }
}
