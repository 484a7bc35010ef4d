//! `tests/vectors/`: loading, config merging, partial matching and running a
//! case through both entry points of an [`EdgeHost`].

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::json::{self, config_from_json, head_from_json, merge_config};
use crate::{Config, EdgeHost, RequestHead};

/// `<workspace>/tests/vectors`.
pub fn vectors_dir() -> PathBuf {
    crate::workspace_root().join("tests").join("vectors")
}

/// One case, with its effective configuration resolved.
#[derive(Clone, Debug)]
pub struct VectorCase {
    /// File name, e.g. `cors.json`.
    pub file: String,
    pub name: String,
    pub reason: String,
    /// Effective config: base, then the file's `config`, then the case's.
    pub config: Value,
    /// `None`: a configure-only case.
    pub request: Option<RequestHead>,
    pub expect: Value,
}

impl VectorCase {
    /// The config as the typed record, or why it has none (a mistyped,
    /// missing or unknown key only `configure-encoded` can be asked about).
    pub fn typed_config(&self) -> Result<Config, String> {
        config_from_json(&self.config)
    }
}

/// Reads `base-config.json`.
pub fn load_base_config(dir: &Path) -> Result<Value, String> {
    let p = dir.join("base-config.json");
    let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))
}

/// Every case of every `*.json` in `dir` except `base-config.json`, files in
/// name order, cases in file order. Case names must be unique.
pub fn load_vectors(dir: &Path) -> Result<Vec<VectorCase>, String> {
    let base = load_base_config(dir)?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "json")
                && p.file_name().is_some_and(|n| n != "base-config.json")
        })
        .collect();
    files.sort();
    let mut out = Vec::new();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for p in files {
        let file = p.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&p).map_err(|e| format!("{file}: {e}"))?;
        let doc: Value = serde_json::from_str(&text).map_err(|e| format!("{file}: {e}"))?;
        let file_cfg = doc.get("config").cloned().unwrap_or(Value::Null);
        let cases = doc
            .get("cases")
            .and_then(Value::as_array)
            .ok_or_else(|| format!("{file}: no \"cases\" list"))?;
        for (i, c) in cases.iter().enumerate() {
            let name = c
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("{file}: case #{i} has no name"))?
                .to_owned();
            if let Some(other) = seen.insert(name.clone(), file.clone()) {
                return Err(format!(
                    "{file}: case name {name:?} already used in {other}"
                ));
            }
            let ctx = |e: String| format!("{file}: case {name}: {e}");
            let case_cfg = c.get("config").cloned().unwrap_or(Value::Null);
            let config = merge_config(&base, &[&file_cfg, &case_cfg]).map_err(ctx)?;
            let request = match c.get("request") {
                None | Some(Value::Null) => None,
                Some(r) => Some(head_from_json(r).map_err(ctx)?),
            };
            let expect = c
                .get("expect")
                .cloned()
                .ok_or_else(|| ctx("no \"expect\"".into()))?;
            out.push(VectorCase {
                file: file.clone(),
                name,
                reason: c
                    .get("reason")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
                config,
                request,
                expect,
            });
        }
    }
    Ok(out)
}

/// The partial match of `tests/vectors/README.md`: every key of an expected
/// object must be present with an equal value (objects recurse); lists and
/// scalars compare exactly. Returns the JSON pointer of the first mismatch.
pub fn partial_mismatch(expected: &Value, actual: &Value) -> Option<String> {
    fn go(e: &Value, a: &Value, at: &mut String) -> bool {
        match (e, a) {
            (Value::Object(eo), Value::Object(ao)) => {
                for (k, ev) in eo {
                    let len = at.len();
                    at.push('/');
                    at.push_str(&k.replace('~', "~0").replace('/', "~1"));
                    match ao.get(k) {
                        Some(av) if go(ev, av, at) => at.truncate(len),
                        _ => return false,
                    }
                }
                true
            }
            _ => e == a,
        }
    }
    let mut at = String::new();
    if go(expected, actual, &mut at) {
        None
    } else {
        Some(if at.is_empty() { "/".into() } else { at })
    }
}

/// `true` when `actual` satisfies `expected` partially.
pub fn partial_match(expected: &Value, actual: &Value) -> bool {
    partial_mismatch(expected, actual).is_none()
}

/// One thing that went wrong with a case.
#[derive(Clone, Debug)]
pub struct CaseFailure {
    pub file: String,
    pub case: String,
    /// Which path: `typed`, `encoded`, `typed-vs-encoded`, `configure`...
    pub path: String,
    pub detail: String,
    pub expected: Value,
    pub got: Value,
}

impl fmt::Display for CaseFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{}] {} ({}): {}\n    expected: {}\n    got:      {}",
            self.file, self.case, self.path, self.detail, self.expected, self.got
        )
    }
}

/// What running a case did.
#[derive(Clone, Debug, Default)]
pub struct CaseReport {
    pub failures: Vec<CaseFailure>,
    /// Set when the config cannot be typed, so only the encoded path ran.
    pub encoded_only: Option<String>,
    /// Typed and encoded configure agreed on the kind but not the message.
    pub notes: Vec<String>,
    /// Fuel of the typed and the encoded evaluate call.
    pub fuel: Option<(u64, u64)>,
}

