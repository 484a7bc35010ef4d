//! Contract-level checks that need no vector file: version, error kinds of
//! the encoded entry points, configuration state, trap recovery.

use native_host::json::{
    config_from_json, config_to_json, error_kind, parse_configure_encoded, parse_reply,
    result_to_json,
};
use native_host::vectors::{load_base_config, vectors_dir};
use native_host::{load_component_or_panic, Config, EdgeError, EdgeHost, Outcome, RequestHead};
use serde_json::{json, Value};

fn host() -> EdgeHost {
    load_component_or_panic()
        .instantiate()
        .expect("instantiate component")
}

fn base_json() -> Value {
    load_base_config(&vectors_dir()).expect("tests/vectors/base-config.json")
}

fn base_config() -> Config {
    config_from_json(&base_json()).expect("base-config.json as a typed config")
}

fn configured() -> EdgeHost {
    let mut h = host();
    h.configure(&base_config())
        .expect("no trap")
        .expect("base config accepted");
    h
}

fn head(method: &str, path: &str, headers: &[(&str, &str)]) -> RequestHead {
    RequestHead {
        method: method.into(),
        path: path.into(),
        query: String::new(),
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
    }
}

fn simple_post() -> RequestHead {
    head(
        "POST",
        "/mcp",
        &[
            ("host", "localhost:8000"),
            ("accept", "application/json, text/event-stream"),
            ("content-type", "application/json"),
        ],
    )
}

fn assert_error(v: &Value, kind: &str, input: &str) {
    assert_eq!(
        v.pointer("/error/kind"),
        Some(&json!(kind)),
        "input {input:?}: expected an error of kind {kind}, got {v}"
    );
    assert!(
        v.pointer("/error/message").is_some_and(Value::is_string),
        "input {input:?}: error without a string message: {v}"
    );
    assert_eq!(
        v.as_object().map(|o| o.len()),
        Some(1),
        "input {input:?}: extra top-level keys: {v}"
    );
    assert_eq!(
        v["error"].as_object().map(|o| o.len()),
        Some(2),
        "input {input:?}: error must have exactly kind and message: {v}"
    );
}

#[test]
fn version_reports_contract_1_0_0() {
    let mut h = host();
    let v = h.version().expect("version() trapped");
    assert_eq!(v.contract, "1.0.0", "contract version");
    // The component version is the guest crate's semantic version.
    let parts: Vec<&str> = v
        .component
        .split(['-', '+'])
        .next()
        .unwrap()
        .split('.')
        .collect();
    assert!(
        parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())),
        "component version {:?} is not semver",
        v.component
    );
    let guest_toml = native_host::workspace_root()
        .join("guest")
        .join("Cargo.toml");
    if let Ok(text) = std::fs::read_to_string(&guest_toml) {
        let declared = text.lines().find_map(|l| {
            l.trim()
                .strip_prefix("version = \"")
                .and_then(|r| r.strip_suffix('"'))
        });
        if let Some(declared) = declared {
            assert_eq!(
                v.component, declared,
                "component version vs guest/Cargo.toml"
            );
        }
    }
    // version() works before configure and does not configure.
    let r = h.evaluate(&simple_post()).expect("no trap");
    assert!(matches!(r, Err(EdgeError::NotConfigured)), "got {r:?}");
}

#[test]
fn evaluate_before_configure_is_not_configured() {
    let mut h = host();
    let typed = h.evaluate(&simple_post()).expect("no trap");
    assert!(
        matches!(typed, Err(EdgeError::NotConfigured)),
        "typed evaluate before configure: {:?}",
        result_to_json(&typed)
    );
    let enc = h.evaluate_encoded_json(&simple_post()).expect("no trap");
    assert_error(&enc, "not-configured", "a valid head");
}

#[test]
fn failed_first_configure_leaves_instance_unconfigured() {
    let mut h = host();
    let mut bad = base_config();
    bad.default_version = "1999-01-01".into();
    let r = h.configure(&bad).expect("no trap");
    assert!(matches!(r, Err(EdgeError::InvalidConfig(_))), "got {r:?}");
    let r = h.evaluate(&simple_post()).expect("no trap");
    assert!(matches!(r, Err(EdgeError::NotConfigured)), "got {r:?}");

    let mut bad_json = base_json();
    bad_json["default_version"] = json!("1999-01-01");
    let r = parse_configure_encoded(&h.configure_encoded(&bad_json.to_string()).expect("no trap"));
    assert_error(&r, "invalid-config", "bad default_version");
    let enc = h.evaluate_encoded_json(&simple_post()).expect("no trap");
    assert_error(&enc, "not-configured", "a valid head");
}

