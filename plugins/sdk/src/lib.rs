//! Write mcpgw plugins in Rust.
//!
//! A plugin is a type that implements [`Plugin`] (its name, version and
//! hooks, `configure`, and the hooks it acts on) and one line,
//! [`export_plugin!`], that turns it into the component the gateway loads
//! (the world `plugin-world` of `wit/plugin.wit`, package
//! `mcpgw:plugin@1.0.0`). docs/plugins.md walks through one.
//!
//! The component is `no_std` + `alloc` on wasm32: std's runtime imports WASI
//! (stdio, environment, exit), which no manifest can grant, so a plugin built
//! with std would be refused. The SDK supplies the runtime pieces instead
//! (allocator, panic handler, the canonical ABI's `cabi_realloc`); a plugin
//! crate starts with `#![cfg_attr(target_arch = "wasm32", no_std)]` and takes
//! `String`, `Vec`, `format!` and friends from [`prelude`]. Natively (the
//! plugin's unit tests) std is there as usual and [`export_plugin!`] only
//! checks the type.
//!
//! The host functions a manifest may grant are [`log`] (grant `"log"`) and
//! [`now_ms`] (grant `"clock"`). A plugin that never calls one does not
//! import it, and then needs no grant.

#![cfg_attr(target_arch = "wasm32", no_std)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

extern crate alloc;

use alloc::borrow::ToOwned;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use serde::Deserialize;
pub use serde_json::{self, json, Value};

#[doc(hidden)]
pub mod __rt;
pub mod glob;
mod input;

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "plugin-world",
        path: "../../wit/plugin.wit",
        pub_export_macro: true,
        export_macro_name: "__export_plugin_world",
        default_bindings_module: "mcpgw_plugin_sdk::bindings",
    });
}

/// What a plugin file needs besides its own logic.
pub mod prelude {
    pub use crate::{
        export_plugin, json, log, now_ms, Action, Context, Hook, Level, Payload, Plugin, Principal,
        Value,
    };
    pub use alloc::borrow::ToOwned;
    pub use alloc::boxed::Box;
    pub use alloc::collections::BTreeMap;
    pub use alloc::string::{String, ToString};
    pub use alloc::vec::Vec;
    pub use alloc::{format, vec};
}

/// JSON-RPC "internal error": what a plugin answers to input it cannot read.
pub const INTERNAL_ERROR: i32 = -32603;
/// JSON-RPC "method not found".
pub const METHOD_NOT_FOUND: i32 = -32601;
/// JSON-RPC "invalid params".
pub const INVALID_PARAMS: i32 = -32602;

/// The points of the request path a plugin can act on (`hook` in the WIT).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Hook {
    /// Before `tools/call` reaches its tool: payload = the request's params.
    ToolPreInvoke,
    /// After the tool answered: payload = the result.
    ToolPostInvoke,
    /// Before `prompts/get`: payload = the request's params.
    PromptPreFetch,
    /// After `prompts/get`: payload = the result.
    PromptPostFetch,
    /// Before `resources/read`: payload = the request's params.
    ResourcePreFetch,
    /// After `resources/read`: payload = the result.
    ResourcePostFetch,
    /// A list result (`tools/list`, `prompts/list`, `resources/list`,
    /// `resources/templates/list`): payload = the result.
    ListFilter,
}

impl Hook {
    /// The hook's name in the WIT and in the encoded JSON.
    pub fn name(self) -> &'static str {
        match self {
            Hook::ToolPreInvoke => "tool-pre-invoke",
            Hook::ToolPostInvoke => "tool-post-invoke",
            Hook::PromptPreFetch => "prompt-pre-fetch",
            Hook::PromptPostFetch => "prompt-post-fetch",
            Hook::ResourcePreFetch => "resource-pre-fetch",
            Hook::ResourcePostFetch => "resource-post-fetch",
            Hook::ListFilter => "list-filter",
        }
    }
}

/// Who is calling, when authentication is on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Principal {
    pub subject: String,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Selected claims as a JSON object (text).
    #[serde(default)]
    pub claims_json: String,
}

/// What a hook knows about the call besides its payload (`context` in the WIT).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Context {
    pub hook: Hook,
    /// `/mcp`, or `/servers/<id>/mcp` for a virtual server.
    pub endpoint: String,
    /// The upstream that owns the tool, prompt or resource; none for built-ins.
    #[serde(default)]
    pub upstream: Option<String>,
    /// The MCP method (`tools/call`, `tools/list`, ...).
    pub method: String,
    /// Tool or prompt name, or resource URI; none for list-filter.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub principal: Option<Principal>,
    /// The JSON-RPC request id, as JSON text.
    #[serde(default)]
    pub request_id: String,
    /// A hash of the session id; none without a session.
    #[serde(default)]
    pub session_hash: Option<String>,
}

