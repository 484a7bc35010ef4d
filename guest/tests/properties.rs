//! Properties of the rules layer: the encoded entry points never panic and
//! always answer JSON, and the typed and encoded paths agree.

use proptest::prelude::*;
use serde_json::{json, Value};
use transport_core::config::{Config, ConfigInput};
use transport_core::encoded::{configure_encoded, evaluate_encoded};
use transport_core::evaluate::{evaluate, HeaderList, Outcome};
use transport_core::headers::Headers;

/// `PROPTEST_CASES` for a longer run; 2000 by default.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn base_input() -> ConfigInput {
    // The same base every vector starts from: one source for the defaults.
    transport_core::encoded::config_from_json(include_str!("../../tests/vectors/base-config.json"))
        .expect("tests/vectors/base-config.json is a valid config")
}

/// A few configurations that exercise different branches.
fn configs() -> Vec<Config> {
    let mut out = vec![Config::new(base_input()).unwrap()];
    let mut c = base_input();
    c.allow_credentials = true;
    c.path_prefix = "/api/v1".into();
    c.allowed_origins.push("https://App.example.com".into());
    c.allowed_origins.push("null".into());
    c.allowed_hosts.push("example.com:8443".into());
    out.push(Config::new(c).unwrap());
    let mut c = base_input();
    c.allowed_origins = strings(&["*"]);
    c.allowed_hosts = strings(&["*"]);
    c.allowed_headers = Vec::new();
    c.max_age = u32::MAX;
    out.push(Config::new(c).unwrap());
    out
}

fn config_json(c: &ConfigInput) -> String {
    json!({
        "allowed_origins": c.allowed_origins,
        "allowed_hosts": c.allowed_hosts,
        "allow_credentials": c.allow_credentials,
        "allowed_headers": c.allowed_headers,
        "max_age": c.max_age,
        "supported_versions": c.supported_versions,
        "default_version": c.default_version,
        "path_prefix": c.path_prefix,
    })
    .to_string()
}

fn header_list(list: HeaderList<'_>) -> Value {
    Value::Array(list.as_slice().iter().map(|(n, v)| json!([n, v])).collect())
}

/// The typed outcome as the contract's JSON (built independently of the
/// hand-written serializer under test).
fn outcome_value(outcome: &Outcome<'_>) -> Value {
    match outcome {
        Outcome::Preflight(p) => {
            json!({"preflight": {"status": p.status(), "headers": header_list(p.headers())}})
        }
        Outcome::Forward(c) => json!({"forward": {
            "method": c.method,
            "path": c.path.path,
            "route": c.route().name(),
            "server_id": c.server_id(),
            "session_state": c.session_state.name(),
            "session_id": c.session_id,
            "protocol_version": c.protocol_version,
            "protocol_state": c.protocol_state.name(),
            "revision": c.revision,
            "accept_json": c.accept_json,
            "accept_sse": c.accept_sse,
            "content_type": c.content_type.name(),
            "origin": c.origin,
            "origin_state": c.origin_state.name(),
            "host_state": c.host_state.name(),
            "last_event_id": c.last_event_id,
            "mcp_method": c.mcp_method,
            "mcp_name": c.mcp_name,
            "cors_headers": header_list(c.cors_headers()),
        }}),
    }
}

/// Text that is often meaningful to the rules, mixed with arbitrary text.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just(" ".to_string()),
        Just("\t".to_string()),
        Just(",".to_string()),
        Just(";".to_string()),
        Just("\"".to_string()),
        Just("\\".to_string()),
        Just("/".to_string()),
        Just("%".to_string()),
        Just("%2e".to_string()),
        Just("%2F".to_string()),
        Just("%7e".to_string()),
        Just(":".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just("*".to_string()),
        Just("=".to_string()),
        Just("q=0".to_string()),
        Just("q=0.5".to_string()),
        Just("q=1.000".to_string()),
        Just(".".to_string()),
        Just("..".to_string()),
        Just("mcp".to_string()),
        Just("servers".to_string()),
        Just("api".to_string()),
        Just("v1".to_string()),
        Just("application/json".to_string()),
        Just("text/event-stream".to_string()),
        Just("*/*".to_string()),
        Just("application/*".to_string()),
        Just("text/*".to_string()),
        Just("http://localhost".to_string()),
        Just(":3000".to_string()),
        Just("https://app.example.com".to_string()),
        Just("null".to_string()),
        Just("localhost".to_string()),
        Just("example.com".to_string()),
        Just("[::1]".to_string()),
        Just("8443".to_string()),
        Just("2025-06-18".to_string()),
        Just("GET".to_string()),
        Just("POST".to_string()),
        Just("content-type".to_string()),
        Just("Mcp-Session-Id".to_string()),
        Just("é".to_string()),
        Just("\u{0}".to_string()),
        Just("\u{212a}".to_string()),
        "[ -~]{0,4}",
        any::<String>(),
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(fragment(), 0..6).prop_map(|parts| parts.concat())
}

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "GET", "get", "Post", "OPTIONS", "options", "DELETE", "put", "HEAD", "PATCH", "patch"
        ])
        .prop_map(str::to_string),
        text(),
    ]
}

fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "/mcp",
            "/mcp/",
            "//mcp",
            "/sse",
            "/message",
            "/ws",
            "/health",
            "/servers/a/mcp",
            "/servers/%41/sse",
            "/api/v1/mcp",
            "/api/v1/servers/x/mcp",
            "/a/../mcp",
            "/%6dcp",
            "",
            "*",
            "http://h/mcp",
            "/MCP",
        ])
        .prop_map(str::to_string),
        prop::collection::vec(fragment(), 0..8).prop_map(|p| format!("/{}", p.join("/"))),
        text(),
    ]
}

fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "origin",
            "Origin",
            "host",
            "HOST",
            "accept",
            "content-type",
            "mcp-session-id",
            "MCP-Protocol-Version",
            "last-event-id",
            "mcp-method",
            "mcp-name",
            "access-control-request-method",
            "Access-Control-Request-Headers",
            "x-other",
        ])
        .prop_map(str::to_string),
        text(),
    ]
}

fn header_value(name: &str) -> BoxedStrategy<String> {
    let typical: Vec<&'static str> = match name.to_ascii_lowercase().as_str() {
        "origin" => vec![
            "http://localhost:3000",
            "http://127.0.0.1",
            "https://app.example.com",
            "null",
            "https://evil.com",
            "HTTP://LOCALHOST:*",
        ],
        "host" => vec![
            "localhost",
            "localhost:8000",
            "[::1]:80",
            "example.com:8443",
            "evil.com",
            "",
        ],
        "access-control-request-method" => vec!["POST", "GET", "DELETE", "OPTIONS", "PUT", "post"],
        "access-control-request-headers" => vec![
            "content-type",
            "Content-Type, MCP-Session-Id",
            "x-evil",
            "",
            " , accept,accept",
        ],
        "mcp-protocol-version" => vec!["2025-06-18", "2026-07-28", "2024-01-01"],
        _ => vec!["application/json, text/event-stream", "*/*;q=0.5", "abc"],
    };
    prop_oneof![
        prop::sample::select(typical).prop_map(str::to_string),
        text()
    ]
    .boxed()
}

fn headers() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec(
        header_name().prop_flat_map(|name| {
            let value = header_value(&name);
            (Just(name), value)
        }),
        0..8,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// Any text at all: always a JSON answer, an error unless it is a head.
    #[test]
    fn encoded_never_panics_on_any_text(input in prop_oneof![any::<String>(), "[\\[\\]\",:a-z0-9 {}\\\\nul]{0,40}"]) {
        let cfg = configs().remove(0);
        let out = evaluate_encoded(Some(&cfg), &input);
        let v: Value = serde_json::from_str(&out).expect("output is JSON");
        prop_assert!(v.get("forward").is_some() || v.get("preflight").is_some() || v.get("error").is_some());
        let mut state = None;
        let out = configure_encoded(&mut state, &input);
        prop_assert!(out.is_empty() || serde_json::from_str::<Value>(&out).is_ok());
    }

    /// Any head: the typed path and the encoded path give the same outcome.
    #[test]
    fn typed_and_encoded_agree(
        which in 0usize..3,
        method in method(),
        path in path(),
        query in text(),
        headers in headers(),
    ) {
        let cfgs = configs();
        let cfg = &cfgs[which];
        let typed = evaluate(cfg, &method, &path, Headers::collect(headers.iter().map(|(n, v)| (n.as_str(), v.as_str()))));
        let expected = outcome_value(&typed);
        let head = json!([method, path, query, headers]).to_string();
        let out = evaluate_encoded(Some(cfg), &head);
        let actual: Value = serde_json::from_str(&out).expect("output is JSON");
        prop_assert_eq!(actual, expected);
    }

    /// Any config: typed and encoded configure accept and reject alike.
    #[test]
    fn configure_paths_agree(
        origins in prop::collection::vec(prop_oneof![Just("*".to_string()), Just("http://a:*".to_string()), text()], 0..3),
        hosts in prop::collection::vec(prop_oneof![Just("*".to_string()), Just("a:1".to_string()), text()], 0..3),
        credentials in any::<bool>(),
        allowed_headers in prop::collection::vec(prop_oneof![Just("X-A".to_string()), text()], 0..3),
        max_age in any::<u32>(),
        versions in prop::collection::vec(prop_oneof![Just("v1".to_string()), text()], 0..3),
        default in prop_oneof![Just("v1".to_string()), text()],
        prefix in prop_oneof![Just(String::new()), Just("/api".to_string()), text()],
    ) {
        let input = ConfigInput {
            allowed_origins: origins,
            allowed_hosts: hosts,
            allow_credentials: credentials,
            allowed_headers,
            max_age,
            supported_versions: versions,
            default_version: default,
            path_prefix: prefix,
        };
        let typed = Config::new(input.clone());
        let mut state = None;
        let out = configure_encoded(&mut state, &config_json(&input));
        match typed {
            Ok(cfg) => prop_assert_eq!(state, Some(cfg)),
            Err(_) => {
                prop_assert!(state.is_none());
                let v: Value = serde_json::from_str(&out).expect("error is JSON");
                prop_assert_eq!(&v["error"]["kind"], "invalid-config");
            }
        }
    }
}
