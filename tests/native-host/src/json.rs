//! Typed WIT values <-> the encoded JSON of `docs/edge-contract.md` §14.
//!
//! The encoded forms use snake_case keys, enum values as their WIT names and
//! always carry every key (absent options are `null`), so a typed result run
//! through [`result_to_json`] can be compared with `evaluate-encoded`'s reply
//! as plain [`serde_json::Value`]s.

use serde_json::{json, Map, Value};

use crate::{
    Config, ContentKind, EdgeError, Outcome, Presence, RequestContext, RequestHead, Route, Verdict,
    VersionState,
};

/// The eight keys of an encoded config, in WIT order.
pub const CONFIG_KEYS: [&str; 8] = [
    "allowed_origins",
    "allowed_hosts",
    "allow_credentials",
    "allowed_headers",
    "max_age",
    "supported_versions",
    "default_version",
    "path_prefix",
];

pub fn route_name(r: Route) -> &'static str {
    match r {
        Route::Mcp => "mcp",
        Route::Sse => "sse",
        Route::Message => "message",
        Route::Ws => "ws",
        Route::Health => "health",
        Route::Other => "other",
    }
}

pub fn presence_name(p: Presence) -> &'static str {
    match p {
        Presence::Absent => "absent",
        Presence::Valid => "valid",
        Presence::Invalid => "invalid",
    }
}

pub fn version_state_name(v: VersionState) -> &'static str {
    match v {
        VersionState::Absent => "absent",
        VersionState::Supported => "supported",
        VersionState::Unsupported => "unsupported",
    }
}

pub fn content_kind_name(c: ContentKind) -> &'static str {
    match c {
        ContentKind::Absent => "absent",
        ContentKind::Json => "json",
        ContentKind::Other => "other",
    }
}

pub fn verdict_name(v: Verdict) -> &'static str {
    match v {
        Verdict::Absent => "absent",
        Verdict::Allowed => "allowed",
        Verdict::Denied => "denied",
    }
}

fn opt(s: &Option<String>) -> Value {
    match s {
        Some(s) => Value::String(s.clone()),
        None => Value::Null,
    }
}

pub fn headers_to_json(h: &[(String, String)]) -> Value {
    Value::Array(
        h.iter()
            .map(|(n, v)| Value::Array(vec![Value::String(n.clone()), Value::String(v.clone())]))
            .collect(),
    )
}

/// The `forward` payload.
pub fn context_to_json(c: &RequestContext) -> Value {
    // Built key by key (not with `json!`) so the key order is the spec's.
    let mut m = Map::new();
    m.insert("method".into(), json!(c.method));
    m.insert("path".into(), json!(c.path));
    m.insert("route".into(), json!(route_name(c.route)));
    m.insert("server_id".into(), opt(&c.server_id));
    m.insert(
        "session_state".into(),
        json!(presence_name(c.session_state)),
    );
    m.insert("session_id".into(), opt(&c.session_id));
    m.insert("protocol_version".into(), opt(&c.protocol_version));
    m.insert(
        "protocol_state".into(),
        json!(version_state_name(c.protocol_state)),
    );
    m.insert("revision".into(), opt(&c.revision));
    m.insert("accept_json".into(), json!(c.accept_json));
    m.insert("accept_sse".into(), json!(c.accept_sse));
    m.insert(
        "content_type".into(),
        json!(content_kind_name(c.content_type)),
    );
    m.insert("origin".into(), opt(&c.origin));
    m.insert("origin_state".into(), json!(verdict_name(c.origin_state)));
    m.insert("host_state".into(), json!(verdict_name(c.host_state)));
    m.insert("last_event_id".into(), opt(&c.last_event_id));
    m.insert("mcp_method".into(), opt(&c.mcp_method));
    m.insert("mcp_name".into(), opt(&c.mcp_name));
    m.insert("cors_headers".into(), headers_to_json(&c.cors_headers));
    Value::Object(m)
}

/// `{"preflight": {...}}` or `{"forward": {...}}`.
pub fn outcome_to_json(o: &Outcome) -> Value {
    match o {
        Outcome::Preflight(p) => {
            let mut inner = Map::new();
            inner.insert("status".into(), json!(p.status));
            inner.insert("headers".into(), headers_to_json(&p.headers));
            json!({ "preflight": Value::Object(inner) })
        }
        Outcome::Forward(c) => json!({ "forward": context_to_json(c) }),
    }
}

