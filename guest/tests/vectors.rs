//! Runs every case file of tests/vectors (format: tests/vectors/README.md)
//! through the encoded entry points of the rules layer.
//!
//! `EDGE_VECTORS_DIR` points the harness at another directory (used to check
//! the harness itself on scratch cases).

use std::path::PathBuf;

use serde_json::{json, Map, Value};
use transport_core::encoded::{configure_encoded, evaluate_encoded};

fn vectors_dir() -> PathBuf {
    match std::env::var_os("EDGE_VECTORS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors"),
    }
}

/// `actual` contains everything `expected` says: objects recurse, lists and
/// scalars compare exactly.
fn partial_match(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Object(want), Value::Object(got)) => want
            .iter()
            .all(|(k, v)| got.get(k).is_some_and(|g| partial_match(v, g))),
        _ => expected == actual,
    }
}

/// `base` updated key by key with `update` (if it is an object).
fn merged(base: &Map<String, Value>, update: Option<&Value>) -> Map<String, Value> {
    let mut out = base.clone();
    if let Some(Value::Object(update)) = update {
        for (k, v) in update {
            out.insert(k.clone(), v.clone());
        }
    }
    out
}

/// Runs one case; `Err` describes a mismatch.
fn run_case(config: &Map<String, Value>, case: &Value) -> Result<(), String> {
    let expect = case.get("expect").ok_or("case has no expect")?;
    let mut state = None;
    let configured = configure_encoded(&mut state, &Value::Object(config.clone()).to_string());
    let Some(request) = case.get("request") else {
        // A configure-only case: `{"ok": true}` or an error object.
        let actual: Value = if configured.is_empty() {
            json!({"ok": true})
        } else {
            serde_json::from_str(&configured)
                .map_err(|e| format!("configure output is not JSON: {e}"))?
        };
        return if partial_match(expect, &actual) {
            Ok(())
        } else {
            Err(format!("expected {expect}, got {actual}"))
        };
    };
    if !configured.is_empty() {
        return Err(format!("configure failed: {configured}"));
    }
    let field = |name: &str, default: Value| request.get(name).cloned().unwrap_or(default);
    let head = json!([
        field("method", json!("GET")),
        field("path", json!("/")),
        field("query", json!("")),
        field("headers", json!([])),
    ]);
    let out = evaluate_encoded(state.as_ref(), &head.to_string());
    let actual: Value = serde_json::from_str(&out)
        .map_err(|e| format!("evaluate output is not JSON ({e}): {out}"))?;
    if partial_match(expect, &actual) {
        Ok(())
    } else {
        Err(format!("expected {expect}\n     got {actual}"))
    }
}

#[test]
fn vectors() {
    let dir = vectors_dir();
    let base_text = std::fs::read_to_string(dir.join("base-config.json"))
        .or_else(|_| {
            std::fs::read_to_string(
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors/base-config.json"),
            )
        })
        .expect("base-config.json");
    let base: Map<String, Value> =
        serde_json::from_str(&base_text).expect("base-config.json is an object");

    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| {
        p.extension().is_some_and(|e| e == "json")
            && p.file_name().is_some_and(|n| n != "base-config.json")
    });
    files.sort();

    let mut failures = Vec::new();
    let mut count = 0;
    for file in &files {
        let name = file
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let doc: Value = match std::fs::read_to_string(file)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
        {
            Ok(doc) => doc,
            Err(e) => {
                failures.push(format!("{name}: unreadable: {e}"));
                continue;
            }
        };
        let file_config = merged(&base, doc.get("config"));
        let cases = doc
            .get("cases")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for (i, case) in cases.iter().enumerate() {
            count += 1;
            let case_name = case
                .get("name")
                .and_then(Value::as_str)
                .map_or_else(|| format!("#{i}"), str::to_string);
            let config = merged(&file_config, case.get("config"));
            if let Err(e) = run_case(&config, case) {
                failures.push(format!("{name} / {case_name}: {e}"));
            }
        }
    }
    println!(
        "vectors: {} files, {count} cases, {} failures",
        files.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {count} vector cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
