//! Configuration: validation (contract section 13) and the matching of
//! origins (section 8) and hosts (section 9) against it. Everything that does
//! not depend on the request is computed here, once.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::text::{eq_lower, is_token, is_unreserved, is_visible_ascii, join, slice, u32_text};

/// The errors of the contract's `edge-error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EdgeError {
    NotConfigured,
    InvalidConfig(String),
    MalformedInput(String),
}

impl EdgeError {
    pub fn kind(&self) -> &'static str {
        match self {
            EdgeError::NotConfigured => "not-configured",
            EdgeError::InvalidConfig(_) => "invalid-config",
            EdgeError::MalformedInput(_) => "malformed-input",
        }
    }

    pub fn message(&self) -> &str {
        match self {
            EdgeError::NotConfigured => "configure has not succeeded yet",
            EdgeError::InvalidConfig(m) | EdgeError::MalformedInput(m) => m,
        }
    }
}

/// The configuration as given (the WIT `config` record).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigInput {
    pub allowed_origins: Vec<String>,
    pub allowed_hosts: Vec<String>,
    pub allow_credentials: bool,
    pub allowed_headers: Vec<String>,
    pub max_age: u32,
    pub supported_versions: Vec<String>,
    pub default_version: String,
    pub path_prefix: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum OriginEntry {
    /// Equal to the (lower-cased) entry.
    Exact(String),
    /// `base:*`: the base alone or followed by `:` and 1..5 digits.
    AnyPort(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct HostEntry {
    name: String,
    /// Empty: any port.
    port: String,
}

/// A validated configuration, ready for `evaluate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    any_origin: bool,
    origins: Vec<OriginEntry>,
    any_host: bool,
    hosts: Vec<HostEntry>,
    pub(crate) allow_credentials: bool,
    /// ASCII-lowercased, in the given order.
    pub(crate) allowed_headers: Vec<String>,
    /// `allowed_headers` joined with `", "`.
    pub(crate) allowed_headers_joined: String,
    /// `max-age` as decimal text.
    pub(crate) max_age: String,
    pub(crate) supported_versions: Vec<String>,
    pub(crate) default_version: String,
    /// Segments of `path-prefix`.
    pub(crate) prefix: Vec<String>,
}

fn invalid(message: &str) -> EdgeError {
    EdgeError::InvalidConfig(message.to_string())
}

/// The host-port form of section 9 on an already lower-cased (or not: the
/// structure does not depend on case) value: `(name, port digits or "")`.
pub fn parse_host_port(s: &str) -> Option<(&str, &str)> {
    // Cut before the `:` or after the `]`: next to an ASCII byte.
    let (name, rest) = if s.starts_with('[') {
        let end = s.find(']')? + 1;
        (slice(s, ..end), slice(s, end..))
    } else {
        match s.find(':') {
            Some(i) => (slice(s, ..i), slice(s, i..)),
            None => (s, ""),
        }
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

/// One to five ASCII digits.
fn is_port(s: &str) -> bool {
    (1..=5).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

/// An origin entry other than `*`, already ASCII-lowercased: `null`, or
/// `scheme://authority` with an optional trailing `:*`.
fn origin_entry(lower: String) -> Option<OriginEntry> {
    if lower == "null" {
        return Some(OriginEntry::Exact(lower));
    }
    // `base` is the entry without a trailing `:*`. The scheme has no `:`,
    // so it ends at the first one (a `str` pattern search would link the
    // two-way searcher for this alone).
    let (base, any_port) = match lower.strip_suffix(":*") {
        Some(base) => (base, true),
        None => (lower.as_str(), false),
    };
    let (scheme, rest) = base.split_once(':')?;
    let core = rest.strip_prefix("//")?;
    let mut scheme_bytes = scheme.bytes();
    if !scheme_bytes.next()?.is_ascii_alphabetic()
        || !scheme_bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
    {
        return None;
    }
    if core.is_empty()
        || !core
            .bytes()
            .all(|b| is_unreserved(b) || matches!(b, b':' | b'[' | b']'))
    {
        return None;
    }
    Some(if any_port {
        OriginEntry::AnyPort(base.to_string())
    } else {
        OriginEntry::Exact(lower)
    })
}

/// `path-prefix`: `""` or `/seg(/seg)*`, each segment unreserved characters
/// and neither `.` nor `..`.
fn prefix_segments(prefix: &str) -> Option<Vec<String>> {
    if prefix.is_empty() {
        return Some(Vec::new());
    }
    prefix
        .strip_prefix('/')?
        .split('/')
        .map(|seg| {
            let ok = !seg.is_empty() && seg != "." && seg != ".." && seg.bytes().all(is_unreserved);
            ok.then(|| seg.to_string())
        })
        .collect()
}

impl Config {
    /// Checks every field (section 13), in the order of the WIT record.
    pub fn new(input: ConfigInput) -> Result<Config, EdgeError> {
        let mut any_origin = false;
        let mut origins = Vec::with_capacity(input.allowed_origins.len());
        for entry in &input.allowed_origins {
            // Every form is checked on the ASCII-lowercased entry.
            let lower = entry.to_ascii_lowercase();
            if lower == "*" {
                any_origin = true;
            } else {
                origins.push(origin_entry(lower).ok_or_else(|| {
                    invalid("allowed-origins: each entry must be `*`, `null` or scheme://authority")
                })?);
            }
        }
        if input.allow_credentials && any_origin {
            return Err(invalid(
                "allow-credentials: refused together with a `*` in allowed-origins",
            ));
        }

        let mut any_host = false;
        let mut hosts = Vec::with_capacity(input.allowed_hosts.len());
        for entry in &input.allowed_hosts {
            if entry == "*" {
                any_host = true;
                continue;
            }
            // Host names are case-insensitive: entries are lower-cased once.
            let lower = entry.to_ascii_lowercase();
            let (name, port) = parse_host_port(&lower).ok_or_else(|| {
                invalid("allowed-hosts: each entry must be `*`, a host name or name:port")
            })?;
            hosts.push(HostEntry {
                name: name.to_string(),
                port: port.to_string(),
            });
        }

        if !input.allowed_headers.iter().all(|h| is_token(h)) {
            return Err(invalid("allowed-headers: each entry must be a token"));
        }
        let allowed_headers: Vec<String> = input
            .allowed_headers
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect();
        let allowed_headers_joined = join(&allowed_headers, ", ");

        if input.supported_versions.is_empty() {
            return Err(invalid("supported-versions: at least one is required"));
        }
        if !input
            .supported_versions
            .iter()
            .all(|v| (1..=64).contains(&v.len()) && is_visible_ascii(v))
        {
            return Err(invalid(
                "supported-versions: each must be 1..64 visible ASCII characters",
            ));
        }
        if !input.supported_versions.contains(&input.default_version) {
            return Err(invalid(
                "default-version: must be one of supported-versions",
            ));
        }

        let prefix = prefix_segments(&input.path_prefix).ok_or_else(|| {
            invalid("path-prefix: must be empty or /segment[/segment...] of unreserved characters")
        })?;

        Ok(Config {
            any_origin,
            origins,
            any_host,
            hosts,
            allow_credentials: input.allow_credentials,
            allowed_headers,
            allowed_headers_joined,
            max_age: u32_text(input.max_age),
            supported_versions: input.supported_versions,
            default_version: input.default_version,
            prefix,
        })
    }

    /// Section 8: does some entry match the origin (ASCII-lowercased for the
    /// comparison only)? A comma (duplicated headers) is never a match.
    pub fn origin_allowed(&self, origin: &str) -> bool {
        // Test-only variant: a security regression the shipped vectors must
        // catch, so that hot-swap verification refuses it.
        #[cfg(feature = "wrong-answers")]
        if !origin.is_empty() {
            return true;
        }
        if origin.contains(',') {
            return false;
        }
        self.any_origin
            || self.origins.iter().any(|entry| match entry {
                OriginEntry::Exact(e) => eq_lower(origin, e),
                OriginEntry::AnyPort(base) => {
                    let Some((head, rest)) = origin.split_at_checked(base.len()) else {
                        return false;
                    };
                    eq_lower(head, base)
                        && (rest.is_empty() || rest.strip_prefix(':').is_some_and(is_port))
                }
            })
    }

    /// Section 9: is a present Host value allowed?
    pub fn host_allowed(&self, host: &str) -> bool {
        if self.any_host {
            return true;
        }
        // The structure of host-port does not depend on case: parse as sent
        // and lower-case the name while comparing.
        let Some((name, port)) = parse_host_port(host) else {
            return false;
        };
        self.hosts
            .iter()
            .any(|e| eq_lower(name, &e.name) && (e.port.is_empty() || e.port == port))
    }

    /// Section 5: the supported revision equal to `version`, if any.
    pub fn supported(&self, version: &str) -> Option<&str> {
        self.supported_versions
            .iter()
            .find(|v| *v == version)
            .map(String::as_str)
    }

    /// The (first) allowed header equal to the ASCII-lowercased `name`.
    pub fn allowed_header(&self, name: &str) -> Option<&str> {
        self.allowed_headers
            .iter()
            .find(|h| eq_lower(name, h))
            .map(String::as_str)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    /// The documented defaults with a loopback bind: the base every vector starts from.
    pub fn base() -> ConfigInput {
        crate::encoded::config_from_json(include_str!("../../tests/vectors/base-config.json"))
            .expect("tests/vectors/base-config.json is a valid config")
    }

    fn with(f: impl FnOnce(&mut ConfigInput)) -> Result<Config, EdgeError> {
        let mut input = base();
        f(&mut input);
        Config::new(input)
    }

    fn rejected(f: impl FnOnce(&mut ConfigInput)) -> bool {
        matches!(with(f), Err(EdgeError::InvalidConfig(_)))
    }

    #[test]
    fn base_is_valid() {
        let cfg = Config::new(base()).unwrap();
        assert_eq!(cfg.max_age, "600");
        assert_eq!(
            cfg.allowed_headers_joined,
            "content-type, accept, authorization, mcp-session-id, mcp-protocol-version, last-event-id, mcp-method, mcp-name"
        );
    }

    #[test]
    fn origin_entries() {
        for ok in [
            "*",
            "null",
            "NULL",
            "Null",
            "HTTP://LocalHost:*",
            "https://a.b:8443",
            "a+b-c.d://x",
            "http://[::1]",
            "x://a:*",
            "http://a::*",
        ] {
            assert!(with(|c| c.allowed_origins = strings(&[ok])).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "nul",
            "null:*",
            "http://",
            "http://:*",
            "http://a:*:*",
            "http://a/",
            "1http://a",
            "://a",
            "http:/a",
            "http://a b",
            "http://é",
            "http://*",
            "*://a",
            " http://a",
            "http://a:*x",
        ] {
            assert!(rejected(|c| c.allowed_origins = strings(&[bad])), "{bad}");
        }
    }

    #[test]
    fn credentials_with_any_origin() {
        assert!(rejected(|c| {
            c.allowed_origins = strings(&["http://a", "*"]);
            c.allow_credentials = true;
        }));
        assert!(with(|c| c.allow_credentials = true).is_ok());
        assert!(with(|c| c.allowed_origins = strings(&["*"])).is_ok());
    }

    #[test]
    fn host_entries() {
        for ok in [
            "*",
            "localhost",
            "a:1",
            "[::1]:65535",
            "[]",
            "a b",
            "A:0",
            "[::1]",
            "x]y",
        ] {
            assert!(with(|c| c.allowed_hosts = strings(&[ok])).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "[",
            ":80",
            "a:",
            "a:123456",
            "a:8a",
            "[::1",
            "[::1]x",
            "[::1]:",
            "a:1:2",
            "a:\u{661}",
        ] {
            assert!(rejected(|c| c.allowed_hosts = strings(&[bad])), "{bad}");
        }
    }

    #[test]
    fn other_fields() {
        assert!(rejected(|c| c.allowed_headers = strings(&["x y"])));
        assert!(rejected(|c| c.allowed_headers = strings(&[""])));
        assert!(with(|c| c.allowed_headers = Vec::new()).is_ok());
        let cfg = with(|c| c.allowed_headers = strings(&["X-A", "x-a"])).unwrap();
        assert_eq!(cfg.allowed_headers_joined, "x-a, x-a");
        assert!(rejected(|c| c.supported_versions = Vec::new()));
        assert!(rejected(|c| c.supported_versions.push(String::new())));
        assert!(rejected(|c| c.supported_versions.push("a b".into())));
        assert!(rejected(|c| c.supported_versions.push("x".repeat(65))));
        assert!(with(|c| c.supported_versions.push("x".repeat(64))).is_ok());
        assert!(rejected(|c| c.default_version = "2024-01-01".into()));
        for ok in ["", "/a", "/a/b-c.d_e~", "/a.b/..c"] {
            assert!(with(|c| c.path_prefix = ok.into()).is_ok(), "{ok}");
        }
        for bad in ["/", "a", "/a/", "//a", "/.", "/a/..", "/a%20", "/é"] {
            assert!(rejected(|c| c.path_prefix = bad.into()), "{bad}");
        }
    }

    #[test]
    fn origins_match() {
        let cfg = with(|c| {
            c.allowed_origins = strings(&["http://localhost:*", "https://App.example.com", "null"])
        })
        .unwrap();
        for ok in [
            "http://localhost",
            "http://localhost:1",
            "HTTP://LOCALHOST:12345",
            "https://app.example.com",
            "null",
            "NULL",
        ] {
            assert!(cfg.origin_allowed(ok), "{ok}");
        }
        for bad in [
            "http://localhost:",
            "http://localhost:123456",
            "http://localhost:8x",
            "http://localhost.evil",
            "https://app.example.com:443",
            "http://localhost, http://localhost",
            "",
            "http://localhost:\u{661}",
        ] {
            assert!(!cfg.origin_allowed(bad), "{bad}");
        }
        // Byte-wise prefix of a multi-byte character must not panic.
        let cfg = with(|c| c.allowed_origins = strings(&["http://a:*"])).unwrap();
        assert!(!cfg.origin_allowed("http://ééé"));
        let any = with(|c| c.allowed_origins = strings(&["*"])).unwrap();
        assert!(
            any.origin_allowed("null")
                && any.origin_allowed("anything at all")
                && any.origin_allowed("")
        );
        // A comma means duplicated Origin headers: never allowed, even by `*`.
        assert!(!any.origin_allowed("http://a, http://b"));
        assert!(!any.origin_allowed(","));
    }

    #[test]
    fn hosts_match() {
        let cfg = with(|c| {
            c.allowed_hosts = strings(&[
                "localhost",
                "example.com:8080",
                "[::1]",
                "LocalHost.Example",
            ])
        })
        .unwrap();
        for ok in [
            "localhost",
            "LOCALHOST:1",
            "example.com:8080",
            "[::1]:3000",
            "[::1]",
            "localhost.example:4444",
            "LOCALHOST.example",
        ] {
            assert!(cfg.host_allowed(ok), "{ok}");
        }
        for bad in [
            "example.com",
            "example.com:80",
            "example.com:08080",
            "localhost:",
            "",
            ":80",
            "evil",
            "[::1]x",
            "localhost, localhost",
        ] {
            assert!(!cfg.host_allowed(bad), "{bad}");
        }
        let any = with(|c| c.allowed_hosts = strings(&["localhost", "*"])).unwrap();
        assert!(any.host_allowed("not a host ::: ["));
    }
}
