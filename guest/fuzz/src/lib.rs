//! Shared by the fuzz targets: the configurations, the decoding of a fuzz
//! input into a request head, and the invariants every outcome must satisfy.
//!
//! Every check panics on failure, which libFuzzer reports as a crash (with
//! the input saved as an artifact). The reference computations here are
//! written from docs/edge-contract.md independently of `guest/src`, so a
//! disagreement is a finding, not a tautology.

use std::borrow::Cow;

use serde_json::{json, Value};
use transport_core::config::{Config, ConfigInput};
use transport_core::encoded::{config_from_json, evaluate_encoded, outcome_json};
use transport_core::evaluate::{
    evaluate, ContentKind, HeaderList, Outcome, Preflight, Presence, Verdict, VersionState,
};
use transport_core::headers::Headers;
use transport_core::path::{route, Route};

/// The configuration every vector starts from (the documented defaults).
pub const BASE_CONFIG: &str = include_str!("../../../tests/vectors/base-config.json");

/// The separator of `decode_head`'s fields: 0xFF never occurs in UTF-8.
pub const SEP: u8 = 0xFF;

/// The headers the contract reads (section 1); every other one is ignored.
pub const READ_HEADERS: [&str; 11] = [
    "origin",
    "host",
    "accept",
    "content-type",
    "mcp-session-id",
    "mcp-protocol-version",
    "last-event-id",
    "mcp-method",
    "mcp-name",
    "access-control-request-method",
    "access-control-request-headers",
];

const KNOWN_METHODS: [&str; 6] = ["DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT"];
const VARY_PREFLIGHT: &str =
    "Origin, Access-Control-Request-Method, Access-Control-Request-Headers";
const ALLOW_METHODS: &str = "GET, POST, DELETE, OPTIONS";
const EXPOSE_HEADERS: &str = "Mcp-Session-Id, Mcp-Protocol-Version, WWW-Authenticate";

/// A configuration as given and as validated.
pub struct Configured {
    pub input: ConfigInput,
    pub config: Config,
}

impl Configured {
    pub fn new(input: ConfigInput) -> Option<Self> {
        let config = Config::new(input.clone()).ok()?;
        Some(Configured { input, config })
    }

    /// Upper bound on what the configuration alone can add to an outcome.
    fn text_len(&self) -> usize {
        let list = |v: &[String]| v.iter().map(|s| s.len() + 2).sum::<usize>();
        list(&self.input.allowed_headers) + list(&self.input.supported_versions) + 64
    }

    fn prefix(&self) -> Vec<String> {
        self.input
            .path_prefix
            .split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }
}

pub fn base_input() -> ConfigInput {
    config_from_json(BASE_CONFIG).expect("tests/vectors/base-config.json is a valid config")
}

/// Three configurations that take different branches (as in
/// guest/tests/properties.rs): the base; credentials, a path prefix and more
/// origins and hosts; `*` origins and hosts, no allowed headers, max max-age.
pub fn configs() -> Vec<Configured> {
    let mut out = vec![Configured::new(base_input()).expect("base config")];
    let mut c = base_input();
    c.allow_credentials = true;
    c.path_prefix = "/api/v1".into();
    c.allowed_origins.push("https://App.example.com".into());
    c.allowed_origins.push("null".into());
    c.allowed_hosts.push("example.com:8443".into());
    out.push(Configured::new(c).expect("second config"));
    let mut c = base_input();
    c.allowed_origins = vec!["*".into()];
    c.allowed_hosts = vec!["*".into()];
    c.allowed_headers = Vec::new();
    c.max_age = u32::MAX;
    out.push(Configured::new(c).expect("third config"));
    out
}

/// A request head with owned strings.
#[derive(Debug, Clone, Default)]
pub struct OwnedHead {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
}

impl OwnedHead {
    fn text_len(&self) -> usize {
        self.method.len()
            + self.path.len()
            + self.query.len()
            + self
                .headers
                .iter()
                .map(|(n, v)| n.len() + v.len())
                .sum::<usize>()
    }

    /// The encoded head, written by serde_json.
    pub fn to_json(&self) -> String {
        json!([self.method, self.path, self.query, self.headers]).to_string()
    }
}

