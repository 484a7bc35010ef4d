//! args-guard: refuses tool calls whose arguments match a rule.
//!
//! Config: `rules`, a list of tables, each with
//! - `pointer`: a JSON pointer into the call's `arguments` (`/path`,
//!   `/files/0/name`; `""` is the whole arguments object); a rule whose
//!   pointer finds nothing does not apply;
//! - `tools` (optional): tool-name globs the rule applies to (default: all);
//! - at least one test: `glob` (the value, a string, matches this glob),
//!   `contains` (the value, a string, contains this text) or `max_bytes` (the
//!   value's JSON text is longer than this). Non-string values are tested by
//!   their JSON text for `glob` and `contains`.
//!
//! The first rule that matches refuses the call with -32602 (invalid params),
//! naming the pointer and the test.

#![cfg_attr(target_arch = "wasm32", no_std)]

use mcpgw_plugin_sdk::glob;
use mcpgw_plugin_sdk::prelude::*;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    pointer: String,
    tools: Option<Vec<String>>,
    glob: Option<String>,
    contains: Option<String>,
    max_bytes: Option<usize>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    rules: Vec<Rule>,
}

#[derive(Default)]
pub struct ArgsGuard {
    config: Config,
}

impl ArgsGuard {
    /// Why the call of `tool` with `arguments` is refused, if it is.
    pub fn check(&self, tool: &str, arguments: &Value) -> Option<String> {
        for rule in &self.config.rules {
            if rule.tools.as_ref().is_some_and(|t| !glob::any(t, tool)) {
                continue;
            }
            let Some(value) = arguments.pointer(&rule.pointer) else {
                continue;
            };
            let text = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let at = &rule.pointer;
            if let Some(max) = rule.max_bytes {
                let size = if value.is_string() {
                    text.len() + 2
                } else {
                    text.len()
                };
                if size > max {
                    return Some(format!(
                        "argument {at:?} of {tool} is {size} bytes, more than {max}"
                    ));
                }
            }
            if let Some(pattern) = &rule.glob {
                if glob::matches(pattern, &text) {
                    return Some(format!(
                        "argument {at:?} of {tool} matches the refused pattern {pattern:?}"
                    ));
                }
            }
            if let Some(needle) = &rule.contains {
                if text.contains(needle.as_str()) {
                    return Some(format!(
                        "argument {at:?} of {tool} contains the refused text {needle:?}"
                    ));
                }
            }
        }
        None
    }
}

impl Plugin for ArgsGuard {
    const NAME: &'static str = "args-guard";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const HOOKS: &'static [Hook] = &[Hook::ToolPreInvoke];

    fn configure(&mut self, config: Value) -> Result<(), String> {
        let config: Config = mcpgw_plugin_sdk::config(config)?;
        for (i, rule) in config.rules.iter().enumerate() {
            if !(rule.pointer.is_empty() || rule.pointer.starts_with('/')) {
                return Err(format!(
                    "invalid config: rules[{i}].pointer must be \"\" or start with /"
                ));
            }
            if rule.glob.is_none() && rule.contains.is_none() && rule.max_bytes.is_none() {
                return Err(format!(
                    "invalid config: rules[{i}] needs glob, contains or max_bytes"
                ));
            }
        }
        self.config = config;
        Ok(())
    }

    fn tool_pre_invoke(&mut self, ctx: &Context, params: Payload<'_>) -> Action {
        // The arguments are what this plugin checks: one it cannot read is refused.
        let params = match params.try_value() {
            Ok(params) => params,
            Err(e) => {
                return Action::deny(
                    mcpgw_plugin_sdk::INTERNAL_ERROR,
                    format!("args-guard: params unreadable: {e}"),
                )
            }
        };
        let tool = ctx
            .name
            .as_deref()
            .or_else(|| params.get("name")?.as_str())
            .unwrap_or("");
        let empty = Value::Object(Default::default());
        let arguments = params.get("arguments").unwrap_or(&empty);
        match self.check(tool, arguments) {
            Some(why) => Action::deny(
                mcpgw_plugin_sdk::INVALID_PARAMS,
                format!("args-guard: {why}"),
            ),
            None => Action::Continue,
        }
    }
}