impl Context {
    /// A context for `hook` on `/mcp` with nothing else set: for tests.
    pub fn new(hook: Hook, method: &str, name: Option<&str>) -> Self {
        Context {
            hook,
            endpoint: "/mcp".to_owned(),
            upstream: None,
            method: method.to_owned(),
            name: name.map(ToOwned::to_owned),
            principal: None,
            request_id: "1".to_owned(),
            session_hash: None,
        }
    }
}

/// What a hook decides.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Leave the payload as it is.
    Continue,
    /// Replace the payload with this value.
    Modify(Value),
    /// Stop the call: the client gets this JSON-RPC error.
    Deny { code: i32, message: String },
}

impl Action {
    /// `Action::Deny` from anything printable.
    pub fn deny(code: i32, message: impl Into<String>) -> Self {
        Action::Deny {
            code,
            message: message.into(),
        }
    }

    /// The action as `invoke-encoded` answers it: `{"continue": null}`,
    /// `{"modify": <json>}` or `{"deny": {"code": <int>, "message": <string>}}`.
    pub fn encode(&self) -> String {
        match self {
            Action::Continue => "{\"continue\":null}".to_owned(),
            Action::Modify(value) => format!("{{\"modify\":{value}}}"),
            Action::Deny { code, message } => {
                json!({"deny": {"code": code, "message": message}}).to_string()
            }
        }
    }
}

/// A plugin: metadata, configuration and one method per hook. Every hook
/// defaults to [`Action::Continue`]; implement the ones named in `HOOKS`.
///
/// One value of the type lives per component instance: `Default` makes it,
/// `configure` is called once with the manifest's `config` table before any
/// hook, and hooks may keep state in it (`&mut self`).
pub trait Plugin: Default {
    /// Shown in the gateway's log and `/health`.
    const NAME: &'static str;
    /// Usually `env!("CARGO_PKG_VERSION")`.
    const VERSION: &'static str;
    /// The hooks this plugin implements: the gateway calls only these.
    const HOOKS: &'static [Hook];

    /// The manifest's `config` table (a JSON object; `{}` when absent). An
    /// error refuses the plugin at load, with this message. [`config`]
    /// deserializes it into a struct.
    fn configure(&mut self, config: Value) -> Result<(), String> {
        let _ = config;
        Ok(())
    }

    fn tool_pre_invoke(&mut self, ctx: &Context, params: Payload<'_>) -> Action {
        let _ = (ctx, params);
        Action::Continue
    }
    fn tool_post_invoke(&mut self, ctx: &Context, result: Payload<'_>) -> Action {
        let _ = (ctx, result);
        Action::Continue
    }
    fn prompt_pre_fetch(&mut self, ctx: &Context, params: Payload<'_>) -> Action {
        let _ = (ctx, params);
        Action::Continue
    }
    fn prompt_post_fetch(&mut self, ctx: &Context, result: Payload<'_>) -> Action {
        let _ = (ctx, result);
        Action::Continue
    }
    fn resource_pre_fetch(&mut self, ctx: &Context, params: Payload<'_>) -> Action {
        let _ = (ctx, params);
        Action::Continue
    }
    fn resource_post_fetch(&mut self, ctx: &Context, result: Payload<'_>) -> Action {
        let _ = (ctx, result);
        Action::Continue
    }
    fn list_filter(&mut self, ctx: &Context, result: Payload<'_>) -> Action {
        let _ = (ctx, result);
        Action::Continue
    }
}

/// Deserialize a plugin's `config` into `T` (any `serde::Deserialize`),
/// with an error message fit for the gateway's log.
pub fn config<T: serde::de::DeserializeOwned>(config: Value) -> Result<T, String> {
    serde_json::from_value(config).map_err(|e| format!("invalid config: {e}"))
}

/// A hook's payload (the request's params, or the result) as the gateway sent
/// it: JSON text, parsed only when the hook asks for it. A hook that decides
/// from its [`Context`] alone (a tool name, the principal, the session) never
/// pays for parsing arguments or results.
#[derive(Clone, Debug)]
pub struct Payload<'a>(PayloadRepr<'a>);