/// The WIT case name of an error.
pub fn error_kind(e: &EdgeError) -> &'static str {
    match e {
        EdgeError::NotConfigured => "not-configured",
        EdgeError::InvalidConfig(_) => "invalid-config",
        EdgeError::MalformedInput(_) => "malformed-input",
    }
}

/// `{"error": {"kind": ..., "message": ...}}`. `not-configured` carries no
/// message in WIT; its message is `""` here (messages are for people and are
/// never compared across the typed/encoded boundary for that case).
pub fn error_to_json(e: &EdgeError) -> Value {
    let message = match e {
        EdgeError::NotConfigured => String::new(),
        EdgeError::InvalidConfig(m) | EdgeError::MalformedInput(m) => m.clone(),
    };
    let mut inner = Map::new();
    inner.insert("kind".into(), json!(error_kind(e)));
    inner.insert("message".into(), json!(message));
    json!({ "error": Value::Object(inner) })
}

/// An `evaluate` result in encoded form.
pub fn result_to_json(r: &Result<Outcome, EdgeError>) -> Value {
    match r {
        Ok(o) => outcome_to_json(o),
        Err(e) => error_to_json(e),
    }
}

/// A `configure` result in the form the vectors use: `{"ok": true}` or the
/// error object.
pub fn configure_result_to_json(r: &Result<(), EdgeError>) -> Value {
    match r {
        Ok(()) => json!({ "ok": true }),
        Err(e) => error_to_json(e),
    }
}

/// Parses an encoded reply; text that is not JSON becomes `Value::String`
/// holding the raw reply (so it fails every comparison, visibly).
pub fn parse_reply(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.to_owned()))
}

/// `configure-encoded`'s reply: `""` is `{"ok": true}`, anything else is
/// parsed like [`parse_reply`].
pub fn parse_configure_encoded(s: &str) -> Value {
    if s.is_empty() {
        json!({ "ok": true })
    } else {
        parse_reply(s)
    }
}

/// The encoded head `[method, path, query, [[name, value], ...]]` as text.
pub fn encode_head(h: &RequestHead) -> String {
    head_to_json(h).to_string()
}

pub fn head_to_json(h: &RequestHead) -> Value {
    json!([h.method, h.path, h.query, headers_to_json(&h.headers)])
}

/// A typed config as the encoded JSON object.
pub fn config_to_json(c: &Config) -> Value {
    let mut m = Map::new();
    m.insert("allowed_origins".into(), json!(c.allowed_origins));
    m.insert("allowed_hosts".into(), json!(c.allowed_hosts));
    m.insert("allow_credentials".into(), json!(c.allow_credentials));
    m.insert("allowed_headers".into(), json!(c.allowed_headers));
    m.insert("max_age".into(), json!(c.max_age));
    m.insert("supported_versions".into(), json!(c.supported_versions));
    m.insert("default_version".into(), json!(c.default_version));
    m.insert("path_prefix".into(), json!(c.path_prefix));
    Value::Object(m)
}

fn string_list(v: &Value, key: &str) -> Result<Vec<String>, String> {
    let arr = v
        .as_array()
        .ok_or_else(|| format!("{key}: expected a list of strings, got {v}"))?;
    arr.iter()
        .map(|x| {
            x.as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("{key}: expected a list of strings, got element {x}"))
        })
        .collect()
}

/// A JSON config object as the typed [`Config`]. Strict like
/// `configure-encoded`: exactly the eight keys, each of its WIT type. An
/// error means the config cannot be expressed through the typed entry point
/// at all (only the encoded one can be asked about it).
pub fn config_from_json(v: &Value) -> Result<Config, String> {
    let obj = v
        .as_object()
        .ok_or_else(|| format!("config must be a JSON object, got {v}"))?;
    for k in obj.keys() {
        if !CONFIG_KEYS.contains(&k.as_str()) {
            return Err(format!("unknown config key {k:?}"));
        }
    }
    let get = |k: &str| {
        obj.get(k)
            .ok_or_else(|| format!("missing config key {k:?}"))
    };
    let string = |k: &str| -> Result<String, String> {
        let x = get(k)?;
        x.as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("{k}: expected a string, got {x}"))
    };
    let allow_credentials = {
        let x = get("allow_credentials")?;
        x.as_bool()
            .ok_or_else(|| format!("allow_credentials: expected a bool, got {x}"))?
    };
    let max_age = {
        let x = get("max_age")?;
        x.as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| format!("max_age: expected a u32, got {x}"))?
    };
    Ok(Config {
        allowed_origins: string_list(get("allowed_origins")?, "allowed_origins")?,
        allowed_hosts: string_list(get("allowed_hosts")?, "allowed_hosts")?,
        allow_credentials,
        allowed_headers: string_list(get("allowed_headers")?, "allowed_headers")?,
        max_age,
        supported_versions: string_list(get("supported_versions")?, "supported_versions")?,
        default_version: string("default_version")?,
        path_prefix: string("path_prefix")?,
    })
}