/// The structured target's input: one byte choosing the configuration, then
/// `method SEP path SEP query (SEP name SEP value)*`, each field UTF-8
/// (invalid bytes become U+FFFD). Missing fields are empty. The format is
/// trivially invertible, so seeds are written from the vectors (seeds.py).
pub fn decode_head(data: &[u8]) -> (usize, OwnedHead) {
    let (selector, rest) = match data.split_first() {
        Some((s, rest)) => (usize::from(*s), rest),
        None => (0, &[][..]),
    };
    let mut fields = rest
        .split(|b| *b == SEP)
        .map(|f| String::from_utf8_lossy(f).into_owned());
    let method = fields.next().unwrap_or_default();
    let path = fields.next().unwrap_or_default();
    let query = fields.next().unwrap_or_default();
    let mut headers = Vec::new();
    while let Some(name) = fields.next() {
        headers.push((name, fields.next().unwrap_or_default()));
    }
    let head = OwnedHead {
        method,
        path,
        query,
        headers,
    };
    (selector, head)
}

/// Contract section 0's trim: space and tab only.
fn trim(s: &str) -> &str {
    s.trim_matches(|c| c == ' ' || c == '\t')
}

/// Contract section 1's `get`, written independently of `Headers`.
fn get(headers: &[(String, String)], name: &str) -> Option<String> {
    let values: Vec<&str> = headers
        .iter()
        .filter(|(n, _)| n.to_ascii_lowercase() == name)
        .map(|(_, v)| trim(v))
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

fn header_list(list: HeaderList<'_>) -> Value {
    Value::Array(list.as_slice().iter().map(|(n, v)| json!([n, v])).collect())
}

/// The typed outcome as the contract's JSON, built by serde_json
/// (independently of the hand-written writer under test).
pub fn outcome_value(outcome: &Outcome<'_>) -> Value {
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

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn is_visible_ascii(s: &str) -> bool {
    s.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn is_port(s: &str) -> bool {
    (1..=5).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

/// Section 8, from the contract's text.
fn origin_allowed(input: &ConfigInput, origin: &str) -> bool {
    if origin.contains(',') {
        return false;
    }
    let origin = origin.to_ascii_lowercase();
    input.allowed_origins.iter().any(|entry| {
        let entry = entry.to_ascii_lowercase();
        if entry == "*" {
            return true;
        }
        match entry.strip_suffix(":*") {
            Some(base) => {
                origin == base
                    || origin
                        .strip_prefix(base)
                        .and_then(|rest| rest.strip_prefix(':'))
                        .is_some_and(is_port)
            }
            None => origin == entry,
        }
    })
}

/// Section 9's host-port, on an ASCII-lowercased value.
fn host_port(s: &str) -> Option<(&str, &str)> {
    let (name, rest) = if s.starts_with('[') {
        let end = s.find(']')? + 1;
        s.split_at(end)
    } else {
        s.split_at(s.find(':').unwrap_or(s.len()))
    };
    if name.is_empty() {
        return None;
    }
    if rest.is_empty() {
        return Some((name, ""));
    }
    let port = rest.strip_prefix(':')?;
    is_port(port).then_some((name, port))
}

/// Section 9, from the contract's text.
fn host_allowed(input: &ConfigInput, host: &str) -> bool {
    if input.allowed_hosts.iter().any(|e| e == "*") {
        return true;
    }
    let host = host.to_ascii_lowercase();
    let Some((name, port)) = host_port(&host) else {
        return false;
    };
    input.allowed_hosts.iter().any(|entry| {
        let entry = entry.to_ascii_lowercase();
        host_port(&entry).is_some_and(|(n, p)| n == name && (p.is_empty() || p == port))
    })
}

/// Section 6 step 1/2: split on `delim` outside quoted strings.
fn split_outside_quotes(s: &str, delim: char) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in s.char_indices() {
        if quoted {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                quoted = false;
            }
        } else if c == '"' {
            quoted = true;
        } else if c == delim {
            out.push(&s[start..i]);
            start = i + 1;
        }
    }
    out.push(&s[start..]);
    out
}

/// Section 6 step 3's qvalue, in thousandths.
fn qvalue(s: &str) -> Option<u32> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match int {
        "0" => Some(format!("{frac:0<3}").parse().ok()?),
        "1" if frac.bytes().all(|b| b == b'0') => Some(1000),
        _ => None,
    }
}

/// Section 6: (accept-json, accept-sse), from the contract's text.
fn accepts(value: Option<&str>) -> (bool, bool) {
    let Some(value) = value else {
        return (false, false);
    };
    let mut elements = Vec::new();
    'elements: for element in split_outside_quotes(value, ',') {
        let parts = split_outside_quotes(element, ';');
        let range = trim(parts[0]).to_ascii_lowercase();
        let Some((ty, sub)) = range.split_once('/') else {
            continue;
        };
        if !is_token(ty) || !is_token(sub) {
            continue;
        }
        let mut weight = 1000;
        for part in &parts[1..] {
            let Some((name, value)) = trim(part).split_once('=') else {
                continue;
            };
            if !trim(name).eq_ignore_ascii_case("q") {
                continue;
            }
            match qvalue(trim(value)) {
                Some(w) => weight = w,
                None => continue 'elements,
            }
            break;
        }
        elements.push((ty.to_string(), sub.to_string(), weight));
    }
    let acceptable = |target_ty: &str, target_sub: &str| {
        let spec = |ty: &str, sub: &str| match (ty, sub) {
            _ if ty == target_ty && sub == target_sub => 3,
            _ if ty == target_ty && sub == "*" => 2,
            ("*", "*") => 1,
            _ => 0,
        };
        let best = elements
            .iter()
            .map(|(t, s, _)| spec(t, s))
            .max()
            .unwrap_or(0);
        best > 0
            && elements
                .iter()
                .filter(|(t, s, _)| spec(t, s) == best)
                .map(|(_, _, w)| *w)
                .max()
                .unwrap_or(0)
                > 0
    };
    (
        acceptable("application", "json"),
        acceptable("text", "event-stream"),
    )
}