#[derive(Clone, Debug)]
enum PayloadRepr<'a> {
    Json(&'a str),
    Value(Value),
}

impl<'a> Payload<'a> {
    /// A payload over JSON text (the SDK makes it with the text's syntax and
    /// nesting already checked; text given here unchecked only makes
    /// [`Payload::try_value`] and [`Payload::parse`] fail).
    pub fn from_json(text: &'a str) -> Self {
        Payload(PayloadRepr::Json(text))
    }

    /// The payload as a [`Value`] (parsed now, or as given for one made from
    /// a `Value`), or why serde_json cannot represent it. There is no
    /// infallible variant on purpose: a hook that checks the payload must
    /// refuse the call on `Err` (e.g. with [`INTERNAL_ERROR`], as the example
    /// plugins `args-guard`, `tool-guard` and `redact` do), never go on as if
    /// there were nothing to check. The SDK already refuses, before the hook
    /// runs, a payload that is not JSON or is nested deeper than
    /// [`MAX_PAYLOAD_NESTING`]; what can still fail here is valid JSON that
    /// serde_json will not hold in a `Value`: a number beyond `f64`'s range
    /// (such as `1e400`) or a lone UTF-16 surrogate escape (such as
    /// `"\ud800"`), or text given to [`Payload::from_json`] unchecked.
    pub fn try_value(self) -> Result<Value, String> {
        match self.0 {
            PayloadRepr::Json(text) => serde_json::from_str(text).map_err(|e| e.to_string()),
            PayloadRepr::Value(value) => Ok(value),
        }
    }

    /// The payload deserialized into `T` (any `serde::Deserialize`, which
    /// may read only the fields it names), with a message fit for a denial.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, String> {
        match &self.0 {
            PayloadRepr::Json(text) => serde_json::from_str(text),
            PayloadRepr::Value(value) => T::deserialize(value),
        }
        .map_err(|e| format!("payload: {e}"))
    }
}

impl From<Value> for Payload<'static> {
    fn from(value: Value) -> Self {
        Payload(PayloadRepr::Value(value))
    }
}

/// The deepest nesting of arrays and objects a payload may have: what
/// serde_json's parser accepts (its recursion limit of 128 lets 127 levels
/// through; the SDK's tests check the boundary), so a payload the SDK
/// lets through to a hook also parses into a [`Value`]. The gateway passes
/// deeper JSON (its own parser's limit is about 254); the SDK refuses it
/// before the hook runs, with [`INTERNAL_ERROR`], whether or not the hook
/// reads the payload.
pub const MAX_PAYLOAD_NESTING: usize = 127;

/// Whether JSON `text` (its syntax already checked) nests arrays and objects
/// at most `limit` deep. Iterative: a byte scan that skips strings (with
/// `memchr`, most of a payload's bytes are in strings), so any depth is
/// measured without recursion and at a few fuel per byte.
pub fn nesting_within(text: &str, limit: usize) -> bool {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut i = 0usize;
    while let Some(&b) = bytes.get(i) {
        i += 1;
        match b {
            b'"' => loop {
                // To the string's closing quote, stepping over escapes.
                let Some(at) = bytes
                    .get(i..)
                    .and_then(|rest| memchr::memchr2(b'"', b'\\', rest))
                else {
                    return true; // unterminated: not JSON, which the caller has ruled out
                };
                let stop = bytes.get(i + at).copied();
                i += at + 1;
                if stop == Some(b'\\') {
                    i += 1; // the escaped byte, a quote or a backslash included
                } else {
                    break;
                }
            },
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return false;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    true
}

/// The payload's text as the hook gets it, or the reason it is refused: not
/// JSON, or too deep for [`Payload::try_value`] to parse
/// ([`MAX_PAYLOAD_NESTING`]); both checked in one pass.
#[doc(hidden)]
pub fn checked_payload(text: &str) -> Result<Payload<'_>, String> {
    input::check_json(text, MAX_PAYLOAD_NESTING).map(Payload::from_json)
}

/// Call the hook `ctx.hook` names on `plugin`.
pub fn dispatch<P: Plugin>(plugin: &mut P, ctx: &Context, payload: Payload<'_>) -> Action {
    match ctx.hook {
        Hook::ToolPreInvoke => plugin.tool_pre_invoke(ctx, payload),
        Hook::ToolPostInvoke => plugin.tool_post_invoke(ctx, payload),
        Hook::PromptPreFetch => plugin.prompt_pre_fetch(ctx, payload),
        Hook::PromptPostFetch => plugin.prompt_post_fetch(ctx, payload),
        Hook::ResourcePreFetch => plugin.resource_pre_fetch(ctx, payload),
        Hook::ResourcePostFetch => plugin.resource_post_fetch(ctx, payload),
        Hook::ListFilter => plugin.list_filter(ctx, payload),
    }
}

/// `invoke-encoded` for `plugin`: read `{"context": {...}, "payload": ...}`
/// in one pass (the context decoded, the payload's syntax and nesting
/// checked, no value built: the hook parses it if it reads it), run the hook,
/// encode its action. Input that does not parse, or a payload nested deeper
/// than [`MAX_PAYLOAD_NESTING`], is answered with a deny (-32603) naming the
/// plugin and the problem, never a trap, and the hook does not run.
pub fn invoke_encoded<P: Plugin>(plugin: &mut P, input: &str) -> String {
    match input::read_input(input) {
        Ok((context, payload)) => dispatch(plugin, &context, payload).encode(),
        Err(e) => Action::deny(
            INTERNAL_ERROR,
            format!("plugin {}: malformed input: {e}", P::NAME),
        )
        .encode(),
    }
}

/// `configure` for `plugin`: the config text must be JSON (`""` counts as `{}`).
pub fn configure_encoded<P: Plugin>(plugin: &mut P, config_json: &str) -> Result<(), String> {
    let value = if config_json.trim().is_empty() {
        Value::Object(serde_json::Map::new())
    } else {
        serde_json::from_str(config_json)
            .map_err(|e| format!("plugin {}: config is not JSON: {e}", P::NAME))?
    };
    plugin.configure(value)
}

/// Log levels of the `log` grant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Warning,
    Error,
}

