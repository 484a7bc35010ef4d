//! `evaluate`: the request context (sections 2, 4-11) or the preflight
//! answer (section 12) for one request head.

use alloc::borrow::Cow;
use alloc::string::String;
use alloc::vec::Vec;

use crate::accept::accepts;
use crate::broken_invariant;
use crate::config::Config;
use crate::headers::{Headers, Name};
use crate::path::{route, PathInfo, Route};
use crate::text::{eq_lower_word, is_visible_ascii, trim};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presence {
    Absent,
    Valid,
    Invalid,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VersionState {
    Absent,
    Supported,
    Unsupported,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentKind {
    Absent,
    Json,
    Other,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Absent,
    Allowed,
    Denied,
}

impl Presence {
    pub fn name(self) -> &'static str {
        match self {
            Presence::Absent => "absent",
            Presence::Valid => "valid",
            Presence::Invalid => "invalid",
        }
    }
}

impl VersionState {
    pub fn name(self) -> &'static str {
        match self {
            VersionState::Absent => "absent",
            VersionState::Supported => "supported",
            VersionState::Unsupported => "unsupported",
        }
    }
}

impl ContentKind {
    pub fn name(self) -> &'static str {
        match self {
            ContentKind::Absent => "absent",
            ContentKind::Json => "json",
            ContentKind::Other => "other",
        }
    }
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Absent => "absent",
            Verdict::Allowed => "allowed",
            Verdict::Denied => "denied",
        }
    }
}

/// A short list of response headers with static names, without a heap
/// allocation (a response here never has more than six: a seventh is a
/// broken invariant, not a header left out).
#[derive(Debug, Clone, Copy)]
pub struct HeaderList<'s> {
    items: [(&'static str, &'s str); 6],
    len: usize,
}

impl<'s> HeaderList<'s> {
    fn new() -> Self {
        HeaderList {
            items: [("", ""); 6],
            len: 0,
        }
    }

    fn push(&mut self, name: &'static str, value: &'s str) {
        let Some(slot) = self.items.get_mut(self.len) else {
            broken_invariant("HeaderList: more than six headers")
        };
        *slot = (name, value);
        self.len += 1;
    }

    pub fn as_slice(&self) -> &[(&'static str, &'s str)] {
        match self.items.get(..self.len) {
            Some(items) => items,
            None => broken_invariant("HeaderList: len past its items"),
        }
    }
}

const VARY_PREFLIGHT: &str =
    "Origin, Access-Control-Request-Method, Access-Control-Request-Headers";
const ALLOW_METHODS: &str = "GET, POST, DELETE, OPTIONS";
const EXPOSE_HEADERS: &str = "Mcp-Session-Id, Mcp-Protocol-Version, WWW-Authenticate";

/// CORS headers of the actual response (section 11), by case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cors {
    /// Not an MCP path.
    None,
    /// MCP path, origin absent or denied.
    Vary,
    /// MCP path, origin allowed.
    Allow { credentials: bool },
}

/// The normalized request (the WIT `request-context`). Strings borrow from
/// the request head or the configuration where they can.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context<'a> {
    pub method: &'a str,
    pub path: PathInfo<'a>,
    pub session_state: Presence,
    pub session_id: Option<Cow<'a, str>>,
    pub protocol_version: Option<Cow<'a, str>>,
    pub protocol_state: VersionState,
    pub revision: Option<&'a str>,
    pub accept_json: bool,
    pub accept_sse: bool,
    pub content_type: ContentKind,
    pub origin: Option<Cow<'a, str>>,
    pub origin_state: Verdict,
    pub host_state: Verdict,
    pub last_event_id: Option<Cow<'a, str>>,
    pub mcp_method: Option<Cow<'a, str>>,
    pub mcp_name: Option<Cow<'a, str>>,
    cors: Cors,
}