/// Evaluates `head` under `c` with the typed entry point, checks every
/// invariant below, and returns the outcome's JSON (`outcome_json`).
pub fn check_typed(c: &Configured, head: &OwnedHead) -> String {
    let cfg = &c.config;
    let h = head;
    let pairs = || h.headers.iter().map(|(n, v)| (n.as_str(), v.as_str()));
    let outcome = evaluate(cfg, &h.method, &h.path, Headers::collect(pairs()));
    let text = outcome_json(&outcome);

    // The outcome's JSON parses, equals serde_json's rendering of the
    // typed outcome, and is exactly one of `forward` / `preflight`.
    let parsed: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("outcome_json is not JSON ({e}): {text:?}"));
    assert_eq!(
        parsed,
        outcome_value(&outcome),
        "outcome_json disagrees with serde_json's rendering"
    );
    let obj = parsed.as_object().expect("outcome is an object");
    assert_eq!(obj.len(), 1, "outcome has one key: {text}");
    assert!(obj.contains_key("forward") ^ obj.contains_key("preflight"));

    // Allocation is linear: escaping grows a byte to at most 6 (\u00XX).
    let bound = 2048 + 6 * (h.text_len() + c.text_len());
    assert!(
        text.len() <= bound,
        "outcome of {} bytes for {} input bytes",
        text.len(),
        h.text_len()
    );

    // Section 2.
    let upper = h.method.to_ascii_uppercase();
    let method = if KNOWN_METHODS.contains(&upper.as_str()) {
        upper
    } else {
        h.method.clone()
    };

    // Section 3 (the route itself, to know whether this is an MCP path).
    let prefix = c.prefix();
    let info = route(&h.path, &prefix);
    let on_mcp = info.route == Route::Mcp;
    let origin = get(&h.headers, "origin");
    let request_method = get(&h.headers, "access-control-request-method");
    let is_preflight =
        method == "OPTIONS" && on_mcp && origin.is_some() && request_method.is_some();

    match &outcome {
        Outcome::Preflight(p) => {
            assert!(is_preflight, "preflight for a non-preflight request");
            check_preflight(c, p, h, origin.as_deref(), request_method.as_deref());
        }
        Outcome::Forward(ctx) => {
            assert!(!is_preflight, "a preflight request was forwarded");
            assert_eq!(ctx.method, method, "section 2: method");

            // Section 3: the canonical path.
            let p: &str = &ctx.path.path;
            if !h.path.is_empty() && !h.path.starts_with('/') {
                assert_eq!(p, h.path, "a non-origin-form path is kept");
                assert_eq!(ctx.route(), Route::Other);
                assert_eq!(ctx.server_id(), None);
            } else {
                assert!(p.starts_with('/'), "canonical path {p:?} starts with /");
                assert!(!p.contains("//"), "canonical path {p:?} has no //");
                assert!(p == "/" || !p.ends_with('/'), "no trailing / in {p:?}");
                assert!(
                    p[1..].split('/').all(|s| s != "." && s != ".."),
                    "no dot segment in {p:?}"
                );
                assert!(
                    p.len() <= h.path.len().max(1),
                    "canonical path is never longer"
                );
            }
            if ctx.route() != Route::Other && !prefix.is_empty() {
                let want = format!("/{}/", prefix.join("/"));
                assert!(p.starts_with(&want), "route under the prefix: {p:?}");
            }
            match ctx.server_id() {
                Some(id) => {
                    assert!(matches!(
                        ctx.route(),
                        Route::Mcp | Route::Sse | Route::Message | Route::Ws
                    ));
                    assert!((1..=64).contains(&id.len()) && id.bytes().all(is_unreserved));
                    let tail = format!("/servers/{id}/{}", ctx.route().name());
                    assert!(p.ends_with(&tail), "server id {id:?} in {p:?}");
                }
                None => {
                    if ctx.route() != Route::Other {
                        assert!(p.ends_with(&format!("/{}", ctx.route().name())));
                    }
                }
            }

            // Section 4.
            let sid = get(&h.headers, "mcp-session-id");
            match ctx.session_state {
                Presence::Absent => assert!(sid.is_none() && ctx.session_id.is_none()),
                Presence::Valid => {
                    let id = ctx.session_id.as_deref().expect("valid session has an id");
                    assert_eq!(Some(id), sid.as_deref());
                    assert!((1..=256).contains(&id.chars().count()) && is_visible_ascii(id));
                }
                Presence::Invalid => {
                    let id = sid.expect("invalid session id is present");
                    assert!(ctx.session_id.is_none());
                    assert!(!((1..=256).contains(&id.chars().count()) && is_visible_ascii(&id)));
                }
            }

            // Section 5.
            let pv = get(&h.headers, "mcp-protocol-version");
            assert_eq!(ctx.protocol_version.as_deref(), pv.as_deref());
            match ctx.protocol_state {
                VersionState::Absent => {
                    assert!(pv.is_none());
                    assert_eq!(ctx.revision, Some(c.input.default_version.as_str()));
                }
                VersionState::Supported => {
                    let pv = pv.expect("supported version is present");
                    assert!(c.input.supported_versions.contains(&pv));
                    assert_eq!(ctx.revision, Some(pv.as_str()));
                }
                VersionState::Unsupported => {
                    let pv = pv.expect("unsupported version is present");
                    assert!(!c.input.supported_versions.contains(&pv));
                    assert_eq!(ctx.revision, None);
                }
            }

            // Section 6.
            let accept = get(&h.headers, "accept");
            assert_eq!(
                (ctx.accept_json, ctx.accept_sse),
                accepts(accept.as_deref()),
                "section 6: accept {accept:?}"
            );

            // Section 7.
            let want = match get(&h.headers, "content-type") {
                None => ContentKind::Absent,
                Some(v) => {
                    let essence = trim(v.split(';').next().unwrap_or_default());
                    if essence.eq_ignore_ascii_case("application/json") {
                        ContentKind::Json
                    } else {
                        ContentKind::Other
                    }
                }
            };
            assert_eq!(ctx.content_type, want, "section 7: content type");

            // Sections 8 and 9.
            assert_eq!(ctx.origin.as_deref(), origin.as_deref());
            let want = match &origin {
                None => Verdict::Absent,
                Some(o) if origin_allowed(&c.input, o) => Verdict::Allowed,
                Some(_) => Verdict::Denied,
            };
            assert_eq!(ctx.origin_state, want, "section 8: origin {origin:?}");
            let host = get(&h.headers, "host");
            let want = match &host {
                None => Verdict::Absent,
                Some(v) if host_allowed(&c.input, v) => Verdict::Allowed,
                Some(_) => Verdict::Denied,
            };
            assert_eq!(ctx.host_state, want, "section 9: host {host:?}");

            // Section 10.
            assert_eq!(
                ctx.last_event_id.as_deref(),
                get(&h.headers, "last-event-id").as_deref()
            );
            assert_eq!(
                ctx.mcp_method.as_deref(),
                get(&h.headers, "mcp-method").as_deref()
            );
            assert_eq!(
                ctx.mcp_name.as_deref(),
                get(&h.headers, "mcp-name").as_deref()
            );

            // Section 11.
            let cors = ctx.cors_headers();
            let cors = cors.as_slice();
            if ctx.route() != Route::Mcp {
                assert!(cors.is_empty(), "CORS headers off the MCP path");
            } else if ctx.origin_state == Verdict::Allowed {
                let mut want: Vec<(&str, &str)> = vec![
                    (
                        "access-control-allow-origin",
                        origin.as_deref().unwrap_or_default(),
                    ),
                    ("access-control-expose-headers", EXPOSE_HEADERS),
                ];
                if c.input.allow_credentials {
                    want.push(("access-control-allow-credentials", "true"));
                }
                want.push(("vary", "Origin"));
                assert_eq!(cors, want.as_slice());
            } else {
                assert_eq!(cors, [("vary", "Origin")].as_slice());
            }
        }
    }

    // Section 1: every header the contract does not read is ignored.
    let read: Vec<(&str, &str)> = pairs()
        .filter(|(n, _)| READ_HEADERS.contains(&n.to_ascii_lowercase().as_str()))
        .collect();
    if read.len() != h.headers.len() {
        let again = evaluate(cfg, &h.method, &h.path, Headers::collect(read));
        assert_eq!(
            outcome_json(&again),
            text,
            "an unread header changed the outcome"
        );
    }

    // Section 14: the encoded twin gives the same outcome for the same head.
    let encoded = evaluate_encoded(Some(cfg), &h.to_json());
    assert_eq!(encoded, text, "evaluate-encoded disagrees with evaluate");
    text
}