/// A line in the gateway's log, tagged with the plugin's name (rate-limited
/// by the host). Calling it makes the component import `log`: the manifest
/// must then grant `"log"`. Natively (tests) it prints to stderr.
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    {
        use bindings::mcpgw::plugin::log::{write, Level as L};
        let level = match level {
            Level::Debug => L::Debug,
            Level::Info => L::Info,
            Level::Warning => L::Warning,
            Level::Error => L::Error,
        };
        write(level, message);
    }
    #[cfg(not(target_arch = "wasm32"))]
    std::eprintln!("[{level:?}] {message}");
}

/// Milliseconds on the host's monotonic clock (an arbitrary origin; never
/// goes back). Calling it makes the component import `clock`: the manifest
/// must then grant `"clock"`. Natively (tests) it counts from the first call.
pub fn now_ms() -> u64 {
    #[cfg(target_arch = "wasm32")]
    {
        bindings::mcpgw::plugin::clock::now_ms()
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        let start = START.get_or_init(std::time::Instant::now);
        u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// Turn a [`Plugin`] type into the plugin component: implements the exported
/// interface (`describe`, `configure`, `invoke`, `invoke-encoded`) over one
/// `Default` value of the type per instance. Natively it only checks that the
/// type is a plugin, so the crate's unit tests build as usual.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        const _: fn() = || {
            fn is_plugin<P: $crate::Plugin>() {}
            is_plugin::<$plugin>();
        };

        #[cfg(target_arch = "wasm32")]
        mod __mcpgw_plugin_export {
            use super::*;
            use $crate::bindings::exports::mcpgw::plugin::plugin::Guest;
            use $crate::bindings::exports::mcpgw::plugin::types as wit;

            static INSTANCE: $crate::__rt::Slot<$plugin> = $crate::__rt::Slot::new();

            pub struct Export;

            impl Guest for Export {
                fn describe() -> wit::PluginInfo {
                    $crate::__rt::describe::<$plugin>()
                }
                fn configure(config_json: $crate::__rt::String) -> Result<(), $crate::__rt::String> {
                    INSTANCE.with(|p| $crate::configure_encoded(p, &config_json))
                }
                fn invoke(ctx: wit::Context, payload: $crate::__rt::String) -> wit::Action {
                    INSTANCE.with(|p| $crate::__rt::invoke(p, ctx, &payload))
                }
                fn invoke_encoded(input: $crate::__rt::String) -> $crate::__rt::String {
                    INSTANCE.with(|p| $crate::invoke_encoded(p, &input))
                }
            }

            $crate::bindings::__export_plugin_world!(Export with_types_in $crate::bindings);
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Echo {
        prefix: String,
    }

    impl Plugin for Echo {
        const NAME: &'static str = "echo";
        const VERSION: &'static str = "0";
        const HOOKS: &'static [Hook] = &[Hook::ToolPostInvoke];
        fn configure(&mut self, config: Value) -> Result<(), String> {
            #[derive(Deserialize)]
            struct C {
                prefix: String,
            }
            self.prefix = crate::config::<C>(config)?.prefix;
            Ok(())
        }
        fn tool_post_invoke(&mut self, ctx: &Context, result: Payload<'_>) -> Action {
            if ctx.principal.as_ref().map(|p| p.subject.as_str()) == Some("mallory") {
                return Action::deny(-32001, "no");
            }
            match result.try_value() {
                Ok(r) => Action::Modify(json!({"p": self.prefix, "r": r})),
                Err(e) => Action::deny(INTERNAL_ERROR, format!("echo: {e}")),
            }
        }
    }

    fn input(hook: &str, principal: Value, payload: Value) -> String {
        json!({"context": {"hook": hook, "endpoint": "/mcp", "upstream": null, "method": "tools/call",
            "name": "echo", "principal": principal, "request-id": "1", "session-hash": null},
            "payload": payload})
        .to_string()
    }

    #[test]
    fn encodes_the_three_actions() {
        assert_eq!(Action::Continue.encode(), r#"{"continue":null}"#);
        assert_eq!(
            Action::Modify(json!([1, "a"])).encode(),
            r#"{"modify":[1,"a"]}"#
        );
        assert_eq!(
            Action::deny(-32602, "bad \"x\"").encode(),
            r#"{"deny":{"code":-32602,"message":"bad \"x\""}}"#
        );
    }

    #[test]
    fn dispatches_on_the_hook_with_config_and_principal() {
        let mut p = Echo::default();
        configure_encoded(&mut p, r#"{"prefix": ">"}"#).unwrap();
        let out = invoke_encoded(&mut p, &input("tool-post-invoke", Value::Null, json!(7)));
        assert_eq!(out, r#"{"modify":{"p":">","r":7}}"#);
        // A hook the plugin does not implement continues.
        let out = invoke_encoded(&mut p, &input("tool-pre-invoke", Value::Null, json!(7)));
        assert_eq!(out, r#"{"continue":null}"#);
        let mallory = json!({"subject": "mallory", "scopes": ["a"], "claims-json": "{}"});
        let out = invoke_encoded(&mut p, &input("tool-post-invoke", mallory, json!(7)));
        assert_eq!(out, r#"{"deny":{"code":-32001,"message":"no"}}"#);
    }

    #[test]
    fn malformed_input_is_a_deny_never_a_panic() {
        let mut p = Echo::default();
        for bad in [
            "",
            "not json",
            "[]",
            "{}",
            r#"{"context": {"hook": "tool-pre-invoke"}}"#,
            r#"{"context": {"hook": "no-such-hook", "endpoint": "/mcp", "method": "m"}}"#,
            &"[".repeat(10_000),
        ] {
            let out: Value = serde_json::from_str(&invoke_encoded(&mut p, bad)).unwrap();
            assert_eq!(out["deny"]["code"], json!(INTERNAL_ERROR), "{bad:.40}");
            let message = out["deny"]["message"].as_str().unwrap();
            assert!(
                message.starts_with("plugin echo: malformed input: "),
                "{message}"
            );
        }
    }

    fn nested(depth: usize) -> String {
        format!("{}0{}", "[".repeat(depth), "]".repeat(depth))
    }

    fn input_with_raw_payload(hook: &str, payload: &str) -> String {
        let ctx = json!({"hook": hook, "endpoint": "/mcp", "upstream": null, "method": "tools/call",
            "name": "echo", "principal": null, "request-id": "1", "session-hash": null});
        format!(r#"{{"context": {ctx}, "payload": {payload}}}"#)
    }

    /// A valid context with a payload the hook could not read is refused, by the
    /// SDK before any hook runs (too deep) or by the hook (not a `Value`):
    /// never a hook that goes on as if there were nothing to check.
    #[test]
    fn a_payload_too_deep_is_refused_before_the_hook() {
        let mut p = Echo::default();
        configure_encoded(&mut p, r#"{"prefix": ">"}"#).unwrap();
        // The deepest the SDK lets through is what the hook can parse.
        let deepest = nested(MAX_PAYLOAD_NESTING);
        let out = invoke_encoded(
            &mut p,
            &input_with_raw_payload("tool-post-invoke", &deepest),
        );
        assert_eq!(out, format!(r#"{{"modify":{{"p":">","r":{deepest}}}}}"#));
        assert!(Payload::from_json(&deepest).try_value().is_ok());
        // One deeper, or 200 deep (which the gateway's own JSON parser passes), is
        // refused with -32603 whether the hook reads the payload (tool-post-invoke)
        // or not (tool-pre-invoke, which this plugin does not implement).
        for depth in [MAX_PAYLOAD_NESTING + 1, 200, 10_000] {
            assert!(Payload::from_json(&nested(depth)).try_value().is_err());
            for hook in ["tool-post-invoke", "tool-pre-invoke"] {
                let out = invoke_encoded(&mut p, &input_with_raw_payload(hook, &nested(depth)));
                let out: Value = serde_json::from_str(&out).unwrap();
                assert_eq!(out["deny"]["code"], json!(INTERNAL_ERROR), "{hook} {depth}");
                assert_eq!(
                    out["deny"]["message"],
                    json!(format!(
                        "plugin echo: malformed input: payload nested deeper than {MAX_PAYLOAD_NESTING}"
                    )),
                );
            }
        }
        // Deep inside an object too; brackets inside strings do not count.
        let deep_object = format!(r#"{{"cmd": "rm -rf /", "pad": {}}}"#, nested(200));
        let out = invoke_encoded(
            &mut p,
            &input_with_raw_payload("tool-pre-invoke", &deep_object),
        );
        assert!(out.starts_with(r#"{"deny":{"code":-32603,"#), "{out}");
        let brackets_in_a_string = json!({"s": "[".repeat(500), "t": "\\\"{{{{"}).to_string();
        assert!(nesting_within(&brackets_in_a_string, 1));
        assert!(!nesting_within("[[]]", 1));
        // Escaped quotes and backslashes inside strings.
        assert!(nesting_within(r#"["\"[[[[", "\\", 1]"#, 1));
        assert!(!nesting_within(r#"["\\", [[1]]]"#, 2));
        assert!(nesting_within(r#"["\\", [[1]]]"#, 3));
        assert!(nesting_within(r#"{"a\u0022[": ["\\\"[", {}]}"#, 3));
        assert!(!nesting_within(r#"{"a\u0022[": ["\\\"[", {}]}"#, 2));
    }

    #[test]
    fn a_malformed_payload_with_a_valid_context_is_a_deny() {
        let mut p = Echo::default();
        configure_encoded(&mut p, r#"{"prefix": ">"}"#).unwrap();
        // Not JSON: the whole input does not parse, so no hook runs, either kind.
        for hook in ["tool-post-invoke", "tool-pre-invoke"] {
            for bad in ["[1,", "{\"a\"}", "tru", "\"unterminated"] {
                let out = invoke_encoded(&mut p, &input_with_raw_payload(hook, bad));
                let out: Value = serde_json::from_str(&out).unwrap();
                assert_eq!(out["deny"]["code"], json!(INTERNAL_ERROR), "{hook} {bad}");
                let message = out["deny"]["message"].as_str().unwrap();
                assert!(
                    message.starts_with("plugin echo: malformed input: "),
                    "{message}"
                );
            }
        }
        // Valid JSON syntax that serde_json will not hold in a Value (a lone
        // surrogate): the SDK passes it; a hook that reads it gets an Err and
        // denies; one that does not read it is not affected by it.
        let lone = r#"{"text": "\ud800"}"#;
        assert!(Payload::from_json(lone).try_value().is_err());
        assert!(Payload::from_json(lone).parse::<Value>().is_err());
        let out = invoke_encoded(&mut p, &input_with_raw_payload("tool-post-invoke", lone));
        assert!(
            out.starts_with(r#"{"deny":{"code":-32603,"message":"echo: "#),
            "{out}"
        );
        let out = invoke_encoded(&mut p, &input_with_raw_payload("tool-pre-invoke", lone));
        assert_eq!(out, r#"{"continue":null}"#);
    }

    #[test]
    fn configure_reports_bad_config() {
        let mut p = Echo::default();
        let err = configure_encoded(&mut p, "{").unwrap_err();
        assert!(err.starts_with("plugin echo: config is not JSON"), "{err}");
        let err = configure_encoded(&mut p, r#"{"prefix": 3}"#).unwrap_err();
        assert!(err.starts_with("invalid config: invalid type"), "{err}");
        // An empty config is `{}`, which this plugin refuses (prefix is required).
        assert!(configure_encoded(&mut p, "")
            .unwrap_err()
            .contains("missing field `prefix`"));
    }
}
