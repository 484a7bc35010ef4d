//! tool-guard: which tools a client may see and call, by name.
//!
//! Config: `allow` and `deny`, lists of tool-name globs (`*`, `?`), and
//! optionally `endpoints`, a table from endpoint (`/mcp`,
//! `/servers/<id>/mcp`) to its own `allow`/`deny`. A tool is allowed when it
//! matches `allow` (absent or empty: every tool) and no `deny`. On an endpoint
//! listed in `endpoints`, its `allow` (when given) replaces the top-level one
//! and its `deny` adds to the top-level one: deny always wins.
//!
//! tool-pre-invoke refuses a call to a tool that is not allowed (-32602,
//! the code MCP servers answer for an unknown tool); list-filter drops such
//! tools from `tools/list`.

#![cfg_attr(target_arch = "wasm32", no_std)]

use mcpgw_plugin_sdk::glob;
use mcpgw_plugin_sdk::prelude::*;
use serde::Deserialize;

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Lists {
    allow: Option<Vec<String>>,
    #[serde(default)]
    deny: Vec<String>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(flatten)]
    lists: Lists,
    #[serde(default)]
    endpoints: BTreeMap<String, Lists>,
}

#[derive(Default)]
pub struct ToolGuard {
    config: Config,
}

impl ToolGuard {
    /// Whether `tool` may be seen and called on `endpoint`.
    pub fn allowed(&self, endpoint: &str, tool: &str) -> bool {
        let top = &self.config.lists;
        let local = self.config.endpoints.get(endpoint);
        let allow = local.and_then(|l| l.allow.as_ref()).or(top.allow.as_ref());
        let allowed = allow.is_none_or(|a| a.is_empty() || glob::any(a, tool));
        allowed && !glob::any(&top.deny, tool) && !local.is_some_and(|l| glob::any(&l.deny, tool))
    }
}

impl Plugin for ToolGuard {
    const NAME: &'static str = "tool-guard";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const HOOKS: &'static [Hook] = &[Hook::ToolPreInvoke, Hook::ListFilter];

    fn configure(&mut self, config: Value) -> Result<(), String> {
        self.config = mcpgw_plugin_sdk::config(config)?;
        Ok(())
    }

    fn tool_pre_invoke(&mut self, ctx: &Context, params: Payload<'_>) -> Action {
        // The gateway names the tool in the context: the params are parsed only without it.
        let params = if ctx.name.is_some() {
            Value::Null
        } else {
            match params.try_value() {
                Ok(params) => params,
                Err(e) => {
                    return Action::deny(
                        mcpgw_plugin_sdk::INTERNAL_ERROR,
                        format!("tool-guard: params unreadable: {e}"),
                    )
                }
            }
        };
        let name = ctx.name.as_deref().or_else(|| params.get("name")?.as_str());
        match name {
            Some(tool) if self.allowed(&ctx.endpoint, tool) => Action::Continue,
            Some(tool) => Action::deny(
                mcpgw_plugin_sdk::INVALID_PARAMS,
                format!(
                    "Unknown tool: {tool} (not allowed on {} by tool-guard)",
                    ctx.endpoint
                ),
            ),
            None => Action::deny(
                mcpgw_plugin_sdk::INVALID_PARAMS,
                "tool-guard: tools/call without a tool name",
            ),
        }
    }

    fn list_filter(&mut self, ctx: &Context, result: Payload<'_>) -> Action {
        if ctx.method != "tools/list" {
            return Action::Continue;
        }
        // A list it cannot read is refused: it could name tools it hides.
        let mut result = match result.try_value() {
            Ok(result) => result,
            Err(e) => {
                return Action::deny(
                    mcpgw_plugin_sdk::INTERNAL_ERROR,
                    format!("tool-guard: list unreadable: {e}"),
                )
            }
        };
        let Some(tools) = result.get_mut("tools").and_then(Value::as_array_mut) else {
            return Action::Continue;
        };
        let before = tools.len();
        tools.retain(|t| {
            t.get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| self.allowed(&ctx.endpoint, n))
        });
        if tools.len() == before {
            Action::Continue
        } else {
            Action::Modify(result)
        }
    }
}