/// Runs one case through both entry points of `host`. A trap is reported as
/// a failure and the instance is rebuilt (unconfigured) so the next case
/// starts clean.
pub fn run_case(host: &mut EdgeHost, case: &VectorCase) -> CaseReport {
    let mut rep = CaseReport::default();
    let fail = |rep: &mut CaseReport, path: &str, detail: String, expected: &Value, got: &Value| {
        rep.failures.push(CaseFailure {
            file: case.file.clone(),
            case: case.name.clone(),
            path: path.into(),
            detail,
            expected: expected.clone(),
            got: got.clone(),
        });
    };
    macro_rules! guard {
        ($what:expr, $e:expr) => {
            match $e {
                Ok(v) => v,
                Err(err) => {
                    fail(
                        &mut rep,
                        $what,
                        format!("call failed: {err}"),
                        &case.expect,
                        &Value::Null,
                    );
                    let _ = host.rebuild_unconfigured();
                    return rep;
                }
            }
        };
    }

    // --- configure, both ways -------------------------------------------
    let typed_cfg = case.typed_config();
    let typed_conf = match &typed_cfg {
        Ok(cfg) => Some(guard!("configure", host.configure_json(cfg))),
        Err(why) => {
            rep.encoded_only = Some(why.clone());
            None
        }
    };
    let enc_conf = guard!(
        "configure-encoded",
        host.configure_encoded_json(&case.config.to_string())
    );

    if case.request.is_none() {
        // Configure-only case: both must match `expect`.
        if let Some(t) = &typed_conf {
            if let Some(at) = partial_mismatch(&case.expect, t) {
                fail(
                    &mut rep,
                    "configure",
                    format!("mismatch at {at}"),
                    &case.expect,
                    t,
                );
            }
        } else if case.expect.pointer("/error/kind") != Some(&json!("invalid-config")) {
            let why = rep.encoded_only.clone().unwrap_or_default();
            fail(
                &mut rep,
                "configure",
                format!(
                    "config cannot be expressed as a typed record ({why}) but expect is not invalid-config"
                ),
                &case.expect,
                &Value::Null,
            );
        }
        if let Some(at) = partial_mismatch(&case.expect, &enc_conf) {
            fail(
                &mut rep,
                "configure-encoded",
                format!("mismatch at {at}"),
                &case.expect,
                &enc_conf,
            );
        }
        if let Some(t) = &typed_conf {
            compare_configure(&mut rep, case, t, &enc_conf);
        }
        return rep;
    }

    // --- a request case: configure must have succeeded --------------------
    let ok = json!({"ok": true});
    match &typed_conf {
        Some(t) if *t != ok => {
            fail(
                &mut rep,
                "configure",
                "effective config refused".into(),
                &ok,
                t,
            );
        }
        None => {
            let why = rep.encoded_only.clone().unwrap_or_default();
            fail(
                &mut rep,
                "configure",
                format!("effective config of a request case cannot be typed: {why}"),
                &ok,
                &case.config,
            )
        }
        _ => {}
    }
    if enc_conf != ok {
        fail(
            &mut rep,
            "configure-encoded",
            "effective config refused".into(),
            &ok,
            &enc_conf,
        );
    }
    if !rep.failures.is_empty() {
        return rep;
    }
    let head = case.request.as_ref().unwrap();

    // Both configure calls succeeded with the same config; evaluate both ways.
    let typed = guard!("evaluate", host.evaluate_json(head));
    let typed_fuel = host.last_fuel_used();
    let enc = guard!("evaluate-encoded", host.evaluate_encoded_json(head));
    rep.fuel = Some((typed_fuel, host.last_fuel_used()));

    if let Some(at) = partial_mismatch(&case.expect, &typed) {
        fail(
            &mut rep,
            "evaluate",
            format!("mismatch at {at}"),
            &case.expect,
            &typed,
        );
    }
    if let Some(at) = partial_mismatch(&case.expect, &enc) {
        fail(
            &mut rep,
            "evaluate-encoded",
            format!("mismatch at {at}"),
            &case.expect,
            &enc,
        );
    }
    // The compact encoding (what the Python host serves with), this crate's
    // host half included: the same outcome as the encoded one, exactly.
    if let Ok(cfg) = case.typed_config() {
        // Letter by letter, and with the headers packed (section 16).
        for (export, packed) in [
            ("evaluate-compact", false),
            ("evaluate-compact packed", true),
        ] {
            let mut call_error = None;
            let call = |text: &str| {
                host.evaluate_compact(text).map_err(|e| {
                    call_error = Some(format!("{e}"));
                    String::from("trap")
                })
            };
            let compact = if packed {
                crate::compact::evaluate_packed_with(call, &cfg, head)
            } else {
                crate::compact::evaluate_with(call, &cfg, head)
            };
            match compact {
                Ok(Some(got)) if got == enc => {}
                Ok(None) => {} // a field too long for the encoding: hosts use the JSON path
                Ok(Some(got)) => fail(
                    &mut rep,
                    export,
                    "compact outcome differs from the encoded one".into(),
                    &enc,
                    &got,
                ),
                Err(why) => fail(
                    &mut rep,
                    export,
                    format!("{why} {}", call_error.unwrap_or_default()),
                    &enc,
                    &Value::Null,
                ),
            }
        }
    }
    if !json::typed_matches_encoded(&typed, &enc) {
        fail(
            &mut rep,
            "typed-vs-encoded",
            "typed outcome (as JSON) differs from the encoded outcome".into(),
            &typed,
            &enc,
        );
    }
    rep
}