fn check_preflight(
    c: &Configured,
    p: &Preflight<'_>,
    h: &OwnedHead,
    origin: Option<&str>,
    request_method: Option<&str>,
) {
    let origin = origin.expect("preflight has an origin");
    let request_method = request_method.expect("preflight has a requested method");
    let list = p.headers();
    let items = list.as_slice();
    assert_eq!(
        items.last(),
        Some(&("vary", VARY_PREFLIGHT)),
        "vary is last"
    );

    // Section 12, from the contract's text.
    let allowed: Vec<String> = c
        .input
        .allowed_headers
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let mut requested: Option<Vec<&str>> = Some(Vec::new());
    let asked = get(&h.headers, "access-control-request-headers").unwrap_or_default();
    for name in asked.split(',').map(trim).filter(|n| !n.is_empty()) {
        let lower = name.to_ascii_lowercase();
        match allowed.iter().find(|a| **a == lower) {
            Some(a) => {
                if let Some(list) = requested.as_mut() {
                    if !list.contains(&a.as_str()) {
                        list.push(a.as_str());
                    }
                }
            }
            None => requested = None,
        }
    }
    let granted = origin_allowed(&c.input, origin)
        && matches!(request_method, "GET" | "POST" | "DELETE" | "OPTIONS")
        && requested.is_some();
    if !granted {
        assert_eq!(p.status(), 403);
        assert_eq!(items.len(), 1, "a denied preflight has only vary");
        return;
    }
    assert_eq!(p.status(), 204);
    let requested = requested.unwrap_or_default();
    let allow_headers: Cow<str> = if requested.is_empty() {
        Cow::Owned(allowed.join(", "))
    } else {
        Cow::Owned(requested.join(", "))
    };
    let max_age = c.input.max_age.to_string();
    let mut want: Vec<(&str, &str)> = vec![
        ("access-control-allow-origin", origin),
        ("access-control-allow-methods", ALLOW_METHODS),
        ("access-control-allow-headers", &allow_headers),
        ("access-control-max-age", &max_age),
    ];
    if c.input.allow_credentials {
        want.push(("access-control-allow-credentials", "true"));
    }
    want.push(("vary", VARY_PREFLIGHT));
    assert_eq!(items, want.as_slice(), "section 12: the 204 grant");
}