#[test]
fn failed_configure_keeps_previous_config() {
    let mut h = host();
    let mut cfg = base_config();
    cfg.max_age = 77;
    cfg.path_prefix = "/gw".into();
    h.configure(&cfg).expect("no trap").expect("accepted");
    let preflight = head(
        "OPTIONS",
        "/gw/mcp",
        &[
            ("host", "localhost"),
            ("origin", "http://localhost:3000"),
            ("access-control-request-method", "POST"),
        ],
    );
    let before = h.evaluate_json(&preflight).expect("no trap");

    // Typed refusal.
    let mut bad = cfg.clone();
    bad.allowed_origins = vec!["*".into()];
    bad.allow_credentials = true;
    let r = h.configure(&bad).expect("no trap");
    assert!(
        matches!(r, Err(EdgeError::InvalidConfig(_))),
        "credentials with *: {r:?}"
    );
    assert_eq!(h.evaluate_json(&preflight).expect("no trap"), before);

    // Encoded refusal.
    let mut bad_json = config_to_json(&cfg);
    bad_json["path_prefix"] = json!("gw");
    let r = parse_configure_encoded(&h.configure_encoded(&bad_json.to_string()).expect("no trap"));
    assert_error(&r, "invalid-config", "path_prefix without /");
    assert_eq!(h.evaluate_json(&preflight).expect("no trap"), before);
    assert_eq!(
        before.pointer("/preflight/status"),
        Some(&json!(204)),
        "{before}"
    );
}

#[test]
fn configure_encoded_rejects_missing_unknown_and_mistyped_keys() {
    let mut h = configured();
    let base = base_json();
    let mut cases: Vec<(String, Value)> = Vec::new();
    for k in native_host::json::CONFIG_KEYS {
        let mut v = base.clone();
        v.as_object_mut().unwrap().remove(k);
        cases.push((format!("missing {k}"), v));
        let mut v = base.clone();
        v[k] = json!({"not": "this"});
        cases.push((format!("mistyped {k}"), v));
        let mut v = base.clone();
        v[k] = Value::Null;
        cases.push((format!("null {k}"), v));
    }
    let mut v = base.clone();
    v["surprise"] = json!(1);
    cases.push(("unknown key".into(), v));
    let mut v = base.clone();
    v["max_age"] = json!(-1);
    cases.push(("negative max_age".into(), v));
    let mut v = base.clone();
    v["max_age"] = json!(4_294_967_296u64);
    cases.push(("max_age over u32".into(), v));
    let mut v = base.clone();
    v["max_age"] = json!("600");
    cases.push(("max_age as string".into(), v));
    let mut v = base.clone();
    v["allowed_origins"] = json!(["http://localhost:*", 5]);
    cases.push(("non-string list element".into(), v));
    cases.push(("array instead of object".into(), json!([1, 2, 3])));

    for (what, v) in cases {
        let r = parse_configure_encoded(&h.configure_encoded(&v.to_string()).expect("no trap"));
        assert_error(&r, "invalid-config", &what);
    }
    // The instance still has its configuration.
    let r = h.evaluate(&simple_post()).expect("no trap");
    assert!(
        matches!(r, Ok(Outcome::Forward(_))),
        "got {:?}",
        result_to_json(&r)
    );
}

