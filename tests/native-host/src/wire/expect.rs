//! Expectations and captures over what a connection has consumed.

use serde_json::Value;

use super::conn::{Conn, Seen};
use super::scenario::{CaptureStep, ExpectStep};
use super::template::{expand_str, Vars};

/// The response `index` picks (negative: from the end).
fn pick(conn: &Conn, index: Option<i64>) -> Result<&Seen, String> {
    let i = index.unwrap_or(-1);
    let n = conn.seen.len() as i64;
    let at = if i < 0 { n + i } else { i };
    if at < 0 || at >= n {
        return Err(format!("no response #{i} (the connection has read {n})"));
    }
    Ok(&conn.seen[at as usize])
}

/// The JSON a pointer is resolved against: a JSON body as is; for an SSE response the array
/// of its events' data (events with empty data, such as priming events, left out); for a
/// WebSocket the array of its text frames. A message that is not JSON (the legacy `endpoint`
/// event) is a JSON string there, so indices still count every message.
pub fn document(seen: &Seen) -> Result<Value, String> {
    let is_ws = seen.head.as_ref().is_some_and(|h| h.status == 101);
    if is_ws {
        let frames = seen
            .frames
            .iter()
            .filter(|f| f.opcode == 0x1)
            .map(|f| json_or_text(&String::from_utf8_lossy(&f.payload)))
            .collect::<Vec<_>>();
        return Ok(Value::Array(frames));
    }
    if seen.head.as_ref().is_some_and(|h| h.is_sse()) {
        let events = seen
            .events
            .iter()
            .filter_map(|e| e.data.as_deref().filter(|d| !d.is_empty()))
            .map(json_or_text)
            .collect();
        return Ok(Value::Array(events));
    }
    let body = seen.body.as_deref().ok_or("the body has not been read")?;
    serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))
}