impl Context<'_> {
    pub fn route(&self) -> Route {
        self.path.route
    }

    pub fn server_id(&self) -> Option<&str> {
        self.path.server_id()
    }

    /// `cors-headers` (section 11).
    pub fn cors_headers(&self) -> HeaderList<'_> {
        let mut list = HeaderList::new();
        match self.cors {
            Cors::None => {}
            Cors::Vary => list.push("vary", "Origin"),
            Cors::Allow { credentials } => {
                // `evaluate` allows only a present origin.
                let Some(origin) = self.origin.as_deref() else {
                    broken_invariant("cors: an allowed origin that is absent")
                };
                list.push("access-control-allow-origin", origin);
                list.push("access-control-expose-headers", EXPOSE_HEADERS);
                if credentials {
                    list.push("access-control-allow-credentials", "true");
                }
                list.push("vary", "Origin");
            }
        }
        list
    }
}

/// A preflight answer (section 12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preflight<'a> {
    /// 403 with `vary` only.
    Denied,
    /// 204 with the CORS grant.
    Allowed {
        origin: Cow<'a, str>,
        allow_headers: Cow<'a, str>,
        max_age: &'a str,
        credentials: bool,
    },
}

impl Preflight<'_> {
    pub fn status(&self) -> u16 {
        match self {
            Preflight::Denied => 403,
            Preflight::Allowed { .. } => 204,
        }
    }

    /// `status` as decimal text.
    pub fn status_text(&self) -> &'static str {
        match self {
            Preflight::Denied => "403",
            Preflight::Allowed { .. } => "204",
        }
    }

    pub fn headers(&self) -> HeaderList<'_> {
        let mut list = HeaderList::new();
        if let Preflight::Allowed {
            origin,
            allow_headers,
            max_age,
            credentials,
        } = self
        {
            list.push("access-control-allow-origin", origin);
            list.push("access-control-allow-methods", ALLOW_METHODS);
            list.push("access-control-allow-headers", allow_headers);
            list.push("access-control-max-age", max_age);
            if *credentials {
                list.push("access-control-allow-credentials", "true");
            }
        }
        list.push("vary", VARY_PREFLIGHT);
        list
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<'a> {
    Preflight(Preflight<'a>),
    Forward(Context<'a>),
}

/// Section 2: Fetch's "normalize a method".
pub fn normalize_method(method: &str) -> &str {
    const KNOWN: [&str; 6] = ["DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT"];
    KNOWN
        .into_iter()
        .find(|known| method.eq_ignore_ascii_case(known))
        .unwrap_or(method)
}

/// Section 12, once the request is known to be a preflight (`method`: its
/// `access-control-request-method`).
fn preflight<'a>(
    cfg: &'a Config,
    origin: Cow<'a, str>,
    allowed: bool,
    method: &str,
    headers: &Headers<'a>,
) -> Preflight<'a> {
    if !allowed {
        return Preflight::Denied;
    }
    if !matches!(method, "GET" | "POST" | "DELETE" | "OPTIONS") {
        return Preflight::Denied;
    }
    // Requested names as entries of allowed-headers: every name must be
    // allowed, so the de-duplicated list is never longer than that list.
    // An absent access-control-request-headers requests none.
    let mut requested: Vec<&str> = Vec::with_capacity(cfg.allowed_headers.len());
    for name in headers
        .get(Name::RequestHeaders)
        .unwrap_or_default()
        .split(',')
    {
        let name = trim(name);
        if name.is_empty() {
            continue;
        }
        let Some(allowed) = cfg.allowed_header(name) else {
            return Preflight::Denied;
        };
        if !requested.contains(&allowed) {
            requested.push(allowed);
        }
    }
    let allow_headers = if requested.is_empty() {
        Cow::Borrowed(cfg.allowed_headers_joined.as_str())
    } else {
        // A subset of the full list, so never longer than its joined text.
        let mut joined = String::with_capacity(cfg.allowed_headers_joined.len());
        for (i, name) in requested.into_iter().enumerate() {
            if i > 0 {
                joined.push_str(", ");
            }
            joined.push_str(name);
        }
        Cow::Owned(joined)
    };
    Preflight::Allowed {
        origin,
        allow_headers,
        max_age: &cfg.max_age,
        credentials: cfg.allow_credentials,
    }
}