export_plugin!(ToolGuard);

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(config: Value) -> ToolGuard {
        let mut g = ToolGuard::default();
        g.configure(config).unwrap();
        g
    }

    fn call(g: &mut ToolGuard, endpoint: &str, tool: &str) -> Action {
        let mut ctx = Context::new(Hook::ToolPreInvoke, "tools/call", Some(tool));
        ctx.endpoint = endpoint.into();
        g.tool_pre_invoke(&ctx, json!({"name": tool, "arguments": {}}).into())
    }

    #[test]
    fn a_list_it_cannot_read_is_refused() {
        let mut g = guard(json!({"deny": ["secret"]}));
        let ctx = Context::new(Hook::ListFilter, "tools/list", None);
        let list = r#"{"tools": [{"name": "secret", "description": "\ud800"}]}"#;
        let action = g.list_filter(&ctx, Payload::from_json(list));
        assert!(
            matches!(&action, Action::Deny { code: -32603, message } if message.starts_with("tool-guard: list unreadable: ")),
            "{action:?}"
        );
    }

    #[test]
    fn allow_and_deny_with_deny_winning() {
        let mut g = guard(json!({"allow": ["echo", "weather__*"], "deny": ["weather__admin_*"]}));
        assert_eq!(call(&mut g, "/mcp", "echo"), Action::Continue);
        assert_eq!(call(&mut g, "/mcp", "weather__forecast"), Action::Continue);
        assert_eq!(
            call(&mut g, "/mcp", "weather__admin_reset"),
            Action::deny(
                -32602,
                "Unknown tool: weather__admin_reset (not allowed on /mcp by tool-guard)"
            )
        );
        assert!(matches!(
            call(&mut g, "/mcp", "add"),
            Action::Deny { code: -32602, .. }
        ));
    }

    #[test]
    fn no_allow_list_allows_everything_not_denied() {
        let mut g = guard(json!({"deny": ["sl??p"]}));
        assert_eq!(call(&mut g, "/mcp", "add"), Action::Continue);
        assert!(matches!(call(&mut g, "/mcp", "sleep"), Action::Deny { .. }));
        let mut g = guard(json!({}));
        assert_eq!(call(&mut g, "/mcp", "anything"), Action::Continue);
    }

    #[test]
    fn per_endpoint_allow_replaces_and_deny_adds() {
        let mut g = guard(json!({
            "allow": ["echo"], "deny": ["*secret*"],
            "endpoints": {"/servers/weather/mcp": {"allow": ["*"], "deny": ["admin_*"]}}
        }));
        assert!(matches!(
            call(&mut g, "/mcp", "forecast"),
            Action::Deny { .. }
        ));
        assert_eq!(
            call(&mut g, "/servers/weather/mcp", "forecast"),
            Action::Continue
        );
        assert!(matches!(
            call(&mut g, "/servers/weather/mcp", "admin_x"),
            Action::Deny { .. }
        ));
        assert!(matches!(
            call(&mut g, "/servers/weather/mcp", "get_secret"),
            Action::Deny { .. }
        ));
        // An endpoint entry without `allow` keeps the top-level one.
        let g =
            guard(json!({"allow": ["echo"], "endpoints": {"/servers/x/mcp": {"deny": ["e*"]}}}));
        assert!(!g.allowed("/servers/x/mcp", "echo"));
        assert!(!g.allowed("/servers/x/mcp", "add"));
        assert!(g.allowed("/mcp", "echo"));
    }

    #[test]
    fn list_filter_drops_denied_tools_only_on_tools_list() {
        let mut g = guard(json!({"deny": ["sleep", "log"]}));
        let ctx = Context::new(Hook::ListFilter, "tools/list", None);
        let result = json!({"tools": [{"name": "echo"}, {"name": "sleep"}, {"name": "add"}, {"name": "log"}],
                            "nextCursor": "c"});
        assert_eq!(
            g.list_filter(&ctx, result.into()),
            Action::Modify(
                json!({"tools": [{"name": "echo"}, {"name": "add"}], "nextCursor": "c"})
            )
        );
        assert_eq!(
            g.list_filter(&ctx, json!({"tools": [{"name": "echo"}]}).into()),
            Action::Continue
        );
        let prompts = Context::new(Hook::ListFilter, "prompts/list", None);
        assert_eq!(
            g.list_filter(&prompts, json!({"prompts": [{"name": "sleep"}]}).into()),
            Action::Continue
        );
    }

    #[test]
    fn bad_config_is_refused() {
        let mut g = ToolGuard::default();
        assert!(g
            .configure(json!({"allow": "echo"}))
            .unwrap_err()
            .starts_with("invalid config"));
        assert!(g
            .configure(json!({"alow": ["echo"]}))
            .unwrap_err()
            .contains("unknown field"));
    }
}