fn json_or_text(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

/// RFC 6901 JSON pointer, plus: a negative array index counts from the end, and a final
/// `#` segment gives the length of an array, object or string.
pub fn pointer(doc: &Value, path: &str) -> Option<Value> {
    if path.is_empty() {
        return Some(doc.clone());
    }
    let mut cur = doc;
    let segments: Vec<String> = path
        .strip_prefix('/')?
        .split('/')
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect();
    for (i, seg) in segments.iter().enumerate() {
        if seg == "#" && i + 1 == segments.len() {
            let len = match cur {
                Value::Array(a) => a.len(),
                Value::Object(o) => o.len(),
                Value::String(s) => s.chars().count(),
                _ => return None,
            };
            return Some(Value::from(len));
        }
        cur = match cur {
            Value::Object(o) => o.get(seg.as_str())?,
            Value::Array(a) => {
                let idx: i64 = seg.parse().ok()?;
                let at = if idx < 0 { a.len() as i64 + idx } else { idx };
                a.get(usize::try_from(at).ok()?)?
            }
            _ => return None,
        };
    }
    Some(cur.clone())
}

fn toml_to_json(v: &toml::Value, vars: &Vars) -> Result<Value, String> {
    Ok(match v {
        toml::Value::String(s) => Value::String(expand_str(s, vars)?),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => Value::from(*f),
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Array(a) => Value::Array(
            a.iter()
                .map(|x| toml_to_json(x, vars))
                .collect::<Result<_, _>>()?,
        ),
        toml::Value::Table(t) => Value::Object(
            t.iter()
                .map(|(k, x)| Ok((k.clone(), toml_to_json(x, vars)?)))
                .collect::<Result<_, String>>()?,
        ),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
    })
}

/// Numbers compare by value (`1` equals `1.0`), everything else structurally.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x.as_f64() == y.as_f64() && (x.is_f64() || y.is_f64() || x == y)
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// Every failed expectation, as a sentence.
pub fn check(conn: &Conn, e: &ExpectStep, vars: &Vars) -> Result<Vec<String>, String> {
    let mut bad = Vec::new();
    if let Some(want) = e.closed {
        let got = conn.closed.is_some();
        if got != want {
            bad.push(format!("closed by server: expected {want}, got {got}"));
        }
    }
    if let Some(want) = e.responses {
        if conn.seen.len() != want {
            bad.push(format!(
                "responses: expected {want}, got {}",
                conn.seen.len()
            ));
        }
    }
    if let Some(want) = &e.interim {
        if &conn.interim != want {
            bad.push(format!(
                "interim statuses: expected {want:?}, got {:?}",
                conn.interim
            ));
        }
    }
    let needs_response = e.status.is_some()
        || !e.headers.is_empty()
        || !e.header_contains.is_empty()
        || !e.headers_present.is_empty()
        || !e.headers_absent.is_empty()
        || !e.body_contains.is_empty()
        || !e.body_lacks.is_empty()
        || !e.json.is_empty()
        || !e.json_contains.is_empty()
        || !e.json_absent.is_empty()
        || !e.json_null.is_empty()
        || e.events.is_some()
        || e.comments_at_least.is_some()
        || e.complete.is_some()
        || e.frames.is_some()
        || e.ws_close_code.is_some();
    if !needs_response {
        return Ok(bad);
    }
    let seen = match pick(conn, e.response) {
        Ok(s) => s,
        Err(why) => {
            bad.push(why);
            return Ok(bad);
        }
    };
    let head = seen.head.as_ref();
    if let Some(want) = e.status {
        let got = head.map(|h| h.status);
        if got != Some(want) {
            bad.push(format!("status: expected {want}, got {got:?}"));
        }
    }
    let header = |name: &str| head.and_then(|h| h.header(name));
    for (name, want) in &e.headers {
        let want = expand_str(want, vars)?;
        if header(name) != Some(want.as_str()) {
            bad.push(format!(
                "header {name}: expected {want:?}, got {:?}",
                header(name)
            ));
        }
    }
    for (name, part) in &e.header_contains {
        let part = expand_str(part, vars)?;
        if !header(name).is_some_and(|v| v.contains(&part)) {
            bad.push(format!(
                "header {name}: expected to contain {part:?}, got {:?}",
                header(name)
            ));
        }
    }
    for name in &e.headers_present {
        if header(name).is_none() {
            bad.push(format!("header {name}: expected, absent"));
        }
    }
    for name in &e.headers_absent {
        if let Some(v) = header(name) {
            bad.push(format!("header {name}: expected absent, got {v:?}"));
        }
    }
    let body_text = body_text(seen);
    for part in &e.body_contains {
        let part = expand_str(part, vars)?;
        if !body_text.contains(&part) {
            bad.push(format!(
                "body: expected to contain {part:?}, got {}",
                clip(&body_text)
            ));
        }
    }
    for part in &e.body_lacks {
        let part = expand_str(part, vars)?;
        if body_text.contains(&part) {
            bad.push(format!("body: expected not to contain {part:?}"));
        }
    }
    if !e.json.is_empty()
        || !e.json_contains.is_empty()
        || !e.json_absent.is_empty()
        || !e.json_null.is_empty()
    {
        match document(seen) {
            Err(why) => bad.push(format!("json: {why}; body {}", clip(&body_text))),
            Ok(doc) => {
                for (path, want) in &e.json {
                    let want = toml_to_json(want, vars)?;
                    match pointer(&doc, path) {
                        Some(got) if same(&got, &want) => {}
                        got => {
                            bad.push(format!("json {path}: expected {want}, got {}", shown(got)))
                        }
                    }
                }
                for (path, part) in &e.json_contains {
                    let part = expand_str(part, vars)?;
                    match pointer(&doc, path) {
                        Some(Value::String(s)) if s.contains(&part) => {}
                        got => bad.push(format!(
                            "json {path}: expected a string containing {part:?}, got {}",
                            shown(got)
                        )),
                    }
                }
                for path in &e.json_null {
                    match pointer(&doc, path) {
                        Some(Value::Null) => {}
                        got => bad.push(format!("json {path}: expected null, got {}", shown(got))),
                    }
                }
                for path in &e.json_absent {
                    if let Some(got) = pointer(&doc, path) {
                        bad.push(format!("json {path}: expected absent, got {got}"));
                    }
                }
            }
        }
    }
    if let Some(want) = e.events {
        if seen.events.len() != want {
            bad.push(format!(
                "events: expected {want}, got {}",
                seen.events.len()
            ));
        }
    }
    if let Some(want) = e.comments_at_least {
        if seen.comments < want {
            bad.push(format!(
                "comments: expected at least {want}, got {}",
                seen.comments
            ));
        }
    }
    if let Some(want) = e.complete {
        if seen.complete != want {
            bad.push(format!("complete: expected {want}, got {}", seen.complete));
        }
    }
    if let Some(want) = e.frames {
        if seen.frames.len() != want {
            bad.push(format!(
                "frames: expected {want}, got {}",
                seen.frames.len()
            ));
        }
    }
    if let Some(want) = e.ws_close_code {
        let got = seen.frames.iter().rev().find_map(|f| f.close_code());
        if got != Some(want) {
            bad.push(format!("ws close code: expected {want}, got {got:?}"));
        }
    }
    Ok(bad)
}

/// The body as text for `body_contains`: an SSE response's event data lines joined.
fn body_text(seen: &Seen) -> String {
    if let Some(body) = &seen.body {
        return String::from_utf8_lossy(body).into_owned();
    }
    let events = seen.events.iter().filter_map(|e| e.data.clone());
    let frames = seen
        .frames
        .iter()
        .map(|f| String::from_utf8_lossy(&f.payload).into_owned());
    events.chain(frames).collect::<Vec<_>>().join("\n")
}

fn clip(text: &str) -> String {
    let mut t: String = text.chars().take(300).collect();
    if t.len() < text.len() {
        t.push('…');
    }
    format!("{t:?}")
}

fn shown(v: Option<Value>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "nothing".into())
}