/// `evaluate-encoded` on any text under `c`: always JSON; `malformed-input`
/// exactly when serde_json refuses the text as
/// `[string, string, string, [[string, string], ...]]`; otherwise the very
/// outcome of the typed path on the head serde_json reads (so the encoded
/// reader agrees with serde_json, escapes and surrogates included).
pub fn check_encoded(c: &Configured, text: &str) {
    let out = evaluate_encoded(Some(&c.config), text);
    let v: Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("evaluate-encoded answered non-JSON ({e}): {out:?}"));
    let obj = v.as_object().expect("answer is an object");
    assert_eq!(obj.len(), 1, "answer has one key: {out}");
    assert!(
        out.len() <= 2048 + 6 * (text.len() + c.text_len()),
        "answer of {} bytes for {} input bytes",
        out.len(),
        text.len()
    );
    type Reference = (String, String, String, Vec<(String, String)>);
    match serde_json::from_str::<Reference>(text) {
        Ok((method, path, query, headers)) => {
            let head = OwnedHead {
                method,
                path,
                query,
                headers,
            };
            let typed = check_typed(c, &head);
            assert_eq!(
                out, typed,
                "the encoded reader read another head than serde_json"
            );
        }
        Err(_) => {
            assert_eq!(
                v["error"]["kind"], "malformed-input",
                "serde_json refuses this head but evaluate-encoded answered {out}"
            );
        }
    }
}