#[test]
fn garbage_to_evaluate_encoded_is_malformed_input() {
    let mut h = configured();
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let huge = "x".repeat(1 << 20);
    // Well-formed but for the missing final `]`, with a 1 MiB value inside.
    let huge_value = format!(r#"["GET","/mcp","",[["x","{}"]]"#, "a".repeat(1 << 20));
    let garbage: Vec<String> = vec![
        "".into(),
        " ".into(),
        "not json".into(),
        "null".into(),
        "true".into(),
        "42".into(),
        "\"GET /mcp\"".into(),
        "{}".into(),
        "[]".into(),
        r#"{"method":"GET","path":"/mcp","query":"","headers":[]}"#.into(),
        r#"["GET"]"#.into(),
        r#"["GET","/mcp"]"#.into(),
        r#"["GET","/mcp",""]"#.into(),
        r#"["GET","/mcp","",[],"extra"]"#.into(),
        r#"["GET","/mcp","",{}]"#.into(),
        r#"["GET","/mcp","",null]"#.into(),
        r#"["GET","/mcp",null,[]]"#.into(),
        r#"[null,"/mcp","",[]]"#.into(),
        r#"[1,"/mcp","",[]]"#.into(),
        r#"["GET",["/mcp"],"",[]]"#.into(),
        r#"["GET","/mcp","",[["accept"]]]"#.into(),
        r#"["GET","/mcp","",[["a","b","c"]]]"#.into(),
        r#"["GET","/mcp","",[[1,2]]]"#.into(),
        r#"["GET","/mcp","",[["a",null]]]"#.into(),
        r#"["GET","/mcp","",["accept: */*"]]"#.into(),
        r#"["GET","/mcp","",[{"accept":"*/*"}]]"#.into(),
        r#"["GET","/mcp","",[]"#.into(),
        r#"["GET","/mcp","",[]] trailing"#.into(),
        r#"["GET","/mcp","",[]]["GET","/mcp","",[]]"#.into(),
        r#"["GET","/mcp","",[],]"#.into(),
        r#"['GET','/mcp','',[]]"#.into(),
        r#"["GET\x","/mcp","",[]]"#.into(),
        r#"["\ud800","/mcp","",[]]"#.into(),
        "\u{feff}[\"GET\",\"/mcp\",\"\",[]]".into(),
        deep,
        huge,
        huge_value,
    ];
    for g in &garbage {
        let out = h.evaluate_encoded(g).unwrap_or_else(|e| {
            panic!("evaluate-encoded trapped on garbage {:?}: {e}", shorten(g))
        });
        let v = parse_reply(&out);
        assert_error(&v, "malformed-input", &shorten(g));
    }
    // Still serving after all that.
    let r = h.evaluate_encoded_json(&simple_post()).expect("no trap");
    assert!(r.get("forward").is_some(), "after garbage: {r}");
    // And a well-formed head with a 1 MiB header value is not malformed.
    let big = head("GET", "/mcp", &[("x-big", &"a".repeat(1 << 20))]);
    let t = h
        .evaluate_json(&big)
        .expect("no trap on 1 MiB header (typed)");
    let e = h
        .evaluate_encoded_json(&big)
        .expect("no trap on 1 MiB header (encoded)");
    assert!(t.get("forward").is_some(), "{t}");
    assert_eq!(t, e);
}

fn shorten(s: &str) -> String {
    if s.chars().count() > 80 {
        format!(
            "{}... ({} chars)",
            s.chars().take(60).collect::<String>(),
            s.chars().count()
        )
    } else {
        s.to_owned()
    }
}

#[test]
fn trap_poisons_and_rebuild_restores() {
    let mut h = configured();
    let expected = h.evaluate_json(&simple_post()).expect("no trap");
    // Starve the instance: the next call runs out of fuel and traps (a
    // call without a head, which gets the base fuel alone).
    h.set_fuel_base(10);
    let err = h
        .version()
        .expect_err("10 units of fuel must not be enough");
    assert_eq!(err.trap_code(), Some(wasmtime::Trap::OutOfFuel), "{err}");
    assert!(h.is_poisoned());
    h.set_fuel_base(native_host::DEFAULT_FUEL_BASE);
    let again = h
        .evaluate(&simple_post())
        .expect_err("a trapped instance stays unusable");
    assert!(
        matches!(again, native_host::CallError::Poisoned(_)),
        "{again}"
    );
    // Rebuild re-applies the last accepted configuration.
    h.rebuild().expect("rebuild");
    assert!(!h.is_poisoned());
    assert_eq!(h.evaluate_json(&simple_post()).expect("no trap"), expected);
    // Rebuild without configuration starts from scratch.
    h.rebuild_unconfigured().expect("rebuild");
    let r = h.evaluate(&simple_post()).expect("no trap");
    assert_eq!(r.err().map(|e| error_kind(&e)), Some("not-configured"));
}

#[test]
fn memory_limit_is_enforced_at_instantiation() {
    // An absurdly small cap cannot even hold the component's initial memory.
    let tiny = load_component_or_panic().with_memory_limit(4096);
    assert!(
        tiny.instantiate().is_err(),
        "4 KiB memory limit must refuse to instantiate"
    );
}
