//! The compact twin (contract section 16): a length-prefixed head in, the
//! component's decisions out, no JSON on either side.
//!
//! Both directions are strings (UTF-8, as the canonical ABI carries them).
//! A field is one character whose code point is the field's length in code
//! points, then the field. The head is `method`, `path`, then for each
//! header the host sends one ASCII letter (`a` + its index in `Name::ALL`)
//! and its value as section 1's `get` gives it (trimmed, duplicates
//! combined: the host does that lookup, it needs the values itself), each
//! name at most once. Or, first, the packed form a host writes with a few
//! C-level operations: `*`, a count, the letters, the lengths, then the
//! values as received (untrimmed: trimmed here).
//!
//! The outcome carries only what the rules decide; the host builds the
//! context from it and from the values it already holds (method, the
//! pass-through headers, the origin to echo, the configuration):
//!
//! - forward: `F`, then one ASCII digit each for route, session state,
//!   protocol state, accept (json 1 + sse 2), content kind, origin state,
//!   host state; one character `@` + the CORS set (allow-origin 1, expose 2,
//!   credentials 4, vary 8); then `=` when the canonical path is the raw
//!   path, else `:` and the path as a field; then, on a server route, the
//!   server id as a field;
//! - preflight: `P4` (403), or `P2` and the `access-control-allow-headers`
//!   value as a field (204);
//! - error: `E0` (not configured) or `E2` (malformed head).

use alloc::string::String;

use crate::config::Config;
use crate::evaluate::{
    evaluate, ContentKind, Context, Outcome, Preflight, Presence, Verdict, VersionState,
};
use crate::headers::{Headers, Name};
use crate::path::Route;
use crate::text::trim;

/// A head read from the compact encoding, borrowing from it.
#[derive(Debug)]
pub struct Head<'t> {
    pub method: &'t str,
    pub path: &'t str,
    pub headers: Headers<'t>,
}

/// The next field of `rest`: its length (a code point), then that many
/// code points.
fn field<'t>(rest: &mut &'t str) -> Option<&'t str> {
    let mut chars = rest.chars();
    let n = chars.next()? as usize;
    *rest = chars.as_str();
    take(rest, n)
}

/// The first `n` code points of `rest`, which then starts after them.
fn take<'t>(rest: &mut &'t str, n: usize) -> Option<&'t str> {
    let after = *rest;
    // Most fields are ASCII: then `n` code points are `n` bytes.
    let end = match after.as_bytes().get(..n) {
        Some(bytes) if bytes.is_ascii() => n,
        _ => {
            let mut walk = after.char_indices().skip(n);
            match walk.next() {
                Some((end, _)) => end,
                // Exactly `n` code points left, or fewer.
                None if after.chars().count() == n => after.len(),
                None => return None,
            }
        }
    };
    let (value, tail) = after.split_at_checked(end)?;
    *rest = tail;
    Some(value)
}

/// The packed headers after `*` (section 16): a count `n` as one
/// character, `n` header letters, `n` lengths (one character each), then
/// the `n` values one after the other, as received: trimmed here (section
/// 1). Each letter at most once, in any order.
fn packed<'t>(rest: &mut &'t str, headers: &mut Headers<'t>) -> Option<()> {
    let mut chars = rest.chars();
    let n = chars.next()? as usize;
    let after = chars.as_str();
    if n > Name::ALL.len() {
        return None;
    }
    let (letters, after) = after.split_at_checked(n)?;
    let mut lengths = [0usize; Name::ALL.len()];
    let mut chars = after.chars();
    for length in lengths.iter_mut().take(n) {
        *length = chars.next()? as usize;
    }
    let mut values = chars.as_str();
    for (letter, length) in letters.bytes().zip(lengths) {
        let name = *Name::ALL.get(usize::from(letter.checked_sub(b'a')?))?;
        let value = take(&mut values, length)?;
        if !headers.set(name, trim(value)) {
            return None;
        }
    }
    *rest = values;
    Some(())
}

/// Reads a compact head; `None` when it is not exactly that shape.
pub fn head_from_compact(text: &str) -> Option<Head<'_>> {
    let mut rest = text;
    let method = field(&mut rest)?;
    let path = field(&mut rest)?;
    let mut headers = Headers::default();
    if let Some(tail) = rest.strip_prefix('*') {
        rest = tail;
        packed(&mut rest, &mut headers)?;
    }
    while let Some((code, tail)) = rest.split_at_checked(1) {
        rest = tail;
        let index = code.as_bytes().first()?.checked_sub(b'a')?;
        let name = *Name::ALL.get(usize::from(index))?;
        let value = field(&mut rest)?;
        if !headers.set(name, value) {
            return None;
        }
    }
    Some(Head {
        method,
        path,
        headers,
    })
}