/// A compact field (docs/edge-contract.md section 16): the length in code
/// points as one character, then the text.
fn compact_field(out: &mut String, value: &str) -> bool {
    let Some(len) = u32::try_from(value.chars().count())
        .ok()
        .and_then(char::from_u32)
        .filter(|c| (*c as u32) < 0xD800)
    else {
        return false;
    };
    out.push(len);
    out.push_str(value);
    true
}

/// `evaluate-compact` on `head` under `c` (the head written as a host writes
/// it, with section 1's `get` done here and the real session id): its
/// decisions must be exactly those of `typed` (the typed outcome's JSON).
pub fn check_compact(c: &Configured, head: &OwnedHead, typed: &str) {
    const CODES: [&str; 11] = [
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
    let mut text = String::new();
    if !compact_field(&mut text, &head.method) || !compact_field(&mut text, &head.path) {
        return;
    }
    for (i, name) in CODES.iter().enumerate() {
        if let Some(value) = get(&head.headers, name) {
            text.push(char::from(b'a' + i as u8));
            if !compact_field(&mut text, &value) {
                return;
            }
        }
    }
    let out = transport_core::compact::evaluate_compact(Some(&c.config), &text);
    let typed: Value = serde_json::from_str(typed).expect("typed outcome JSON");
    let want = if let Some(f) = typed.get("forward") {
        let index = |list: &[&str], v: &Value| {
            let i = list
                .iter()
                .position(|n| v == n)
                .expect("a known enum value");
            char::from(b'0' + i as u8)
        };
        let mut want = String::from("F");
        want.push(index(
            &["mcp", "sse", "message", "ws", "health", "other"],
            &f["route"],
        ));
        want.push(index(&["absent", "valid", "invalid"], &f["session_state"]));
        want.push(index(
            &["absent", "supported", "unsupported"],
            &f["protocol_state"],
        ));
        want.push(char::from(
            b'0' + u8::from(f["accept_json"] == true) + 2 * u8::from(f["accept_sse"] == true),
        ));
        want.push(index(&["absent", "json", "other"], &f["content_type"]));
        want.push(index(&["absent", "allowed", "denied"], &f["origin_state"]));
        want.push(index(&["absent", "allowed", "denied"], &f["host_state"]));
        let mut mask = 0u8;
        for pair in f["cors_headers"].as_array().expect("cors list") {
            mask |= match pair[0].as_str().expect("name") {
                "access-control-allow-origin" => 1,
                "access-control-expose-headers" => 2,
                "access-control-allow-credentials" => 4,
                "vary" => 8,
                other => panic!("a CORS header without a bit: {other}"),
            };
        }
        want.push(char::from(b'@' + mask));
        let path = f["path"].as_str().expect("path");
        if path == head.path {
            want.push('=');
        } else {
            want.push(':');
            assert!(
                compact_field(&mut want, path),
                "a canonical path longer than the raw one"
            );
        }
        if let Some(id) = f["server_id"].as_str() {
            assert!(compact_field(&mut want, id));
        }
        want
    } else {
        let p = &typed["preflight"];
        if p["status"] == 403 {
            String::from("P4")
        } else {
            let allow = p["headers"]
                .as_array()
                .expect("headers")
                .iter()
                .find(|h| h[0] == "access-control-allow-headers")
                .and_then(|h| h[1].as_str())
                .expect("a 204 names its allowed headers");
            let mut want = String::from("P2");
            assert!(compact_field(&mut want, allow));
            want
        }
    };
    assert_eq!(
        out, want,
        "evaluate-compact disagrees with the typed outcome {typed}"
    );
}

/// `evaluate-compact` on any text: `E2`, or an answer in the compact shape
/// (and never a panic).
pub fn check_compact_garbage(c: &Configured, text: &str) {
    let out = transport_core::compact::evaluate_compact(Some(&c.config), text);
    assert!(
        out == "E2" || out.starts_with('F') || out.starts_with("P2") || out == "P4",
        "{out:?}"
    );
    assert_eq!(transport_core::compact::evaluate_compact(None, text), "E0");
}
