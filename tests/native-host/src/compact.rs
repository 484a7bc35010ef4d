//! The host's half of the compact encoding (`docs/edge-contract.md` section
//! 16), as a second host writes it: section 1's `get` of the head, the
//! compact head, and the outcome JSON built from the component's decisions
//! and the values the host holds. A Rust port of
//! `host-python/mcpgw/edge/compact.py` (checks included), so the vectors and
//! the differential tests run the compact encoding outside Python too.

use serde_json::{json, Value};

use crate::{Config, RequestHead};

/// The header codes: `a` + the index of the name here (the guest's `Name::ALL`).
pub const NAMES: [&str; 11] = [
    "mcp-session-id",
    "mcp-protocol-version",
    "accept",
    "content-type",
    "origin",
    "host",
    "last-event-id",
    "mcp-method",
    "mcp-name",
    "access-control-request-method",
    "access-control-request-headers",
];

/// Only passed through: never crosses in the compact encoding.
const PASS_THROUGH: [&str; 3] = ["last-event-id", "mcp-method", "mcp-name"];

/// The longest field a length character holds (the last code point before
/// the surrogates).
pub const MAX_FIELD: usize = 0xD7FF;

fn trim(s: &str) -> &str {
    s.trim_matches([' ', '\t'])
}

/// Section 1's `get` for every name the contract reads, in the order the
/// names first appear (names matched ASCII-case-insensitively).
pub fn lookup(headers: &[(String, String)]) -> Vec<(&'static str, String)> {
    let mut found: Vec<(&'static str, String)> = Vec::new();
    for (name, value) in headers {
        let Some(key) = NAMES.iter().find(|n| name.eq_ignore_ascii_case(n)) else {
            continue;
        };
        let value = trim(value);
        match found.iter_mut().find(|(k, _)| k == key) {
            Some((_, joined)) => {
                joined.push_str(", ");
                joined.push_str(value);
            }
            None => found.push((key, value.to_owned())),
        }
    }
    found
}

fn get<'f>(found: &'f [(&'static str, String)], name: &str) -> Option<&'f str> {
    found
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.as_str())
}

fn visible_session(v: &str) -> bool {
    (1..=256).contains(&v.chars().count()) && v.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

fn push_field(out: &mut String, value: &str) -> Option<()> {
    let n = value.chars().count();
    if n > MAX_FIELD {
        return None;
    }
    out.push(char::from_u32(u32::try_from(n).ok()?)?);
    out.push_str(value);
    Some(())
}

/// The compact head, or `None` when a field is too long for the encoding.
pub fn encode_head(method: &str, path: &str, found: &[(&'static str, String)]) -> Option<String> {
    let mut out = String::new();
    push_field(&mut out, method)?;
    push_field(&mut out, path)?;
    if let Some(session) = get(found, "mcp-session-id") {
        out.push('a');
        push_field(&mut out, if visible_session(session) { "s" } else { "" })?;
    }
    for (name, value) in found {
        if *name == "mcp-session-id" || PASS_THROUGH.contains(name) {
            continue;
        }
        let index = NAMES.iter().position(|n| n == name)?;
        out.push(char::from(b'a' + u8::try_from(index).ok()?));
        push_field(&mut out, value)?;
    }
    Some(out)
}

/// The compact head with the headers packed (section 16): `*`, the count,
/// the letters, the lengths, then the values as received when a header came
/// once (the component trims them), combined when it came more than once;
/// the session stand-in letter-coded after. `None` when a field is too long.
pub fn encode_head_packed(
    method: &str,
    path: &str,
    headers: &[(String, String)],
    found: &[(&'static str, String)],
) -> Option<String> {
    let mut values: Vec<(usize, &str)> = Vec::new();
    for (index, name) in NAMES.iter().enumerate() {
        if *name == "mcp-session-id" || PASS_THROUGH.contains(name) {
            continue;
        }
        let mut seen = headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name));
        let Some((_, first)) = seen.next() else {
            continue;
        };
        let value = if seen.next().is_some() {
            get(found, name)?
        } else {
            first.as_str()
        };
        values.push((index, value));
    }
    let mut out = String::new();
    push_field(&mut out, method)?;
    push_field(&mut out, path)?;
    out.push('*');
    out.push(char::from_u32(u32::try_from(values.len()).ok()?)?);
    for (index, _) in &values {
        out.push(char::from(b'a' + u8::try_from(*index).ok()?));
    }
    for (_, value) in &values {
        let n = value.chars().count();
        if n > MAX_FIELD {
            return None;
        }
        out.push(char::from_u32(u32::try_from(n).ok()?)?);
    }
    for (_, value) in &values {
        out.push_str(value);
    }
    if let Some(session) = get(found, "mcp-session-id") {
        out.push('a');
        push_field(&mut out, if visible_session(session) { "s" } else { "" })?;
    }
    Some(out)
}

/// The next field of `rest` (a length character, then that many code points).
fn take_field(rest: &mut std::str::Chars<'_>) -> Result<String, String> {
    let n = rest.next().ok_or("a field is missing")? as usize;
    let field: String = rest.by_ref().take(n).collect();
    if field.chars().count() != n {
        return Err("a field runs past the outcome".into());
    }
    Ok(field)
}

fn normalize_method(method: &str) -> String {
    for known in ["DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT"] {
        if method.eq_ignore_ascii_case(known) {
            return known.to_owned();
        }
    }
    method.to_owned()
}

fn pick(names: &[&'static str], code: char) -> Result<&'static str, String> {
    let index = (code as usize)
        .checked_sub('0' as usize)
        .ok_or("a code below 0")?;
    names
        .get(index)
        .copied()
        .ok_or_else(|| format!("code {code:?} out of range"))
}

fn is_unreserved(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~')
}

/// The outcome JSON (section 14's shape) for the component's compact answer
/// `out` to this head, or why the answer is not one the contract allows.
pub fn decode_outcome(
    out: &str,
    cfg: &Config,
    method: &str,
    path: &str,
    found: &[(&'static str, String)],
) -> Result<Value, String> {
    let mut chars = out.chars();
    match chars.next() {
        Some('F') => {}
        Some('P') => return decode_preflight(chars, cfg, found),
        _ => return Err("neither a forward nor a preflight".into()),
    }
    let mut code = || {
        chars
            .next()
            .ok_or_else(|| String::from("a forward cut short"))
    };
    let route = pick(&["mcp", "sse", "message", "ws", "health", "other"], code()?)?;
    let session_state = pick(&["absent", "valid", "invalid"], code()?)?;
    let protocol_state = pick(&["absent", "supported", "unsupported"], code()?)?;
    let accept = (code()? as u32)
        .checked_sub('0' as u32)
        .filter(|a| *a < 4)
        .ok_or("accept code out of range")?;
    let content = pick(&["absent", "json", "other"], code()?)?;
    let origin_state = pick(&["absent", "allowed", "denied"], code()?)?;
    let host_state = pick(&["absent", "allowed", "denied"], code()?)?;
    let mask = (code()? as u32)
        .checked_sub('@' as u32)
        .filter(|m| *m < 16)
        .ok_or("CORS set out of range")?;
    let canonical = match code()? {
        '=' => path.to_owned(),
        ':' => {
            let c = take_field(&mut chars)?;
            let allowed =
                |ch: char| is_unreserved(ch) || ch == '/' || ch == '%' || path.contains(ch);
            if c.chars().count() > path.chars().count().max(1) || !c.chars().all(allowed) {
                return Err("path is not the request's path canonicalized".into());
            }
            c
        }
        _ => return Err("the canonical path is neither the raw path nor a field".into()),
    };
    if route != "other"
        && !(canonical.starts_with('/') && canonical.chars().all(|c| is_unreserved(c) || c == '/'))
    {
        return Err("a known route's path is not plain".into());
    }
    let server_id = if chars.clone().next().is_some() {
        let id = take_field(&mut chars)?;
        let ok = chars.next().is_none()
            && matches!(route, "mcp" | "sse" | "message" | "ws")
            && (1..=64).contains(&id.len())
            && id.chars().all(is_unreserved);
        if !ok {
            return Err("server_id is not a server route's 1..64 unreserved characters".into());
        }
        Some(id)
    } else {
        None
    };

    let session = get(found, "mcp-session-id");
    let expected = match session {
        None => "absent",
        Some(s) if visible_session(s) => "valid",
        Some(_) => "invalid",
    };
    if session_state != expected {
        return Err("session_state does not follow mcp-session-id".into());
    }
    let version = get(found, "mcp-protocol-version");
    let revision = match (protocol_state, version) {
        ("absent", None) => Some(cfg.default_version.clone()),
        ("supported", Some(v)) if cfg.supported_versions.iter().any(|s| s == v) => {
            Some(v.to_owned())
        }
        ("unsupported", Some(_)) => None,
        _ => return Err("protocol_state does not follow mcp-protocol-version".into()),
    };
    let origin = get(found, "origin");
    if (origin_state == "absent") != origin.is_none()
        || (host_state == "absent") != get(found, "host").is_none()
        || (content == "absent") != get(found, "content-type").is_none()
    {
        return Err("a verdict disagrees with the presence of its header".into());
    }
    if (route != "mcp" && mask != 0)
        || (mask & 4 != 0 && !cfg.allow_credentials)
        || (mask & 1 != 0 && origin.is_none())
    {
        return Err("a CORS set the contract does not allow".into());
    }
    let mut cors = Vec::new();
    for (bit, name, value) in [
        (1, "access-control-allow-origin", origin.unwrap_or_default()),
        (
            2,
            "access-control-expose-headers",
            "Mcp-Session-Id, Mcp-Protocol-Version, WWW-Authenticate",
        ),
        (4, "access-control-allow-credentials", "true"),
        (8, "vary", "Origin"),
    ] {
        if mask & bit != 0 {
            cors.push(json!([name, value]));
        }
    }
    Ok(json!({"forward": {
        "method": normalize_method(method),
        "path": canonical,
        "route": route,
        "server_id": server_id,
        "session_state": session_state,
        "session_id": if session_state == "valid" { session } else { None },
        "protocol_version": version,
        "protocol_state": protocol_state,
        "revision": revision,
        "accept_json": accept & 1 != 0,
        "accept_sse": accept & 2 != 0,
        "content_type": content,
        "origin": origin,
        "origin_state": origin_state,
        "host_state": host_state,
        "last_event_id": get(found, "last-event-id"),
        "mcp_method": get(found, "mcp-method"),
        "mcp_name": get(found, "mcp-name"),
        "cors_headers": cors,
    }}))
}

const PREFLIGHT_VARY: &str =
    "Origin, Access-Control-Request-Method, Access-Control-Request-Headers";

fn decode_preflight(
    mut chars: std::str::Chars<'_>,
    cfg: &Config,
    found: &[(&'static str, String)],
) -> Result<Value, String> {
    match chars.next() {
        Some('4') if chars.next().is_none() => {
            return Ok(json!({"preflight": {"status": 403, "headers": [["vary", PREFLIGHT_VARY]]}}))
        }
        Some('2') => {}
        _ => return Err("preflight status is not 204 or 403".into()),
    }
    let allow = take_field(&mut chars)?;
    let origin = get(found, "origin").ok_or("a 204 preflight without Origin")?;
    let allowed = |n: &str| {
        cfg.allowed_headers
            .iter()
            .any(|h| h.eq_ignore_ascii_case(n))
    };
    if chars.next().is_some() || allow.is_empty() || !allow.split(", ").all(allowed) {
        return Err("access-control-allow-headers names a header that is not allowed".into());
    }
    let mut headers = vec![
        json!(["access-control-allow-origin", origin]),
        json!(["access-control-allow-methods", "GET, POST, DELETE, OPTIONS"]),
        json!(["access-control-allow-headers", allow]),
        json!(["access-control-max-age", cfg.max_age.to_string()]),
    ];
    if cfg.allow_credentials {
        headers.push(json!(["access-control-allow-credentials", "true"]));
    }
    headers.push(json!(["vary", PREFLIGHT_VARY]));
    Ok(json!({"preflight": {"status": 204, "headers": headers}}))
}

/// `head` through the compact encoding end to end: `Ok(None)` when a field
/// is too long for it.
pub fn evaluate_with(
    call: impl FnOnce(&str) -> Result<String, String>,
    cfg: &Config,
    head: &RequestHead,
) -> Result<Option<Value>, String> {
    let found = lookup(&head.headers);
    let Some(text) = encode_head(&head.method, &head.path, &found) else {
        return Ok(None);
    };
    let out = call(&text)?;
    decode_outcome(&out, cfg, &head.method, &head.path, &found).map(Some)
}

/// `evaluate_with` with the headers packed (`encode_head_packed`).
pub fn evaluate_packed_with(
    call: impl FnOnce(&str) -> Result<String, String>,
    cfg: &Config,
    head: &RequestHead,
) -> Result<Option<Value>, String> {
    let found = lookup(&head.headers);
    let Some(text) = encode_head_packed(&head.method, &head.path, &head.headers, &found) else {
        return Ok(None);
    };
    let out = call(&text)?;
    decode_outcome(&out, cfg, &head.method, &head.path, &found).map(Some)
}