/// Appends `value` as a field (its length in code points, then itself).
/// Lengths past the last code point before the surrogates cannot be
/// written as one character; the host never sends a field that long, and
/// nothing the rules return is longer than what was sent.
fn push_field(out: &mut String, value: &str) {
    let n = if value.is_ascii() {
        value.len()
    } else {
        value.chars().count()
    };
    let Some(len) = u32::try_from(n).ok().and_then(char::from_u32) else {
        crate::broken_invariant("compact: a field longer than a length character holds")
    };
    out.push(len);
    out.push_str(value);
}

fn digit(n: u8) -> char {
    char::from(b'0' + n)
}

fn route_code(r: Route) -> u8 {
    match r {
        Route::Mcp => 0,
        Route::Sse => 1,
        Route::Message => 2,
        Route::Ws => 3,
        Route::Health => 4,
        Route::Other => 5,
    }
}

fn presence_code(p: Presence) -> u8 {
    match p {
        Presence::Absent => 0,
        Presence::Valid => 1,
        Presence::Invalid => 2,
    }
}

fn version_code(v: VersionState) -> u8 {
    match v {
        VersionState::Absent => 0,
        VersionState::Supported => 1,
        VersionState::Unsupported => 2,
    }
}

fn content_code(c: ContentKind) -> u8 {
    match c {
        ContentKind::Absent => 0,
        ContentKind::Json => 1,
        ContentKind::Other => 2,
    }
}

fn verdict_code(v: Verdict) -> u8 {
    match v {
        Verdict::Absent => 0,
        Verdict::Allowed => 1,
        Verdict::Denied => 2,
    }
}

/// The CORS set of section 11 as bits.
fn cors_mask(ctx: &Context<'_>) -> u8 {
    let mut mask = 0;
    for (name, _) in ctx.cors_headers().as_slice() {
        mask |= match *name {
            "access-control-allow-origin" => 1,
            "access-control-expose-headers" => 2,
            "access-control-allow-credentials" => 4,
            "vary" => 8,
            _ => crate::broken_invariant("compact: a CORS header without a bit"),
        };
    }
    mask
}

fn push_forward(out: &mut String, ctx: &Context<'_>, raw_path: &str) {
    out.push('F');
    out.push(digit(route_code(ctx.route())));
    out.push(digit(presence_code(ctx.session_state)));
    out.push(digit(version_code(ctx.protocol_state)));
    out.push(digit(
        u8::from(ctx.accept_json) | (u8::from(ctx.accept_sse) << 1),
    ));
    out.push(digit(content_code(ctx.content_type)));
    out.push(digit(verdict_code(ctx.origin_state)));
    out.push(digit(verdict_code(ctx.host_state)));
    out.push(char::from(b'@' + cors_mask(ctx)));
    if ctx.path.path == raw_path {
        out.push('=');
    } else {
        out.push(':');
        push_field(out, &ctx.path.path);
    }
    if let Some(id) = ctx.server_id() {
        push_field(out, id);
    }
}

fn push_preflight(out: &mut String, p: &Preflight<'_>) {
    match p {
        Preflight::Denied => out.push_str("P4"),
        Preflight::Allowed { allow_headers, .. } => {
            out.push_str("P2");
            push_field(out, allow_headers);
        }
    }
}