/// Captured variable values, by source.
pub fn capture(conn: &Conn, c: &CaptureStep) -> Result<Vec<(String, String)>, String> {
    let seen = pick(conn, c.response)?;
    let mut out = Vec::new();
    for (name, source) in &c.vars {
        let (kind, arg) = source.split_once(':').unwrap_or((source, ""));
        let value = match kind {
            "header" => seen
                .head
                .as_ref()
                .and_then(|h| h.header(arg))
                .map(str::to_string),
            "json" => pointer(&document(seen)?, arg).map(|v| match v {
                Value::String(s) => s,
                other => other.to_string(),
            }),
            "event_id" | "event_data" => {
                let idx: i64 = arg
                    .parse()
                    .map_err(|_| format!("bad index in {source:?}"))?;
                let n = seen.events.len() as i64;
                let at = if idx < 0 { n + idx } else { idx };
                let event = usize::try_from(at).ok().and_then(|i| seen.events.get(i));
                event.and_then(|e| {
                    if kind == "event_id" {
                        e.id.clone()
                    } else {
                        e.data.clone()
                    }
                })
            }
            _ => return Err(format!("unknown capture source {source:?}")),
        };
        let value = value.ok_or_else(|| format!("capture {name}: nothing at {source:?}"))?;
        out.push((name.clone(), value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers() {
        let doc: Value = serde_json::json!([{"a": {"b/c": [1, 2, 3]}}, {"x": "yz"}]);
        assert_eq!(pointer(&doc, "/0/a/b~1c/-1"), Some(Value::from(3)));
        assert_eq!(pointer(&doc, "/0/a/b~1c/#"), Some(Value::from(3)));
        assert_eq!(pointer(&doc, "/-1/x/#"), Some(Value::from(2)));
        assert_eq!(pointer(&doc, "/#"), Some(Value::from(2)));
        assert_eq!(pointer(&doc, "/5"), None);
        assert!(same(&Value::from(1), &serde_json::json!(1.0)));
    }
}