/// Typed and encoded `configure` results: the kinds must agree exactly;
/// differing messages are only noted (the encoded path may name keys in
/// snake_case).
fn compare_configure(rep: &mut CaseReport, case: &VectorCase, typed: &Value, enc: &Value) {
    let kind = |v: &Value| v.pointer("/error/kind").cloned();
    if kind(typed) != kind(enc) || (typed.get("ok").is_some() != enc.get("ok").is_some()) {
        rep.failures.push(CaseFailure {
            file: case.file.clone(),
            case: case.name.clone(),
            path: "configure-vs-configure-encoded".into(),
            detail: "typed and encoded configure disagree".into(),
            expected: typed.clone(),
            got: enc.clone(),
        });
    } else if typed != enc {
        rep.notes.push(format!(
            "[{}] {}: configure messages differ: typed {} / encoded {}",
            case.file, case.name, typed, enc
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_matching_rules() {
        let actual = json!({"forward": {"route": "mcp", "server_id": null, "cors_headers": [["vary", "Origin"]]}});
        assert!(partial_match(&json!({}), &actual));
        assert!(partial_match(&json!({"forward": {}}), &actual));
        assert!(partial_match(
            &json!({"forward": {"route": "mcp"}}),
            &actual
        ));
        assert!(partial_match(
            &json!({"forward": {"server_id": null}}),
            &actual
        ));
        // A key named with null must be present.
        assert!(!partial_match(
            &json!({"forward": {"session_id": null}}),
            &actual
        ));
        assert!(!partial_match(&json!({"preflight": {}}), &actual));
        assert!(!partial_match(
            &json!({"forward": {"route": "sse"}}),
            &actual
        ));
        // Lists compare exactly, not as prefixes.
        assert!(!partial_match(
            &json!({"forward": {"cors_headers": []}}),
            &actual
        ));
        assert!(!partial_match(
            &json!({"forward": {"cors_headers": [["vary", "Origin"], ["x", "y"]]}}),
            &actual
        ));
        assert_eq!(
            partial_mismatch(&json!({"forward": {"route": "sse"}}), &actual).as_deref(),
            Some("/forward/route")
        );
        // Scalars exactly; an object expected where a scalar is.
        assert!(!partial_match(&json!({"forward": {"route": {}}}), &actual));
        assert!(partial_match(&json!(204), &json!(204)));
        assert!(!partial_match(&json!(204), &json!(204.0)));
    }

    #[test]
    fn loads_a_vector_directory() {
        let dir = std::env::temp_dir().join(format!("native-host-vectors-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("base-config.json"),
            r#"{"allowed_origins": [], "allowed_hosts": ["*"], "allow_credentials": false,
                "allowed_headers": [], "max_age": 600, "supported_versions": ["v"],
                "default_version": "v", "path_prefix": ""}"#,
        )
        .unwrap();
        std::fs::write(
            dir.join("a.json"),
            r#"{"description": "d", "config": {"max_age": 1, "path_prefix": "/p"}, "cases": [
                {"name": "one", "reason": "r", "config": {"max_age": 2},
                 "request": {"method": "GET", "path": "/p/mcp", "headers": [["Host", "x"]]},
                 "expect": {"forward": {"route": "mcp"}}},
                {"name": "two", "reason": "r", "config": {"max_age": "x"},
                 "expect": {"error": {"kind": "invalid-config"}}}
            ]}"#,
        )
        .unwrap();
        std::fs::write(dir.join("README.md"), "not a vector").unwrap();
        let cases = load_vectors(&dir).unwrap();
        assert_eq!(cases.len(), 2);
        assert_eq!(cases[0].config["max_age"], json!(2));
        assert_eq!(cases[0].config["path_prefix"], json!("/p"));
        assert_eq!(cases[1].config["max_age"], json!("x"));
        let h = cases[0].request.as_ref().unwrap();
        assert_eq!((h.method.as_str(), h.query.as_str()), ("GET", ""));
        assert_eq!(h.headers, vec![("Host".to_string(), "x".to_string())]);
        assert!(cases[1].request.is_none());
        assert_eq!(cases[0].typed_config().unwrap().max_age, 2);
        assert!(cases[1].typed_config().is_err());

        std::fs::write(
            dir.join("b.json"),
            r#"{"cases": [{"name": "one", "expect": {"ok": true}}]}"#,
        )
        .unwrap();
        assert!(load_vectors(&dir).unwrap_err().contains("already used"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