/// `base` updated key by key with every object in `overrides` (in order).
/// Non-object overrides are an error.
pub fn merge_config(base: &Value, overrides: &[&Value]) -> Result<Value, String> {
    let mut out = base
        .as_object()
        .cloned()
        .ok_or_else(|| format!("base config must be an object, got {base}"))?;
    for o in overrides {
        if o.is_null() {
            continue;
        }
        let o = o
            .as_object()
            .ok_or_else(|| format!("config override must be an object, got {o}"))?;
        for (k, v) in o {
            out.insert(k.clone(), v.clone());
        }
    }
    Ok(Value::Object(out))
}

/// A request head from the vector format
/// `{"method": .., "path": .., "query": .., "headers": [[n, v], ...]}`
/// (`query` and `headers` may be left out: `""` and `[]`).
pub fn head_from_json(v: &Value) -> Result<RequestHead, String> {
    let obj = v
        .as_object()
        .ok_or_else(|| format!("request must be an object, got {v}"))?;
    for k in obj.keys() {
        if !["method", "path", "query", "headers"].contains(&k.as_str()) {
            return Err(format!("unknown request key {k:?}"));
        }
    }
    let string = |k: &str, default: Option<&str>| -> Result<String, String> {
        match (obj.get(k), default) {
            (Some(Value::String(s)), _) => Ok(s.clone()),
            (None, Some(d)) => Ok(d.to_owned()),
            (Some(x), _) => Err(format!("request.{k}: expected a string, got {x}")),
            (None, None) => Err(format!("request.{k} is missing")),
        }
    };
    let headers = match obj.get("headers") {
        None => Vec::new(),
        Some(Value::Array(hs)) => hs
            .iter()
            .map(|h| match h.as_array().map(|a| a.as_slice()) {
                Some([Value::String(n), Value::String(v)]) => Ok((n.clone(), v.clone())),
                _ => Err(format!("request.headers: expected [name, value], got {h}")),
            })
            .collect::<Result<_, _>>()?,
        Some(x) => return Err(format!("request.headers: expected a list, got {x}")),
    };
    Ok(RequestHead {
        method: string("method", None)?,
        path: string("path", None)?,
        query: string("query", Some(""))?,
        headers,
    })
}