export_plugin!(ArgsGuard);

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(rules: Value) -> ArgsGuard {
        let mut g = ArgsGuard::default();
        g.configure(json!({ "rules": rules })).unwrap();
        g
    }

    fn call(g: &mut ArgsGuard, tool: &str, arguments: Value) -> Action {
        let ctx = Context::new(Hook::ToolPreInvoke, "tools/call", Some(tool));
        g.tool_pre_invoke(&ctx, json!({"name": tool, "arguments": arguments}).into())
    }

    #[test]
    fn params_it_cannot_read_are_refused() {
        let mut g = guard(json!([{"pointer": "/cmd", "contains": "rm -rf"}]));
        let ctx = Context::new(Hook::ToolPreInvoke, "tools/call", Some("echo"));
        // A lone surrogate: JSON syntax serde_json will not hold in a Value.
        let params = r#"{"name": "echo", "arguments": {"cmd": "rm -rf /", "x": "\ud800"}}"#;
        let action = g.tool_pre_invoke(&ctx, Payload::from_json(params));
        assert!(
            matches!(&action, Action::Deny { code: -32603, message } if message.starts_with("args-guard: params unreadable: ")),
            "{action:?}"
        );
    }

    #[test]
    fn glob_rule_names_the_pointer() {
        let mut g = guard(json!([{"pointer": "/path", "glob": "*.env", "tools": ["fs__*"]}]));
        assert_eq!(
            call(&mut g, "fs__read", json!({"path": "/app/.env"})),
            Action::deny(
                -32602,
                "args-guard: argument \"/path\" of fs__read matches the refused pattern \"*.env\""
            )
        );
        assert_eq!(
            call(&mut g, "fs__read", json!({"path": "/app/main.rs"})),
            Action::Continue
        );
        // Other tools, or no such argument: the rule does not apply.
        assert_eq!(
            call(&mut g, "echo", json!({"path": "/app/.env"})),
            Action::Continue
        );
        assert_eq!(call(&mut g, "fs__read", json!({})), Action::Continue);
    }

    #[test]
    fn contains_and_nested_pointers() {
        let mut g = guard(json!([{"pointer": "/query/sql", "contains": "DROP TABLE"}]));
        let bad = json!({"query": {"sql": "select 1; DROP TABLE users"}});
        assert!(
            matches!(call(&mut g, "db", bad), Action::Deny { code: -32602, message } if message.contains("\"/query/sql\""))
        );
        assert_eq!(
            call(&mut g, "db", json!({"query": {"sql": "select 1"}})),
            Action::Continue
        );
        // Non-strings are tested by their JSON text.
        let mut g = guard(json!([{"pointer": "/ids", "contains": "0"}]));
        assert!(matches!(
            call(&mut g, "x", json!({"ids": [1, 20]})),
            Action::Deny { .. }
        ));
    }

    #[test]
    fn max_bytes_counts_json_text() {
        let mut g = guard(json!([{"pointer": "", "max_bytes": 20}]));
        assert_eq!(
            call(&mut g, "echo", json!({"text": "short"})),
            Action::Continue
        );
        assert_eq!(
            call(&mut g, "echo", json!({"text": "a bit longer than that"})),
            Action::deny(
                -32602,
                "args-guard: argument \"\" of echo is 33 bytes, more than 20"
            )
        );
        let mut g = guard(json!([{"pointer": "/text", "max_bytes": 4}]));
        assert_eq!(
            call(&mut g, "echo", json!({"text": "ab"})),
            Action::Continue
        ); // "ab" with quotes: 4
        assert!(matches!(
            call(&mut g, "echo", json!({"text": "abc"})),
            Action::Deny { .. }
        ));
    }

    #[test]
    fn bad_rules_are_refused_at_configure() {
        let mut g = ArgsGuard::default();
        let err = g
            .configure(json!({"rules": [{"pointer": "path", "glob": "*"}]}))
            .unwrap_err();
        assert!(err.contains("rules[0].pointer"), "{err}");
        let err = g
            .configure(json!({"rules": [{"pointer": "/p"}]}))
            .unwrap_err();
        assert!(err.contains("needs glob, contains or max_bytes"), "{err}");
        assert!(g
            .configure(json!({"rules": [{"pointer": "/p", "max": 1}]}))
            .is_err());
    }
}
