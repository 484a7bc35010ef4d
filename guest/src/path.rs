//! Path canonicalization and routing (contract section 3).

use alloc::borrow::Cow;
use alloc::string::String;
use alloc::vec::Vec;

use crate::broken_invariant;
use crate::text::{is_unreserved, slice};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Mcp,
    Sse,
    Message,
    Ws,
    Health,
    Other,
}

impl Route {
    pub fn name(self) -> &'static str {
        match self {
            Route::Mcp => "mcp",
            Route::Sse => "sse",
            Route::Message => "message",
            Route::Ws => "ws",
            Route::Health => "health",
            Route::Other => "other",
        }
    }
}

/// The canonical path, its route and the server id (a byte range of `path`,
/// so the id can borrow from a path that may itself be owned).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathInfo<'a> {
    pub path: Cow<'a, str>,
    pub route: Route,
    server_id: Option<(usize, usize)>,
}

impl PathInfo<'_> {
    pub fn server_id(&self) -> Option<&str> {
        let (start, end) = self.server_id?;
        Some(slice(&self.path, start..end))
    }
}

/// Canonicalizes `raw` and routes it under `prefix` (the prefix's segments).
pub fn route<'a>(raw: &'a str, prefix: &[String]) -> PathInfo<'a> {
    // Step 1: `*` and absolute-form are kept as sent.
    if !raw.is_empty() && !raw.starts_with('/') {
        return PathInfo {
            path: Cow::Borrowed(raw),
            route: Route::Other,
            server_id: None,
        };
    }
    let path = canonical(raw);
    let (route, server_id) = route_of(&path, prefix);
    PathInfo {
        path,
        route,
        server_id,
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Step 2: one pass over percent-escapes. Borrows when nothing changes.
fn decode_escapes(raw: &str) -> Cow<'_, str> {
    let bytes = raw.as_bytes();
    let mut out: Option<String> = None;
    // Start of the text not yet copied to `out`.
    let mut copied = 0;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b != b'%' {
            i += 1;
            continue;
        }
        let (Some(&h), Some(&l)) = (bytes.get(i + 1), bytes.get(i + 2)) else {
            break; // fewer than two characters left: nothing more to decode
        };
        let (Some(hv), Some(lv)) = (hex_value(h), hex_value(l)) else {
            i += 1; // a lone `%` is kept as it is
            continue;
        };
        let byte = hv * 16 + lv;
        let unchanged = !is_unreserved(byte) && !h.is_ascii_lowercase() && !l.is_ascii_lowercase();
        if !unchanged {
            let s = out.get_or_insert_with(|| String::with_capacity(raw.len()));
            // `copied` and `i` are at the end and start of escapes (ASCII).
            s.push_str(slice(raw, copied..i));
            if is_unreserved(byte) {
                s.push(byte as char);
            } else {
                s.push('%');
                s.push(h.to_ascii_uppercase() as char);
                s.push(l.to_ascii_uppercase() as char);
            }
            copied = i + 3;
        }
        i += 3;
    }
    match out {
        None => Cow::Borrowed(raw),
        Some(mut s) => {
            s.push_str(slice(raw, copied..));
            Cow::Owned(s)
        }
    }
}

/// True when no segment is empty, `.` or `..` (`rest`: the path after its
/// leading `/`).
fn is_canonical(rest: &str) -> bool {
    rest.is_empty()
        || rest
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
}

/// Steps 2-5 for a path that is empty or starts with `/`.
fn canonical(raw: &str) -> Cow<'_, str> {
    if raw.is_empty() {
        return Cow::Borrowed("/");
    }
    let decoded = decode_escapes(raw);
    // Decoding keeps the leading `/` (only escapes change).
    let Some(rest) = decoded.strip_prefix('/') else {
        broken_invariant("canonical: a decoded path without its leading /")
    };
    if is_canonical(rest) {
        return decoded;
    }
    let mut segments: Vec<&str> = Vec::new();
    for seg in rest.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            _ => segments.push(seg),
        }
    }
    let mut out = String::with_capacity(decoded.len());
    if segments.is_empty() {
        out.push('/');
    }
    for seg in segments {
        out.push('/');
        out.push_str(seg);
    }
    Cow::Owned(out)
}

/// The segments of a canonical path with their byte offsets.
struct Segments<'p> {
    path: &'p str,
    pos: usize,
}

impl<'p> Iterator for Segments<'p> {
    type Item = (usize, &'p str);

    fn next(&mut self) -> Option<Self::Item> {
        // `pos` always sits on a `/` (or at the end).
        let start = self.pos.checked_add(1)?;
        let rest = self.path.get(start..)?;
        if rest.is_empty() {
            self.pos = self.path.len();
            return None;
        }
        let seg = rest.split_once('/').map_or(rest, |(seg, _)| seg);
        self.pos = start + seg.len();
        Some((start, seg))
    }
}

/// A server id: 1..64 ASCII letters, digits, `-`, `.`, `_`, `~`.
fn is_server_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(is_unreserved)
}