/// Evaluates one request head (its query is unused by contract 1.0).
pub fn evaluate<'a>(
    cfg: &'a Config,
    method: &'a str,
    raw_path: &'a str,
    mut headers: Headers<'a>,
) -> Outcome<'a> {
    let method = normalize_method(method);
    let path = route(raw_path, &cfg.prefix);
    let on_mcp = path.route == Route::Mcp;

    let origin = headers.take(Name::Origin);
    let origin_state = match &origin {
        None => Verdict::Absent,
        Some(o) if cfg.origin_allowed(o) => Verdict::Allowed,
        Some(_) => Verdict::Denied,
    };

    if method == "OPTIONS" && on_mcp {
        if let Some(request_method) = headers.get(Name::RequestMethod) {
            if let Some(origin) = origin {
                let allowed = origin_state == Verdict::Allowed;
                return Outcome::Preflight(preflight(
                    cfg,
                    origin,
                    allowed,
                    request_method,
                    &headers,
                ));
            }
        }
    }

    // Section 4.
    let session_id = headers.take(Name::SessionId);
    let (session_state, session_id) = match session_id {
        None => (Presence::Absent, None),
        Some(id) if (1..=256).contains(&id.len()) && is_visible_ascii(&id) => {
            (Presence::Valid, Some(id))
        }
        Some(_) => (Presence::Invalid, None),
    };

    // Section 5.
    let protocol_version = headers.take(Name::ProtocolVersion);
    let (protocol_state, revision) = match protocol_version.as_deref() {
        None => (VersionState::Absent, Some(cfg.default_version.as_str())),
        Some(v) => match cfg.supported(v) {
            Some(rev) => (VersionState::Supported, Some(rev)),
            None => (VersionState::Unsupported, None),
        },
    };

    // Section 6.
    let (accept_json, accept_sse) = accepts(headers.get(Name::Accept));

    // Section 7.
    let content_type = match headers.get(Name::ContentType) {
        None => ContentKind::Absent,
        Some(v) => {
            let essence = trim(v.split_once(';').map_or(v, |(essence, _)| essence));
            if eq_lower_word(essence, "application/json") {
                ContentKind::Json
            } else {
                ContentKind::Other
            }
        }
    };

    // Section 9.
    let host_state = match headers.get(Name::Host) {
        None => Verdict::Absent,
        Some(h) if cfg.host_allowed(h) => Verdict::Allowed,
        Some(_) => Verdict::Denied,
    };

    // Section 11.
    let cors = match (on_mcp, origin_state) {
        (false, _) => Cors::None,
        (true, Verdict::Allowed) => Cors::Allow {
            credentials: cfg.allow_credentials,
        },
        (true, _) => Cors::Vary,
    };

    Outcome::Forward(Context {
        method,
        path,
        session_state,
        session_id,
        protocol_version,
        protocol_state,
        revision,
        accept_json,
        accept_sse,
        content_type,
        origin,
        origin_state,
        host_state,
        last_event_id: headers.take(Name::LastEventId),
        mcp_method: headers.take(Name::McpMethod),
        mcp_name: headers.take(Name::McpName),
        cors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{base, strings};
    use crate::config::ConfigInput;

    fn cfg_with(f: impl FnOnce(&mut ConfigInput)) -> Config {
        let mut input = base();
        f(&mut input);
        Config::new(input).unwrap()
    }

    fn eval<'a>(
        cfg: &'a Config,
        method: &'a str,
        path: &'a str,
        headers: &'a [(&'a str, &'a str)],
    ) -> Outcome<'a> {
        evaluate(cfg, method, path, Headers::collect(headers.iter().copied()))
    }

    fn forward<'a>(outcome: Outcome<'a>) -> Context<'a> {
        match outcome {
            Outcome::Forward(ctx) => ctx,
            other => panic!("expected forward, got {other:?}"),
        }
    }

    fn pre<'a>(outcome: Outcome<'a>) -> (u16, Vec<(String, String)>) {
        match outcome {
            Outcome::Preflight(p) => (
                p.status(),
                p.headers()
                    .as_slice()
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect(),
            ),
            other => panic!("expected preflight, got {other:?}"),
        }
    }

    fn owned(list: HeaderList<'_>) -> Vec<(String, String)> {
        list.as_slice()
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn methods() {
        assert_eq!(normalize_method("get"), "GET");
        assert_eq!(normalize_method("oPtIoNs"), "OPTIONS");
        assert_eq!(normalize_method("patch"), "patch");
        assert_eq!(normalize_method("Connect"), "Connect");
        assert_eq!(normalize_method("ɡet"), "ɡet");
        assert_eq!(normalize_method(""), "");
    }

    #[test]
    fn plain_post() {
        let cfg = Config::new(base()).unwrap();
        let ctx = forward(eval(
            &cfg,
            "post",
            "/mcp",
            &[
                ("Host", "localhost:8000"),
                ("Accept", "application/json, text/event-stream"),
                ("Content-Type", "application/json; charset=utf-8"),
            ],
        ));
        assert_eq!(ctx.method, "POST");
        assert_eq!(ctx.path.path, "/mcp");
        assert_eq!(ctx.route(), Route::Mcp);
        assert_eq!(ctx.server_id(), None);
        assert_eq!(ctx.session_state, Presence::Absent);
        assert_eq!(ctx.protocol_state, VersionState::Absent);
        assert_eq!(ctx.revision, Some("2025-03-26"));
        assert!(ctx.accept_json && ctx.accept_sse);
        assert_eq!(ctx.content_type, ContentKind::Json);
        assert_eq!(ctx.origin_state, Verdict::Absent);
        assert_eq!(ctx.host_state, Verdict::Allowed);
        assert_eq!(owned(ctx.cors_headers()), pairs(&[("vary", "Origin")]));
    }

    #[test]
    fn session_ids() {
        let cfg = Config::new(base()).unwrap();
        let state = |headers: &[(&str, &str)]| {
            let ctx = forward(eval(&cfg, "GET", "/mcp", headers));
            (ctx.session_state, ctx.session_id.map(|s| s.into_owned()))
        };
        assert_eq!(state(&[]), (Presence::Absent, None));
        assert_eq!(
            state(&[("mcp-session-id", " abc~! ")]),
            (Presence::Valid, Some("abc~!".into()))
        );
        assert_eq!(state(&[("mcp-session-id", "")]), (Presence::Invalid, None));
        assert_eq!(
            state(&[("mcp-session-id", "a b")]),
            (Presence::Invalid, None)
        );
        assert_eq!(
            state(&[("mcp-session-id", "a\u{7f}")]),
            (Presence::Invalid, None)
        );
        assert_eq!(state(&[("mcp-session-id", "é")]), (Presence::Invalid, None));
        assert_eq!(
            state(&[("mcp-session-id", "a"), ("Mcp-Session-Id", "b")]),
            (Presence::Invalid, None)
        );
        let max = "x".repeat(256);
        assert_eq!(state(&[("mcp-session-id", &max)]).0, Presence::Valid);
        let long = "x".repeat(257);
        assert_eq!(state(&[("mcp-session-id", &long)]).0, Presence::Invalid);
    }

    #[test]
    fn protocol_versions() {
        let cfg = Config::new(base()).unwrap();
        let state = |headers: &[(&str, &str)]| {
            let ctx = forward(eval(&cfg, "GET", "/mcp", headers));
            (
                ctx.protocol_version.map(|s| s.into_owned()),
                ctx.protocol_state,
                ctx.revision.map(str::to_string),
            )
        };
        assert_eq!(
            state(&[]),
            (None, VersionState::Absent, Some("2025-03-26".into()))
        );
        assert_eq!(
            state(&[("MCP-Protocol-Version", " 2025-06-18 ")]),
            (
                Some("2025-06-18".into()),
                VersionState::Supported,
                Some("2025-06-18".into())
            )
        );
        assert_eq!(
            state(&[("mcp-protocol-version", "2099-01-01")]).1,
            VersionState::Unsupported
        );
        assert_eq!(state(&[("mcp-protocol-version", "2099-01-01")]).2, None);
        assert_eq!(
            state(&[
                ("mcp-protocol-version", "2025-06-18"),
                ("mcp-protocol-version", "2025-06-18")
            ]),
            (
                Some("2025-06-18, 2025-06-18".into()),
                VersionState::Unsupported,
                None
            )
        );
    }

    #[test]
    fn content_types() {
        let cfg = Config::new(base()).unwrap();
        let kind = |v: Option<&str>| {
            let headers: Vec<(&str, &str)> = v.map(|v| ("content-type", v)).into_iter().collect();
            forward(eval(&cfg, "POST", "/mcp", &headers)).content_type
        };
        assert_eq!(kind(None), ContentKind::Absent);
        assert_eq!(kind(Some("Application/JSON")), ContentKind::Json);
        assert_eq!(kind(Some(" application/json ;x")), ContentKind::Json);
        assert_eq!(kind(Some("application/json-seq")), ContentKind::Other);
        assert_eq!(kind(Some("")), ContentKind::Other);
        assert_eq!(
            kind(Some("text/plain; application/json")),
            ContentKind::Other
        );
    }

    #[test]
    fn pass_through_and_hosts() {
        let cfg = Config::new(base()).unwrap();
        let ctx = forward(eval(
            &cfg,
            "GET",
            "/sse",
            &[
                ("Last-Event-ID", " 42 "),
                ("Mcp-Method", "tools/call"),
                ("mcp-name", "a"),
                ("MCP-NAME", "b"),
                ("host", "evil.com"),
            ],
        ));
        assert_eq!(ctx.last_event_id.as_deref(), Some("42"));
        assert_eq!(ctx.mcp_method.as_deref(), Some("tools/call"));
        assert_eq!(ctx.mcp_name.as_deref(), Some("a, b"));
        assert_eq!(ctx.host_state, Verdict::Denied);
        assert_eq!(owned(ctx.cors_headers()), Vec::new());
    }

    #[test]
    fn cors_on_actual_responses() {
        let cfg = cfg_with(|c| c.allow_credentials = true);
        let ctx = forward(eval(
            &cfg,
            "POST",
            "/servers/a/mcp",
            &[("origin", "HTTP://LOCALHOST:3000")],
        ));
        assert_eq!(ctx.origin_state, Verdict::Allowed);
        assert_eq!(
            owned(ctx.cors_headers()),
            pairs(&[
                ("access-control-allow-origin", "HTTP://LOCALHOST:3000"),
                (
                    "access-control-expose-headers",
                    "Mcp-Session-Id, Mcp-Protocol-Version, WWW-Authenticate"
                ),
                ("access-control-allow-credentials", "true"),
                ("vary", "Origin"),
            ])
        );
        let ctx = forward(eval(
            &cfg,
            "POST",
            "/mcp",
            &[("origin", "https://evil.com")],
        ));
        assert_eq!(ctx.origin_state, Verdict::Denied);
        assert_eq!(ctx.origin.as_deref(), Some("https://evil.com"));
        assert_eq!(owned(ctx.cors_headers()), pairs(&[("vary", "Origin")]));
        // Not an MCP path: no CORS headers even when allowed.
        let ctx = forward(eval(&cfg, "GET", "/sse", &[("origin", "http://localhost")]));
        assert_eq!(owned(ctx.cors_headers()), Vec::new());
    }

    #[test]
    fn preflights() {
        let cfg = Config::new(base()).unwrap();
        let o = ("origin", "http://localhost:3000");
        let vary = ("vary", VARY_PREFLIGHT);
        let grant = |headers: &str| {
            pairs(&[
                ("access-control-allow-origin", "http://localhost:3000"),
                ("access-control-allow-methods", "GET, POST, DELETE, OPTIONS"),
                ("access-control-allow-headers", headers),
                ("access-control-max-age", "600"),
                vary,
            ])
        };
        assert_eq!(
            pre(eval(
                &cfg,
                "options",
                "/mcp",
                &[o, ("access-control-request-method", "POST")]
            )),
            (204, grant(&cfg.allowed_headers_joined))
        );
        assert_eq!(
            pre(eval(
                &cfg,
                "OPTIONS",
                "//mcp/",
                &[
                    o,
                    ("access-control-request-method", " DELETE "),
                    (
                        "access-control-request-headers",
                        "Content-Type,, MCP-Session-Id ,content-type"
                    )
                ]
            )),
            (204, grant("content-type, mcp-session-id"))
        );
        let denied = (403, pairs(&[vary]));
        assert_eq!(
            pre(eval(
                &cfg,
                "OPTIONS",
                "/mcp",
                &[o, ("access-control-request-method", "post")]
            )),
            denied
        );
        assert_eq!(
            pre(eval(
                &cfg,
                "OPTIONS",
                "/mcp",
                &[o, ("access-control-request-method", "PUT")]
            )),
            denied
        );
        assert_eq!(
            pre(eval(
                &cfg,
                "OPTIONS",
                "/mcp",
                &[o, ("access-control-request-method", "")]
            )),
            denied
        );
        assert_eq!(
            pre(eval(
                &cfg,
                "OPTIONS",
                "/mcp",
                &[
                    o,
                    ("access-control-request-method", "POST"),
                    ("access-control-request-headers", "x-custom")
                ]
            )),
            denied
        );
        assert_eq!(
            pre(eval(
                &cfg,
                "OPTIONS",
                "/mcp",
                &[
                    ("origin", "http://evil"),
                    ("access-control-request-method", "POST")
                ]
            )),
            denied
        );
        // Not preflights: forwarded.
        forward(eval(&cfg, "OPTIONS", "/mcp", &[o]));
        forward(eval(
            &cfg,
            "OPTIONS",
            "/mcp",
            &[("access-control-request-method", "POST")],
        ));
        forward(eval(
            &cfg,
            "OPTIONS",
            "/sse",
            &[o, ("access-control-request-method", "POST")],
        ));
        forward(eval(
            &cfg,
            "POST",
            "/mcp",
            &[o, ("access-control-request-method", "POST")],
        ));
    }

    #[test]
    fn preflight_credentials_and_max_age() {
        let cfg = cfg_with(|c| {
            c.allow_credentials = true;
            c.max_age = 0;
            c.allowed_headers = strings(&["X-A"]);
        });
        let (status, headers) = pre(eval(
            &cfg,
            "OPTIONS",
            "/servers/x/mcp",
            &[
                ("origin", "http://localhost"),
                ("access-control-request-method", "GET"),
            ],
        ));
        assert_eq!(status, 204);
        assert_eq!(
            headers,
            pairs(&[
                ("access-control-allow-origin", "http://localhost"),
                ("access-control-allow-methods", "GET, POST, DELETE, OPTIONS"),
                ("access-control-allow-headers", "x-a"),
                ("access-control-max-age", "0"),
                ("access-control-allow-credentials", "true"),
                ("vary", VARY_PREFLIGHT),
            ])
        );
    }
}