/// `evaluate-compact`. Without a configuration the answer is `E0`
/// whatever the input; a head that is not the compact shape is `E2`.
pub fn evaluate_compact(cfg: Option<&Config>, text: &str) -> String {
    let Some(cfg) = cfg else {
        return String::from("E0");
    };
    let Some(head) = head_from_compact(text) else {
        return String::from("E2");
    };
    let mut out = String::with_capacity(16 + head.path.len());
    match evaluate(cfg, head.method, head.path, head.headers) {
        Outcome::Forward(ctx) => push_forward(&mut out, &ctx, head.path),
        Outcome::Preflight(p) => push_preflight(&mut out, &p),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configured() -> Config {
        let mut state = None;
        let base = include_str!("../../tests/vectors/base-config.json");
        assert_eq!(crate::encoded::configure_encoded(&mut state, base), "");
        state.unwrap()
    }

    fn f(value: &str) -> String {
        let mut out = String::new();
        push_field(&mut out, value);
        out
    }

    #[test]
    fn fields_count_code_points() {
        let text = [f("POST"), f("/é/x"), "e".into(), f("http://localhost:3000")].concat();
        let head = head_from_compact(&text).unwrap();
        assert_eq!((head.method, head.path), ("POST", "/é/x"));
        assert_eq!(
            head.headers.get(Name::Origin),
            Some("http://localhost:3000")
        );
    }

    #[test]
    fn malformed_heads_are_refused() {
        let ok = [f("GET"), f("/mcp")].concat();
        assert!(head_from_compact(&ok).is_some());
        for bad in [
            String::new(),
            f("GET"),
            [f("GET"), f("/mcp"), "z".into(), f("x")].concat(),
            [f("GET"), f("/mcp"), "e".into()].concat(),
            [f("GET"), f("/mcp"), "e".into(), f("a"), "e".into(), f("b")].concat(),
            [f("GET"), "\u{5}/m".into()].concat(),
        ] {
            assert!(head_from_compact(&bad).is_none(), "{bad:?}");
        }
        assert_eq!(evaluate_compact(Some(&configured()), "x"), "E2");
        assert_eq!(evaluate_compact(None, &ok), "E0");
    }

    fn packed_head(method: &str, path: &str, headers: &[(char, &str)]) -> String {
        let mut out = [f(method), f(path), "*".into()].concat();
        out.push(char::from_u32(headers.len() as u32).unwrap());
        for (letter, _) in headers {
            out.push(*letter);
        }
        for (_, value) in headers {
            out.push(char::from_u32(value.chars().count() as u32).unwrap());
        }
        for (_, value) in headers {
            out.push_str(value);
        }
        out
    }

    #[test]
    fn packed_headers_are_read_and_trimmed() {
        let text = packed_head(
            "POST",
            "/é",
            &[('f', " h:1\t"), ('e', "http://é"), ('c', "")],
        );
        let head = head_from_compact(&text).unwrap();
        assert_eq!((head.method, head.path), ("POST", "/é"));
        assert_eq!(head.headers.get(Name::Host), Some("h:1"));
        assert_eq!(head.headers.get(Name::Origin), Some("http://é"));
        assert_eq!(head.headers.get(Name::Accept), Some(""));
        assert_eq!(head.headers.get(Name::ContentType), None);
        // Letter-coded headers may follow (the session stand-in).
        let text = [
            packed_head("GET", "/mcp", &[('f', "h")]),
            "a".into(),
            f("s"),
        ]
        .concat();
        let head = head_from_compact(&text).unwrap();
        assert_eq!(head.headers.get(Name::SessionId), Some("s"));
        assert_eq!(head.headers.get(Name::Host), Some("h"));
        let empty = packed_head("GET", "/mcp", &[]);
        assert!(head_from_compact(&empty).is_some());
        for bad in [
            packed_head("GET", "/mcp", &[('f', "h"), ('f', "i")]),
            packed_head("GET", "/mcp", &[('z', "h")]),
            [
                packed_head("GET", "/mcp", &[('f', "h")]),
                "f".into(),
                f("i"),
            ]
            .concat(),
            [f("GET"), f("/mcp"), "*".into()].concat(),
            [f("GET"), f("/mcp"), "*\u{2}f".into()].concat(),
            [f("GET"), f("/mcp"), "*\u{1}f\u{5}abc".into()].concat(),
            [f("GET"), f("/mcp"), "*\u{c}".into()].concat(),
        ] {
            assert!(head_from_compact(&bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn outcomes_carry_only_decisions() {
        let cfg = configured();
        let head = [
            f("post"),
            f("//servers/a%7e/mcp/"),
            "a".into(),
            f("s"),
            "c".into(),
            f("application/json, text/event-stream"),
            "e".into(),
            f("http://localhost:3000"),
            "f".into(),
            f("localhost:4444"),
        ]
        .concat();
        let out = evaluate_compact(Some(&cfg), &head);
        assert_eq!(
            out,
            ["F0103011K:".into(), f("/servers/a~/mcp"), f("a~")].concat()
        );
        let pre = [
            f("OPTIONS"),
            f("/mcp"),
            "e".into(),
            f("http://localhost:3000"),
            "j".into(),
            f("POST"),
            "k".into(),
            f("Content-Type"),
        ]
        .concat();
        assert_eq!(
            evaluate_compact(Some(&cfg), &pre),
            ["P2".into(), f("content-type")].concat()
        );
    }
}