/// Typed result (already through [`result_to_json`]) against the encoded
/// reply: exact JSON equality, except that a typed `not-configured` has no
/// message in WIT, so there the encoded message only has to be a string.
pub fn typed_matches_encoded(typed: &Value, encoded: &Value) -> bool {
    let is_not_configured = |v: &Value| v.pointer("/error/kind") == Some(&json!("not-configured"));
    if is_not_configured(typed) {
        is_not_configured(encoded)
            && encoded
                .pointer("/error/message")
                .is_some_and(Value::is_string)
            && encoded.as_object().is_some_and(|o| o.len() == 1)
            && encoded["error"].as_object().is_some_and(|o| o.len() == 2)
    } else {
        typed == encoded
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PreflightResponse, RequestContext};

    fn base() -> Value {
        json!({
            "allowed_origins": ["http://localhost:*"],
            "allowed_hosts": ["localhost"],
            "allow_credentials": false,
            "allowed_headers": ["content-type"],
            "max_age": 600,
            "supported_versions": ["2025-03-26"],
            "default_version": "2025-03-26",
            "path_prefix": ""
        })
    }

    #[test]
    fn config_round_trip_and_strictness() {
        let c = config_from_json(&base()).unwrap();
        assert_eq!(config_to_json(&c), base());
        let mut v = base();
        v["extra"] = json!(1);
        assert!(config_from_json(&v).is_err());
        for k in CONFIG_KEYS {
            let mut v = base();
            v.as_object_mut().unwrap().remove(k);
            assert!(config_from_json(&v).is_err(), "missing {k}");
            let mut v = base();
            v[k] = json!(null);
            assert!(config_from_json(&v).is_err(), "null {k}");
        }
        let mut v = base();
        v["max_age"] = json!(4_294_967_296u64);
        assert!(config_from_json(&v).is_err());
        v["max_age"] = json!(4_294_967_295u64);
        assert_eq!(config_from_json(&v).unwrap().max_age, u32::MAX);
    }

    #[test]
    fn merge_is_key_by_key() {
        let m = merge_config(
            &base(),
            &[
                &json!({"max_age": 1}),
                &Value::Null,
                &json!({"max_age": 2, "path_prefix": "/x"}),
            ],
        )
        .unwrap();
        assert_eq!(m["max_age"], json!(2));
        assert_eq!(m["path_prefix"], json!("/x"));
        assert_eq!(m["allowed_hosts"], json!(["localhost"]));
        assert!(merge_config(&base(), &[&json!([1])]).is_err());
    }

    #[test]
    fn outcome_encoding_matches_section_14() {
        let ctx = RequestContext {
            method: "POST".into(),
            path: "/mcp".into(),
            route: Route::Mcp,
            server_id: None,
            session_state: Presence::Absent,
            session_id: None,
            protocol_version: None,
            protocol_state: VersionState::Absent,
            revision: Some("2025-03-26".into()),
            accept_json: true,
            accept_sse: true,
            content_type: ContentKind::Json,
            origin: None,
            origin_state: Verdict::Absent,
            host_state: Verdict::Allowed,
            last_event_id: None,
            mcp_method: None,
            mcp_name: None,
            cors_headers: vec![("vary".into(), "Origin".into())],
        };
        let expected: Value = serde_json::from_str(
            r#"{"forward": {"method": "POST", "path": "/mcp", "route": "mcp", "server_id": null,
             "session_state": "absent", "session_id": null,
             "protocol_version": null, "protocol_state": "absent", "revision": "2025-03-26",
             "accept_json": true, "accept_sse": true, "content_type": "json",
             "origin": null, "origin_state": "absent", "host_state": "allowed",
             "last_event_id": null, "mcp_method": null, "mcp_name": null,
             "cors_headers": [["vary", "Origin"]]}}"#,
        )
        .unwrap();
        assert_eq!(result_to_json(&Ok(Outcome::Forward(ctx))), expected);

        let pre = Outcome::Preflight(PreflightResponse {
            status: 204,
            headers: vec![(
                "access-control-allow-origin".into(),
                "http://localhost:3000".into(),
            )],
        });
        assert_eq!(
            outcome_to_json(&pre),
            json!({"preflight": {"status": 204, "headers": [["access-control-allow-origin", "http://localhost:3000"]]}})
        );
        assert_eq!(
            result_to_json(&Err(EdgeError::MalformedInput("m".into()))),
            json!({"error": {"kind": "malformed-input", "message": "m"}})
        );
        assert_eq!(
            configure_result_to_json(&Err(EdgeError::InvalidConfig("c".into()))),
            json!({"error": {"kind": "invalid-config", "message": "c"}})
        );
        assert_eq!(configure_result_to_json(&Ok(())), json!({"ok": true}));
        assert_eq!(parse_configure_encoded(""), json!({"ok": true}));
        assert_eq!(parse_reply("nope"), json!("nope"));
    }

    #[test]
    fn not_configured_ignores_the_message_only() {
        let typed = error_to_json(&EdgeError::NotConfigured);
        assert!(typed_matches_encoded(
            &typed,
            &json!({"error": {"kind": "not-configured", "message": "call configure first"}})
        ));
        assert!(!typed_matches_encoded(
            &typed,
            &json!({"error": {"kind": "not-configured"}})
        ));
        assert!(!typed_matches_encoded(
            &typed,
            &json!({"error": {"kind": "malformed-input", "message": ""}})
        ));
        let other = error_to_json(&EdgeError::MalformedInput("a".into()));
        assert!(!typed_matches_encoded(
            &other,
            &json!({"error": {"kind": "malformed-input", "message": "b"}})
        ));
    }

    #[test]
    fn head_encoding() {
        let h = RequestHead {
            method: "GET".into(),
            path: "/m\u{0}é".into(),
            query: "a=1".into(),
            headers: vec![("A".into(), "\"x\"".into()), ("a".into(), "\u{ff}".into())],
        };
        let text = encode_head(&h);
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            back,
            json!(["GET", "/m\u{0}é", "a=1", [["A", "\"x\""], ["a", "\u{ff}"]]])
        );
        assert_eq!(
            head_from_json(&json!({"method": "GET", "path": "/m\u{0}é", "query": "a=1",
            "headers": [["A", "\"x\""], ["a", "\u{ff}"]]}))
            .unwrap()
            .headers,
            h.headers
        );
        assert!(
            head_from_json(&json!({"method": "GET", "path": "/", "headers": [["a"]]})).is_err()
        );
        assert!(head_from_json(&json!({"path": "/"})).is_err());
    }
}
