//! rate-limit: a token bucket per caller on `tools/call`.
//!
//! The caller is the principal's subject when authentication is on, else the
//! session (its hash), else everyone together. Config: `rate_per_s` (tokens
//! added per second, > 0), `burst` (the bucket's size, >= 1) and `max_keys`
//! (how many callers are tracked at once, default 10000: past it, the bucket
//! idle longest is forgotten, so memory stays bounded). A call with no token
//! left is refused with -32000 "rate limit exceeded" and when to retry.
//! Needs the `clock` grant (it reads the host's monotonic clock).

#![cfg_attr(target_arch = "wasm32", no_std)]

use mcpgw_plugin_sdk::prelude::*;
use serde::Deserialize;

/// The JSON-RPC code of a refused call (server-defined range).
pub const RATE_LIMITED: i32 = -32000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    rate_per_s: f64,
    burst: f64,
    #[serde(default = "default_max_keys")]
    max_keys: usize,
}

fn default_max_keys() -> usize {
    10_000
}

struct Bucket {
    tokens: f64,
    last_ms: u64,
}

#[derive(Default)]
pub struct RateLimit {
    config: Option<Config>,
    buckets: BTreeMap<String, Bucket>,
}

impl RateLimit {
    /// Take a token for `key` at `now_ms`: `Ok`, or how many ms until one is there.
    pub fn take(&mut self, key: &str, now_ms: u64) -> Result<(), u64> {
        let Some(config) = &self.config else {
            return Ok(()); // not configured: configure refuses that, so never reached
        };
        if !self.buckets.contains_key(key) && self.buckets.len() >= config.max_keys {
            let idle = self
                .buckets
                .iter()
                .min_by_key(|(_, b)| b.last_ms)
                .map(|(k, _)| k.clone());
            if let Some(idle) = idle {
                self.buckets.remove(&idle);
            }
        }
        let bucket = self.buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: config.burst,
            last_ms: now_ms,
        });
        let elapsed = now_ms.saturating_sub(bucket.last_ms) as f64;
        bucket.tokens = (bucket.tokens + elapsed * config.rate_per_s / 1000.0).min(config.burst);
        bucket.last_ms = bucket.last_ms.max(now_ms);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - bucket.tokens) * 1000.0 / config.rate_per_s) as u64 + 1)
        }
    }
}

/// The bucket's key and how the refusal names it.
fn caller(ctx: &Context) -> (String, &'static str) {
    if let Some(p) = &ctx.principal {
        (format!("principal:{}", p.subject), "this principal")
    } else if let Some(s) = &ctx.session_hash {
        (format!("session:{s}"), "this session")
    } else {
        ("global".to_owned(), "the gateway")
    }
}

impl Plugin for RateLimit {
    const NAME: &'static str = "rate-limit";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const HOOKS: &'static [Hook] = &[Hook::ToolPreInvoke];

    fn configure(&mut self, config: Value) -> Result<(), String> {
        let config: Config = mcpgw_plugin_sdk::config(config)?;
        // Written so that NaN fails too.
        if !(config.rate_per_s > 0.0 && config.rate_per_s.is_finite()) {
            return Err("invalid config: rate_per_s must be a number > 0".to_owned());
        }
        if !(config.burst >= 1.0 && config.burst.is_finite()) {
            return Err("invalid config: burst must be a number >= 1".to_owned());
        }
        if config.max_keys == 0 {
            return Err("invalid config: max_keys must be >= 1".to_owned());
        }
        self.config = Some(config);
        self.buckets.clear();
        Ok(())
    }

    fn tool_pre_invoke(&mut self, ctx: &Context, _params: Payload<'_>) -> Action {
        let (key, who) = caller(ctx);
        match self.take(&key, now_ms()) {
            Ok(()) => Action::Continue,
            Err(retry_ms) => Action::deny(
                RATE_LIMITED,
                format!("rate limit exceeded for {who}; retry in {retry_ms} ms"),
            ),
        }
    }
}

export_plugin!(RateLimit);

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(config: Value) -> RateLimit {
        let mut r = RateLimit::default();
        r.configure(config).unwrap();
        r
    }

    #[test]
    fn burst_then_refill_at_the_rate() {
        let mut r = limiter(json!({"rate_per_s": 2, "burst": 3}));
        assert_eq!(r.take("a", 1000), Ok(()));
        assert_eq!(r.take("a", 1000), Ok(()));
        assert_eq!(r.take("a", 1000), Ok(()));
        assert_eq!(r.take("a", 1000), Err(501)); // one token takes 500 ms at 2/s
        assert_eq!(r.take("a", 1250), Err(251));
        assert_eq!(r.take("a", 1500), Ok(()));
        // Idle long: full again, never above burst.
        for _ in 0..3 {
            assert_eq!(r.take("a", 100_000), Ok(()));
        }
        assert!(r.take("a", 100_000).is_err());
        // A clock that (wrongly) went back adds nothing.
        assert!(r.take("a", 50_000).is_err());
    }

    #[test]
    fn keys_are_separate_and_bounded() {
        let mut r = limiter(json!({"rate_per_s": 1, "burst": 1, "max_keys": 2}));
        assert_eq!(r.take("a", 0), Ok(()));
        assert_eq!(r.take("b", 10), Ok(()));
        assert!(r.take("a", 20).is_err());
        assert_eq!(r.take("c", 30), Ok(())); // forgets "b" (idle longest)
        assert_eq!(r.buckets.len(), 2);
        assert!(r.buckets.contains_key("a") && r.buckets.contains_key("c"));
    }

    #[test]
    fn caller_is_principal_then_session_then_global() {
        let mut ctx = Context::new(Hook::ToolPreInvoke, "tools/call", Some("echo"));
        assert_eq!(caller(&ctx).0, "global");
        ctx.session_hash = Some("h1".into());
        assert_eq!(caller(&ctx).0, "session:h1");
        ctx.principal = Some(Principal {
            subject: "alice".into(),
            ..Default::default()
        });
        assert_eq!(caller(&ctx).0, "principal:alice");
    }

    #[test]
    fn refusal_through_the_hook() {
        let mut r = limiter(json!({"rate_per_s": 0.001, "burst": 1}));
        let mut ctx = Context::new(Hook::ToolPreInvoke, "tools/call", Some("echo"));
        ctx.session_hash = Some("h".into());
        assert_eq!(r.tool_pre_invoke(&ctx, json!({}).into()), Action::Continue);
        match r.tool_pre_invoke(&ctx, json!({}).into()) {
            Action::Deny { code, message } => {
                assert_eq!(code, RATE_LIMITED);
                assert!(
                    message.starts_with("rate limit exceeded for this session; retry in "),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_config_is_refused() {
        let mut r = RateLimit::default();
        for bad in [
            json!({}),
            json!({"rate_per_s": 0, "burst": 1}),
            json!({"rate_per_s": 1, "burst": 0.5}),
            json!({"rate_per_s": 1, "burst": 1, "max_keys": 0}),
            json!({"rate_per_s": -1, "burst": 2}),
        ] {
            assert!(r.configure(bad.clone()).is_err(), "{bad}");
        }
    }
}