fn route_of(path: &str, prefix: &[String]) -> (Route, Option<(usize, usize)>) {
    const OTHER: (Route, Option<(usize, usize)>) = (Route::Other, None);
    let mut segs = Segments { path, pos: 0 };
    for want in prefix {
        match segs.next() {
            Some((_, seg)) if seg == want => {}
            _ => return OTHER,
        }
    }
    let first = segs.next();
    let second = segs.next();
    let third = segs.next();
    let fourth = segs.next();
    match (first, second, third, fourth) {
        (Some((_, name)), None, _, _) => {
            let route = match name {
                "mcp" => Route::Mcp,
                "sse" => Route::Sse,
                "message" => Route::Message,
                "ws" => Route::Ws,
                "health" => Route::Health,
                _ => Route::Other,
            };
            (route, None)
        }
        (Some((_, "servers")), Some((start, id)), Some((_, name)), None) if is_server_id(id) => {
            let route = match name {
                "mcp" => Route::Mcp,
                "sse" => Route::Sse,
                "message" => Route::Message,
                "ws" => Route::Ws,
                _ => return OTHER,
            };
            (route, Some((start, start + id.len())))
        }
        _ => OTHER,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(raw: &str) -> String {
        route(raw, &[]).path.into_owned()
    }

    fn routed(raw: &str, prefix: &[&str]) -> (Route, Option<String>) {
        let prefix: Vec<String> = prefix.iter().map(|s| s.to_string()).collect();
        let info = route(raw, &prefix);
        (info.route, info.server_id().map(str::to_string))
    }

    #[test]
    fn canonical_paths() {
        assert_eq!(canon(""), "/");
        assert_eq!(canon("/"), "/");
        assert_eq!(canon("//"), "/");
        assert_eq!(canon("/mcp/"), "/mcp");
        assert_eq!(canon("//mcp"), "/mcp");
        assert_eq!(canon("/a//b/"), "/a/b");
        assert_eq!(canon("/a/./b/../c"), "/a/c");
        assert_eq!(canon("/../../a"), "/a");
        assert_eq!(canon("/a/.."), "/");
        assert_eq!(canon("*"), "*");
        assert_eq!(canon("http://x/%7e"), "http://x/%7e");
    }

    #[test]
    fn escapes() {
        assert_eq!(canon("/%6d%63%70"), "/mcp");
        assert_eq!(canon("/%2f"), "/%2F");
        assert_eq!(canon("/%2F"), "/%2F");
        assert_eq!(canon("/%252F"), "/%252F");
        assert_eq!(canon("/%7E%7e"), "/~~");
        assert_eq!(canon("/%"), "/%");
        assert_eq!(canon("/%4"), "/%4");
        assert_eq!(canon("/%zz%4g"), "/%zz%4g");
        assert_eq!(canon("/%%41"), "/%A");
        assert_eq!(canon("/%c3%a9"), "/%C3%A9");
        assert_eq!(canon("/é%41"), "/éA");
        assert_eq!(canon("/%é"), "/%é");
        // Decoded dots are dot segments.
        assert_eq!(canon("/a/%2e%2E/b"), "/b");
        assert_eq!(canon("/a/%2e/b"), "/a/b");
    }

    #[test]
    fn routes() {
        assert_eq!(routed("/mcp", &[]), (Route::Mcp, None));
        assert_eq!(routed("/mcp/", &[]), (Route::Mcp, None));
        assert_eq!(routed("/sse", &[]), (Route::Sse, None));
        assert_eq!(routed("/message", &[]), (Route::Message, None));
        assert_eq!(routed("/ws", &[]), (Route::Ws, None));
        assert_eq!(routed("/health", &[]), (Route::Health, None));
        assert_eq!(routed("/MCP", &[]), (Route::Other, None));
        assert_eq!(routed("/", &[]), (Route::Other, None));
        assert_eq!(routed("", &[]), (Route::Other, None));
        assert_eq!(routed("/mcp/x", &[]), (Route::Other, None));
        assert_eq!(routed("mcp", &[]), (Route::Other, None));
        assert_eq!(
            routed("/servers/a-b.c_~1/mcp", &[]),
            (Route::Mcp, Some("a-b.c_~1".into()))
        );
        assert_eq!(routed("/servers/x/ws", &[]), (Route::Ws, Some("x".into())));
        assert_eq!(routed("/servers/x/health", &[]), (Route::Other, None));
        assert_eq!(routed("/servers/x/mcp/y", &[]), (Route::Other, None));
        assert_eq!(routed("/servers/%2F/mcp", &[]), (Route::Other, None));
        assert_eq!(
            routed("/servers/%41/mcp", &[]),
            (Route::Mcp, Some("A".into()))
        );
        assert_eq!(routed("/servers/é/mcp", &[]), (Route::Other, None));
        let long = format!("/servers/{}/sse", "a".repeat(64));
        assert_eq!(routed(&long, &[]).0, Route::Sse);
        let long = format!("/servers/{}/sse", "a".repeat(65));
        assert_eq!(routed(&long, &[]).0, Route::Other);
        assert_eq!(routed("/servers/mcp", &[]), (Route::Other, None));
    }

    #[test]
    fn prefix() {
        assert_eq!(routed("/api/v1/mcp", &["api", "v1"]), (Route::Mcp, None));
        assert_eq!(routed("/api/v1//mcp/", &["api", "v1"]), (Route::Mcp, None));
        assert_eq!(routed("/mcp", &["api"]), (Route::Other, None));
        assert_eq!(routed("/api", &["api"]), (Route::Other, None));
        assert_eq!(routed("/API/mcp", &["api"]), (Route::Other, None));
        assert_eq!(routed("/%61pi/mcp", &["api"]), (Route::Mcp, None));
        assert_eq!(
            routed("/api/servers/s/message", &["api"]),
            (Route::Message, Some("s".into()))
        );
        assert_eq!(route("/api/mcp", &["api".into()]).path, "/api/mcp");
    }
}
