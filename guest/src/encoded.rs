//! The encoded twin (contract section 14): JSON text in, JSON text out.
//!
//! The config is parsed by serde_json straight into borrowed strings (no
//! `serde_json::Value` tree). The head, read on every request, has its own
//! small reader, and the outcome is written by hand.

use alloc::borrow::{Cow, ToOwned};
use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::broken_invariant;
use crate::config::{Config, ConfigInput, EdgeError};
use crate::evaluate::{evaluate, Context, HeaderList, Outcome, Preflight};
use crate::headers::Headers;
use crate::text::slice;

// ------------------------------------------------------------- reading --

/// What the caller wants the next JSON value to be. One visitor type serves
/// every shape, so serde_json's parser is instantiated once (each visitor
/// type would add its own copy of `deserialize_any`, about 1.2 KB).
///
/// A value of the wrong type is answered with `Got::Bad`, never with an
/// error: serde's error constructors format messages ("invalid type:
/// floating point `1.5`, expected ..."), which links float formatting and
/// `core::fmt` machinery (~25 KB of the component) for text thrown away.
/// A rejected array or object is still read to its end, so that a config
/// key repeated later in the object can override it (last one wins).
#[derive(Clone, Copy)]
enum Want {
    Text,
    Bool,
    Number,
    StrList,
    Config,
}

enum Got<'de> {
    Text(Cow<'de, str>),
    Bool(bool),
    /// A JSON number: `Some` when it is an integer in 0..=u32::MAX.
    Number(Option<u32>),
    /// The number -0.0, which serde_json reports alike for the integer
    /// `-0` and for floats such as `-0.0`; the text tells them apart.
    NegativeZero,
    StrList(Vec<String>),
    // Boxed: `Got` travels by value through every layer of serde, so the
    // large shape is kept out of line.
    Config(Box<RawConfig<'de>>),
    Bad,
}

/// The config object's members, by index in `KEYS`.
#[derive(Default)]
struct RawConfig<'de> {
    values: [Option<Got<'de>>; 8],
    /// The (last) `max_age` key as read, to find its number's text.
    age_key: Option<Cow<'de, str>>,
}

/// The shape each config member must have, by index in `KEYS`.
const SHAPES: [Want; 8] = [
    Want::StrList,
    Want::StrList,
    Want::Bool,
    Want::StrList,
    Want::Number,
    Want::StrList,
    Want::Text,
    Want::Text,
];
const AGE: usize = 4;

impl<'de> DeserializeSeed<'de> for Want {
    type Value = Got<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Got<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Want {
    type Value = Got<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an edge contract value")
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Got<'de>, E> {
        Ok(match self {
            Want::Text => Got::Text(Cow::Borrowed(s)),
            _ => Got::Bad,
        })
    }

    fn visit_str<E>(self, s: &str) -> Result<Got<'de>, E> {
        Ok(match self {
            Want::Text => Got::Text(Cow::Owned(s.to_owned())),
            _ => Got::Bad,
        })
    }

    fn visit_bool<E>(self, b: bool) -> Result<Got<'de>, E> {
        Ok(match self {
            Want::Bool => Got::Bool(b),
            _ => Got::Bad,
        })
    }

    // serde_json reports non-negative integers up to u64::MAX here, other
    // integers in `visit_i64` (negative) or `visit_f64` (too large).
    fn visit_u64<E>(self, n: u64) -> Result<Got<'de>, E> {
        Ok(match self {
            Want::Number => Got::Number(u32::try_from(n).ok()),
            _ => Got::Bad,
        })
    }

    fn visit_i64<E>(self, _: i64) -> Result<Got<'de>, E> {
        Ok(match self {
            Want::Number => Got::Number(None),
            _ => Got::Bad,
        })
    }

    fn visit_f64<E>(self, x: f64) -> Result<Got<'de>, E> {
        Ok(match self {
            Want::Number if x == 0.0 && x.is_sign_negative() => Got::NegativeZero,
            Want::Number => Got::Number(None),
            _ => Got::Bad,
        })
    }

    fn visit_unit<E>(self) -> Result<Got<'de>, E> {
        Ok(Got::Bad)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Got<'de>, A::Error> {
        // Every branch reads the array to its end (see `Want`).
        let mut ok = true;
        let got = match self {
            Want::StrList => {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element_seed(Want::Text)? {
                    match item {
                        Got::Text(item) if ok => items.push(item.into_owned()),
                        _ => ok = false,
                    }
                }
                Got::StrList(items)
            }
            Want::Text | Want::Bool | Want::Number | Want::Config => {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Got::Bad
            }
        };
        Ok(if ok { got } else { Got::Bad })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Got<'de>, A::Error> {
        let mut config = match self {
            Want::Config => Box::<RawConfig>::default(),
            _ => {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                return Ok(Got::Bad);
            }
        };
        let mut known = true;
        while let Some(key) = map.next_key_seed(Want::Text)? {
            let Got::Text(key) = key else {
                map.next_value::<IgnoredAny>()?;
                known = false;
                continue;
            };
            // The key's slot and shape, zipped by index in `KEYS`.
            let member = (config.values.iter_mut().zip(KEYS).zip(SHAPES))
                .enumerate()
                .find(|(_, ((_, k), _))| *k == key);
            match member {
                Some((i, ((slot, _), shape))) => {
                    // A repeated key replaces the earlier value.
                    *slot = Some(map.next_value_seed(shape)?);
                    if i == AGE {
                        config.age_key = Some(key);
                    }
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                    known = false;
                }
            }
        }
        Ok(if known { Got::Config(config) } else { Got::Bad })
    }
}

/// Parses `text` as one JSON value of the wanted shape.
fn read(text: &str, want: Want) -> Got<'_> {
    let mut de = serde_json::Deserializer::from_str(text);
    match want.deserialize(&mut de) {
        Ok(got) if de.end().is_ok() => got,
        _ => Got::Bad,
    }
}

// ---------------------------------------------------------------- config --

/// The keys of the encoded config, in the order of the WIT record.
const KEYS: [&str; 8] = [
    "allowed_origins",
    "allowed_hosts",
    "allow_credentials",
    "allowed_headers",
    "max_age",
    "supported_versions",
    "default_version",
    "path_prefix",
];

/// The text of the number after `key`, e.g. `-0` or `-0.0`. `key` is a key
/// that serde_json read without escapes: a slice of `text`, followed by its
/// closing quote.
fn number_after<'t>(text: &'t str, key: &str) -> Option<&'t str> {
    // The key's position in `text`, from its address (no pointer is read).
    let start = (key.as_ptr() as usize).checked_sub(text.as_ptr() as usize)?;
    let after = text.get(start.checked_add(key.len())?..)?;
    let json_ws: &[char] = &[' ', '\t', '\n', '\r'];
    let value = after
        .strip_prefix('"')?
        .trim_start_matches(json_ws)
        .strip_prefix(':')?
        .trim_start_matches(json_ws);
    let end = value
        .find(|c: char| !matches!(c, '-' | '+' | '.' | 'e' | 'E' | '0'..='9'))
        .unwrap_or(value.len());
    Some(slice(value, ..end))
}

fn mistyped(key: &str) -> EdgeError {
    EdgeError::InvalidConfig(String::from(key) + ": wrong type")
}

/// JSON sets no nesting limit; decoders do. The Python fallback's (orjson)
/// refuses more than 1024 nested arrays/objects. This reader never recurses
/// into what it skips, so it would accept a deeper value under a config key
/// that a later repetition of the key overrides: refuse it the same way.
/// (A head is never that deep when valid, so only the config needs this.)
const MAX_NESTING: usize = 1024;

/// Whether arrays and objects nest at most `MAX_NESTING` deep (brackets
/// inside strings do not count). Malformed JSON is left to the parser.
fn nesting_within_limit(text: &str) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for b in text.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return false;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    true
}

/// The config object: exactly the eight snake_case keys, each of its WIT type.
pub fn config_from_json(text: &str) -> Result<ConfigInput, EdgeError> {
    if !nesting_within_limit(text) {
        return Err(EdgeError::InvalidConfig(
            "config: nested deeper than 1024".into(),
        ));
    }
    let Got::Config(raw) = read(text, Want::Config) else {
        return Err(EdgeError::InvalidConfig(
            "config: not a JSON object with only the known keys".into(),
        ));
    };
    let RawConfig { values, age_key } = *raw;
    let mut input = ConfigInput::default();
    for (i, (value, key)) in values.into_iter().zip(KEYS).enumerate() {
        let Some(value) = value else {
            return Err(EdgeError::InvalidConfig(String::from(key) + ": missing"));
        };
        match (i, value) {
            (0, Got::StrList(v)) => input.allowed_origins = v,
            (1, Got::StrList(v)) => input.allowed_hosts = v,
            (2, Got::Bool(b)) => input.allow_credentials = b,
            (3, Got::StrList(v)) => input.allowed_headers = v,
            (AGE, Got::Number(Some(n))) => input.max_age = n,
            // `-0` is the integer 0 for Python's JSON decoders; `-0.0`,
            // `-0e0` ... are floats.
            // (An escaped key cannot be found in the text: such a `-0` stays
            // refused, the one case where this differs from Python.)
            (AGE, Got::NegativeZero) if matches!(&age_key, Some(Cow::Borrowed(k)) if number_after(text, k) == Some("-0")) => {
                input.max_age = 0
            }
            (5, Got::StrList(v)) => input.supported_versions = v,
            (6, Got::Text(s)) => input.default_version = s.into_owned(),
            (7, Got::Text(s)) => input.path_prefix = s.into_owned(),
            _ => return Err(mistyped(key)),
        }
    }
    Ok(input)
}

/// `configure-encoded`: `""` on success, else the error object. `state` is
/// replaced only by a valid configuration.
pub fn configure_encoded(state: &mut Option<Config>, text: &str) -> String {
    match config_from_json(text).and_then(Config::new) {
        Ok(cfg) => {
            *state = Some(cfg);
            String::new()
        }
        Err(err) => error_json(&err),
    }
}

// ------------------------------------------------------------------ head --

/// The encoded head: `[method, path, query, [[name, value], ...]]`, with
/// the headers the rules read already looked up.
pub struct Head<'de> {
    pub method: Cow<'de, str>,
    pub path: Cow<'de, str>,
    pub query: Cow<'de, str>,
    pub headers: Headers<'de>,
}

const HEAD_SHAPE: &str = "head: expected [method, path, query, [[name, value], ...]]";

pub fn head_from_json(text: &str) -> Result<Head<'_>, EdgeError> {
    let mut headers = Headers::default();
    let fields = read_head(text, |name, value| headers.add(&name, value));
    match fields {
        Some([method, path, query]) => Ok(Head {
            method,
            path,
            query,
            headers,
        }),
        None => Err(EdgeError::MalformedInput(HEAD_SHAPE.into())),
    }
}

/// A hand-written reader for the one shape a head may have. It accepts and
/// decodes exactly what serde_json does for that shape (whitespace, escapes,
/// surrogate pairs, no control characters in strings), at a fraction of the
/// cost of driving serde's visitors; the tests check it against serde_json.
struct Reader<'t> {
    text: &'t str,
    pos: usize,
}

impl<'t> Reader<'t> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    /// Skips JSON whitespace, then consumes `c` if it comes next.
    fn eat(&mut self, c: u8) -> bool {
        self.skip_whitespace();
        let found = self.peek() == Some(c);
        if found {
            self.pos += 1;
        }
        found
    }

    /// One string; borrowed unless it has escapes.
    fn string(&mut self) -> Option<Cow<'t, str>> {
        if !self.eat(b'"') {
            return None;
        }
        let start = self.pos;
        // The closing quote, an escape or a (forbidden) control character:
        // an ASCII byte, so `pos` stays on char boundaries.
        self.pos = start + escape_index(slice(self.text, start..))?;
        match self.peek()? {
            b'"' => {
                let s = slice(self.text, start..self.pos);
                self.pos += 1;
                Some(Cow::Borrowed(s))
            }
            b'\\' => self.escaped(start).map(Cow::Owned),
            _ => None,
        }
    }

    /// The rest of a string from its first escape on (`start`: its content).
    #[cold]
    fn escaped(&mut self, start: usize) -> Option<String> {
        let mut out = String::from(slice(self.text, start..self.pos));
        loop {
            let run = self.pos;
            self.pos = run + escape_index(slice(self.text, run..))?;
            // Stopped at an ASCII byte: a char boundary.
            out.push_str(slice(self.text, run..self.pos));
            match self.peek()? {
                b'"' => {
                    self.pos += 1;
                    return Some(out);
                }
                b'\\' => {
                    self.pos += 1;
                    let c = match self.peek()? {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            self.pos += 1;
                            out.push(self.unicode()?);
                            continue;
                        }
                        _ => return None,
                    };
                    self.pos += 1;
                    out.push(c);
                }
                _ => return None, // a control character
            }
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = self.text.as_bytes().get(self.pos..self.pos + 4)?;
        self.pos += 4;
        digits
            .iter()
            .try_fold(0u32, |n, &d| Some(n * 16 + char::from(d).to_digit(16)?))
    }

    /// After `\u`: a code point, or a surrogate pair as `\uD8xx\uDCxx`
    /// (a lone surrogate is an error, as in serde_json).
    fn unicode(&mut self) -> Option<char> {
        let n = self.hex4()?;
        if !(0xD800..=0xDBFF).contains(&n) {
            return char::from_u32(n);
        }
        if self.peek() != Some(b'\\') {
            return None;
        }
        self.pos += 1;
        if self.peek() != Some(b'u') {
            return None;
        }
        self.pos += 1;
        let low = self.hex4()?;
        if !(0xDC00..=0xDFFF).contains(&low) {
            return None;
        }
        // 0x10000..=0x10FFFF: always a char.
        match char::from_u32(0x10000 + ((n - 0xD800) << 10) + (low - 0xDC00)) {
            Some(c) => Some(c),
            None => broken_invariant("a surrogate pair outside U+10000..U+10FFFF"),
        }
    }
}

/// `[method, path, query, [[name, value], ...]]` and nothing else: the
/// three texts, each header pair passed to `header` as it is read.
fn read_head<'t>(
    text: &'t str,
    mut header: impl FnMut(Cow<'t, str>, Cow<'t, str>),
) -> Option<[Cow<'t, str>; 3]> {
    let mut r = Reader { text, pos: 0 };
    if !r.eat(b'[') {
        return None;
    }
    let method = r.string()?;
    r.eat(b',').then_some(())?;
    let path = r.string()?;
    r.eat(b',').then_some(())?;
    let query = r.string()?;
    if !(r.eat(b',') && r.eat(b'[')) {
        return None;
    }
    if !r.eat(b']') {
        loop {
            r.eat(b'[').then_some(())?;
            let name = r.string()?;
            r.eat(b',').then_some(())?;
            let value = r.string()?;
            r.eat(b']').then_some(())?;
            header(name, value);
            if r.eat(b']') {
                break;
            }
            r.eat(b',').then_some(())?;
        }
    }
    if !r.eat(b']') {
        return None;
    }
    r.skip_whitespace();
    (r.pos == text.len()).then_some([method, path, query])
}

/// `evaluate-encoded`. Without a configuration the answer is
/// `not-configured` whatever the input.
pub fn evaluate_encoded(cfg: Option<&Config>, text: &str) -> String {
    let Some(cfg) = cfg else {
        return error_json(&EdgeError::NotConfigured);
    };
    // Written directly: no `EdgeError` (and its message's allocation) on
    // the path every bad input takes.
    let Ok(head) = head_from_json(text) else {
        return error_json_parts("malformed-input", HEAD_SHAPE);
    };
    let outcome = evaluate(cfg, &head.method, &head.path, head.headers);
    outcome_json(&outcome)
}

// --------------------------------------------------------------- writing --

/// The bytes of `word` that need escaping in JSON (`"`, `\\` and the C0
/// controls; everything else is copied as UTF-8), as their top bits. Bit tricks
/// test all eight at once: `(v - n * 0x01..) & !v & 0x80..` flags the bytes
/// of `v` below `n` (`n` <= 0x80). A borrow can flag more bytes, but only
/// above a truly flagged one, so the lowest flag is always exact.
fn escape_mask(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below = |v: u64, n: u64| v.wrapping_sub(ONES * n) & !v & HIGH;
    let quote = word ^ (ONES * u64::from(b'"'));
    let backslash = word ^ (ONES * u64::from(b'\\'));
    below(word, 0x20) | below(quote, 1) | below(backslash, 1)
}

/// The index of the first byte of `s` that needs escaping, eight bytes at a
/// time (per-byte loops dominate the cost of short strings).
fn escape_index(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut start = 0;
    loop {
        let rest = bytes.get(start..).filter(|rest| !rest.is_empty())?;
        let word = match rest.first_chunk::<8>() {
            Some(chunk) => *chunk,
            None => {
                let mut word = [b'a'; 8]; // the tail, padded with a clean byte
                for (w, b) in word.iter_mut().zip(rest) {
                    *w = *b;
                }
                word
            }
        };
        let mask = escape_mask(u64::from_le_bytes(word));
        if mask != 0 {
            return Some(start + (mask.trailing_zeros() / 8) as usize);
        }
        start += 8;
    }
}

/// Appends `s` as a JSON string literal. Most values have nothing to
/// escape: the runs between escapes are copied whole.
fn push_str(out: &mut String, s: &str) {
    // A nibble's lower-case hex digit.
    let hex = |n: u8| char::from(if n < 10 { b'0' + n } else { b'a' + (n - 10) });
    out.reserve(s.len() + 2);
    out.push('"');
    let mut rest = s;
    while let Some(i) = escape_index(rest) {
        // `i` is the index of an ASCII byte: a char boundary.
        let Some(&b) = rest.as_bytes().get(i) else {
            broken_invariant("escape_index: an index past the end")
        };
        out.push_str(slice(rest, ..i));
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            _ => {
                out.push_str("\\u00");
                out.push(hex(b >> 4));
                out.push(hex(b & 15));
            }
        }
        rest = slice(rest, i + 1..);
    }
    out.push_str(rest);
    out.push('"');
}

fn push_opt(out: &mut String, s: Option<&str>) {
    match s {
        Some(s) => push_str(out, s),
        None => out.push_str("null"),
    }
}

fn push_bool(out: &mut String, b: bool) {
    out.push_str(if b { "true" } else { "false" });
}

fn push_headers(out: &mut String, list: HeaderList<'_>) {
    out.push('[');
    for (i, (name, value)) in list.as_slice().iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('[');
        push_str(out, name);
        out.push(',');
        push_str(out, value);
        out.push(']');
    }
    out.push(']');
}

fn push_context(out: &mut String, ctx: &Context<'_>) {
    out.push_str("{\"forward\":{\"method\":");
    push_str(out, ctx.method);
    out.push_str(",\"path\":");
    push_str(out, &ctx.path.path);
    out.push_str(",\"route\":\"");
    out.push_str(ctx.route().name());
    out.push_str("\",\"server_id\":");
    push_opt(out, ctx.server_id());
    out.push_str(",\"session_state\":\"");
    out.push_str(ctx.session_state.name());
    out.push_str("\",\"session_id\":");
    push_opt(out, ctx.session_id.as_deref());
    out.push_str(",\"protocol_version\":");
    push_opt(out, ctx.protocol_version.as_deref());
    out.push_str(",\"protocol_state\":\"");
    out.push_str(ctx.protocol_state.name());
    out.push_str("\",\"revision\":");
    push_opt(out, ctx.revision);
    out.push_str(",\"accept_json\":");
    push_bool(out, ctx.accept_json);
    out.push_str(",\"accept_sse\":");
    push_bool(out, ctx.accept_sse);
    out.push_str(",\"content_type\":\"");
    out.push_str(ctx.content_type.name());
    out.push_str("\",\"origin\":");
    push_opt(out, ctx.origin.as_deref());
    out.push_str(",\"origin_state\":\"");
    out.push_str(ctx.origin_state.name());
    out.push_str("\",\"host_state\":\"");
    out.push_str(ctx.host_state.name());
    out.push_str("\",\"last_event_id\":");
    push_opt(out, ctx.last_event_id.as_deref());
    out.push_str(",\"mcp_method\":");
    push_opt(out, ctx.mcp_method.as_deref());
    out.push_str(",\"mcp_name\":");
    push_opt(out, ctx.mcp_name.as_deref());
    out.push_str(",\"cors_headers\":");
    push_headers(out, ctx.cors_headers());
    out.push_str("}}");
}

fn push_preflight(out: &mut String, p: &Preflight<'_>) {
    out.push_str("{\"preflight\":{\"status\":");
    out.push_str(p.status_text());
    out.push_str(",\"headers\":");
    push_headers(out, p.headers());
    out.push_str("}}");
}

pub fn outcome_json(outcome: &Outcome<'_>) -> String {
    let mut out = String::with_capacity(768);
    match outcome {
        Outcome::Forward(ctx) => push_context(&mut out, ctx),
        Outcome::Preflight(p) => push_preflight(&mut out, p),
    }
    out
}

pub fn error_json(err: &EdgeError) -> String {
    error_json_parts(err.kind(), err.message())
}

fn error_json_parts(kind: &str, message: &str) -> String {
    let mut out = String::with_capacity(96);
    out.push_str("{\"error\":{\"kind\":\"");
    out.push_str(kind);
    out.push_str("\",\"message\":");
    push_str(&mut out, message);
    out.push_str("}}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, Value};

    fn base_json() -> Value {
        serde_json::from_str(include_str!("../../tests/vectors/base-config.json")).unwrap()
    }

    fn configured() -> Config {
        let mut state = None;
        assert_eq!(configure_encoded(&mut state, &base_json().to_string()), "");
        state.unwrap()
    }

    fn kind(out: &str) -> String {
        let v: Value = serde_json::from_str(out).unwrap();
        v["error"]["kind"].as_str().unwrap_or("").to_string()
    }

    #[test]
    fn config_shapes() {
        let mut state = None;
        for bad in ["", "nul", "[]", "1", "{}", "{\"a\":1}", " {", "\u{0}"] {
            assert_eq!(
                kind(&configure_encoded(&mut state, bad)),
                "invalid-config",
                "{bad:?}"
            );
        }
        let mutate = |f: &dyn Fn(&mut Map<String, Value>)| {
            let mut v = base_json();
            f(v.as_object_mut().unwrap());
            v.to_string()
        };
        let cases: Vec<(String, bool)> = vec![
            (
                mutate(&|m| {
                    m.remove("max_age");
                }),
                false,
            ),
            (
                mutate(&|m| {
                    m.insert("extra".into(), Value::Null);
                }),
                false,
            ),
            (
                mutate(&|m| {
                    m.insert("max_age".into(), Value::from(-1));
                }),
                false,
            ),
            (
                mutate(&|m| {
                    m.insert("max_age".into(), Value::from(4294967296u64));
                }),
                false,
            ),
            (
                mutate(&|m| {
                    m.insert("max_age".into(), Value::from(4294967295u64));
                }),
                true,
            ),
            (
                mutate(&|m| {
                    m.insert("max_age".into(), Value::from(1.0));
                }),
                false,
            ),
            (
                mutate(&|m| {
                    m.insert("max_age".into(), Value::Bool(true));
                }),
                false,
            ),
            (
                mutate(&|m| {
                    m.insert("allow_credentials".into(), Value::from(1));
                }),
                false,
            ),
            (
                mutate(&|m| {
                    m.insert("allowed_hosts".into(), Value::from("localhost"));
                }),
                false,
            ),
            (
                mutate(&|m| {
                    m.insert("allowed_hosts".into(), serde_json::json!(["a", 1]));
                }),
                false,
            ),
            (
                mutate(&|m| {
                    m.insert("path_prefix".into(), Value::Null);
                }),
                false,
            ),
            (
                mutate(&|m| {
                    m.insert("path_prefix".into(), Value::from("/api"));
                }),
                true,
            ),
        ];
        for (text, ok) in cases {
            let mut state = None;
            let out = configure_encoded(&mut state, &text);
            assert_eq!(out.is_empty(), ok, "{text}: {out}");
            assert_eq!(state.is_some(), ok);
            if !ok {
                assert_eq!(kind(&out), "invalid-config");
            }
        }
    }

    #[test]
    fn config_number_forms() {
        let with_age = |age: &str| {
            let text = base_json()
                .to_string()
                .replace("\"max_age\":600", &format!("\"max_age\":{age}"));
            assert!(text.contains(age));
            let mut state = None;
            let ok = configure_encoded(&mut state, &text).is_empty();
            if ok {
                // Every accepted form here is zero.
                assert_eq!(state.unwrap().max_age, "0");
            }
            ok
        };
        assert!(with_age("0"));
        // `-0` is an integer for Python's decoders, `-0.0` and `-0e0` floats.
        assert!(with_age("-0"));
        assert!(with_age(" \n -0 "));
        assert!(!with_age("-0.0"));
        assert!(!with_age("-0e0"));
        assert!(!with_age("-0E+2"));
        assert!(!with_age("0.0"));
        assert!(!with_age("6e2"));
        assert!(!with_age("600.0"));
        assert!(!with_age("-1"));
        assert!(!with_age("99999999999999999999999"));
        assert!(!with_age("18446744073709551615"));
        assert!(!with_age("4294967296"));
    }

    #[test]
    fn config_keys_and_duplicates() {
        let base = base_json().to_string();
        let ok = |text: &str| {
            let mut state = None;
            configure_encoded(&mut state, text).is_empty()
        };
        // The last occurrence of a key decides, whatever the earlier ones were.
        assert!(ok(&base.replacen('{', "{\"max_age\":\"x\",", 1)));
        assert!(ok(&base.replacen(
            '{',
            "{\"allowed_hosts\":[1,\"a\",[[2]],{\"k\":[]}],",
            1
        )));
        assert!(ok(&base.replacen(
            '{',
            "{\"path_prefix\":{\"a\":[1,{}]},",
            1
        )));
        assert!(!ok(&base
            .replacen('{', "{\"max_age\":1,", 1)
            .replace("\"max_age\":600", "\"max_age\":\"x\"")));
        assert!(ok(&base
            .replacen('{', "{\"max_age\":-0.0,", 1)
            .replace("\"max_age\":600", "\"max_age\":-0")));
        assert!(!ok(&base
            .replacen('{', "{\"max_age\":-0,", 1)
            .replace("\"max_age\":600", "\"max_age\":-0.0")));
        // Escaped keys are the same keys.
        assert!(ok(&base.replace("\"max_age\"", "\"max\\u005fage\"")));
        // Unknown keys fail even when repeated or nested values are fine.
        assert!(!ok(&base.replacen('{', "{\"Max_age\":600,", 1)));
        assert!(!ok(&base.replacen('{', "{\"\":[],", 1)));
        // Mistyped members.
        assert!(!ok(&base.replace(
            "\"allow_credentials\":false",
            "\"allow_credentials\":0"
        )));
        assert!(!ok(&base.replace(
            "\"allow_credentials\":false",
            "\"allow_credentials\":null"
        )));
        assert!(!ok(
            &base.replace("\"path_prefix\":\"\"", "\"path_prefix\":[]")
        ));
        assert!(!ok(&base.replace(
            "\"default_version\":\"2025-03-26\"",
            "\"default_version\":[\"2025-03-26\"]"
        )));
        assert!(!ok(&base.replace("[\"localhost\",", "[[\"localhost\"],")));
    }

    #[test]
    fn failed_configure_keeps_previous() {
        let mut state = Some(configured());
        let before = state.clone();
        assert_eq!(kind(&configure_encoded(&mut state, "{}")), "invalid-config");
        assert_eq!(state, before);
    }

    #[test]
    fn head_shapes() {
        let cfg = configured();
        for bad in [
            "",
            "[]",
            "{}",
            "null",
            "[\"GET\",\"/mcp\",\"\"]",
            "[\"GET\",\"/mcp\",\"\",[],1]",
            "[\"GET\",\"/mcp\",null,[]]",
            "[\"GET\",\"/mcp\",\"\",{}]",
            "[\"GET\",\"/mcp\",\"\",[[\"a\"]]]",
            "[\"GET\",\"/mcp\",\"\",[[\"a\",\"b\",\"c\"]]]",
            "[\"GET\",\"/mcp\",\"\",[[\"a\",1]]]",
            "[\"GET\",\"/mcp\",\"\",[{\"a\":\"b\"}]]",
            "[\"GET\",\"/mcp\",\"\",[]] x",
            "[\"GET\",\"/mcp\",\"\",[],]",
            "[\"\\ud800\",\"/mcp\",\"\",[]]",
            "[\"GET\",\"/mcp\",\"\",[]",
            "\u{feff}[\"GET\",\"/mcp\",\"\",[]]",
        ] {
            assert_eq!(
                kind(&evaluate_encoded(Some(&cfg), bad)),
                "malformed-input",
                "{bad:?}"
            );
        }
        let ok = " [\"GET\" , \"/mcp\",\"q\",[[\"h\",\"v\"]]]\n\t";
        assert!(evaluate_encoded(Some(&cfg), ok).starts_with("{\"forward\""));
        assert_eq!(kind(&evaluate_encoded(None, ok)), "not-configured");
        assert_eq!(kind(&evaluate_encoded(None, "garbage")), "not-configured");
    }

    #[test]
    fn output_is_json_for_any_text() {
        let cfg = configured();
        let nasty = "\u{0}\u{1f}\"\\\n\r\t\u{7f}\u{2028}é😀";
        let head = serde_json::json!([
            "GET",
            format!("/{nasty}"),
            "",
            [["mcp-name", nasty], ["origin", nasty]]
        ]);
        let out = evaluate_encoded(Some(&cfg), &head.to_string());
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["forward"]["mcp_name"], nasty);
        assert_eq!(v["forward"]["origin"], nasty);
        assert_eq!(v["forward"]["path"], format!("/{nasty}"));
    }

    #[test]
    fn hostile_sizes_and_nesting() {
        let cfg = configured();
        // Deep nesting: serde_json's depth limit, and our drain is iterative.
        for depth in [200, 100_000] {
            let deep = "[".repeat(depth) + &"]".repeat(depth);
            assert_eq!(
                kind(&evaluate_encoded(Some(&cfg), &deep)),
                "malformed-input"
            );
            let head = format!("[\"GET\",\"/\",\"\",[[\"a\",\"b\"],{deep}]]");
            assert_eq!(
                kind(&evaluate_encoded(Some(&cfg), &head)),
                "malformed-input"
            );
            let head = format!("[\"GET\",\"/\",\"\",[],{deep}]");
            assert_eq!(
                kind(&evaluate_encoded(Some(&cfg), &head)),
                "malformed-input"
            );
            // A value overridden by a repeated key may nest as deep as the
            // Python side's decoder allows (1024), no deeper.
            let mut state = None;
            let config =
                base_json()
                    .to_string()
                    .replacen('{', &format!("{{\"path_prefix\":{deep},"), 1);
            assert_eq!(
                configure_encoded(&mut state, &config).is_empty(),
                depth <= 1023
            );
        }
        let nested = |depth: usize| {
            let deep = "[".repeat(depth) + &"]".repeat(depth);
            let mut state = None;
            let config =
                base_json()
                    .to_string()
                    .replacen('{', &format!("{{\"path_prefix\":{deep},"), 1);
            configure_encoded(&mut state, &config).is_empty()
        };
        // The object itself is one level: 1023 more are fine, 1024 are not.
        assert!(nested(1023));
        assert!(!nested(1024));
        // Brackets inside strings do not count.
        let mut state = None;
        let config = base_json().to_string().replace(
            "\"path_prefix\":\"\"",
            &format!(
                "\"path_prefix\":\"\",\"path_prefix\":\"{}\\\"\"",
                "[".repeat(3000)
            ),
        );
        assert_eq!(
            kind(&configure_encoded(&mut state, &config)),
            "invalid-config"
        );
        assert!(nesting_within_limit(&format!(
            "\"{}\\\"{}\"",
            "[".repeat(3000),
            "{".repeat(3000)
        )));
        // Big values and many headers are handled in linear time.
        let big = "a,".repeat(500_000);
        let many: Vec<Value> = (0..50_000)
            .map(|i| serde_json::json!(["mcp-name", i.to_string()]))
            .collect();
        let head = serde_json::json!([
            "OPTIONS",
            format!("/{}", "x/".repeat(100_000)),
            "",
            [
                ["accept", big],
                ["access-control-request-headers", "accept,".repeat(100_000)],
                ["origin", "http://localhost"]
            ],
        ]);
        let v: Value =
            serde_json::from_str(&evaluate_encoded(Some(&cfg), &head.to_string())).unwrap();
        assert_eq!(v["forward"]["route"], "other");
        let head = serde_json::json!(["GET", "/mcp", "", many]);
        let v: Value =
            serde_json::from_str(&evaluate_encoded(Some(&cfg), &head.to_string())).unwrap();
        assert_eq!(
            v["forward"]["mcp_name"].as_str().unwrap().len(),
            50_000 * 2 - 2 + (0..50_000).map(|i: i32| i.to_string().len()).sum::<usize>()
        );
        let head = serde_json::json!([
            "OPTIONS",
            "/mcp",
            "",
            [
                ["origin", "http://localhost"],
                ["access-control-request-method", "GET"],
                ["access-control-request-headers", "Accept, ".repeat(200_000)]
            ]
        ]);
        let v: Value =
            serde_json::from_str(&evaluate_encoded(Some(&cfg), &head.to_string())).unwrap();
        assert_eq!(v["preflight"]["headers"][2][1], "accept");
    }

    type Fields = (String, String, String, Vec<(String, String)>);

    fn fields_of(text: &str) -> Option<Fields> {
        let mut headers = Vec::new();
        let [m, p, q] = read_head(text, |n, v| headers.push((n.into_owned(), v.into_owned())))?;
        Some((m.into_owned(), p.into_owned(), q.into_owned(), headers))
    }

    /// What serde_json makes of `text` as a head.
    fn serde_fields(text: &str) -> Option<Fields> {
        let v: Value = serde_json::from_str(text).ok()?;
        let s = |v: &Value| v.as_str().map(str::to_owned);
        let [m, p, q, h] = v.as_array()?.as_slice() else {
            return None;
        };
        let headers = h
            .as_array()?
            .iter()
            .map(|pair| match pair.as_array()?.as_slice() {
                [n, v] => Some((s(n)?, s(v)?)),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?;
        Some((s(m)?, s(p)?, s(q)?, headers))
    }

    #[test]
    fn head_reader_matches_serde_json_examples() {
        for text in [
            r#"["a","b","c",[]]"#,
            " \t\r\n[ \"a\" , \"b\",\"c\" ,[ [\"n\" ,\"v\"] , [\"N\",\"\"] ] ] \n",
            r#"["\"\\\/\b\f\n\r\t\u0041\u00e9\u20AC\ud83d\ude00","","",[["\u0000",""]]]"#,
            r#"["\ud83d","","",[]]"#,
            r#"["\ude00","","",[]]"#,
            r#"["\ud83d\u0041","","",[]]"#,
            r#"["\ud83d\n","","",[]]"#,
            r#"["\ud83d\ud83d\ude00","","",[]]"#,
            r#"["\u12","","",[]]"#,
            r#"["\u12g4","","",[]]"#,
            r#"["\x","","",[]]"#,
            "[\"\u{1}\",\"\",\"\",[]]",
            "[\"\u{7f}é😀\",\"\",\"\",[]]",
            r#"["a","b","c",[],]"#,
            r#"["a","b","c",[["n","v"],]]"#,
            r#"["a","b","c",[["n","v"]"#,
            r#"["a","b","c",[["n","v"]]]]"#,
            r#"["a","b","c",[[]]]"#,
            r#"["a","b","c",[["n","v"] ["n","v"]]]"#,
            "[\"a\",\"b\",\"c\",[]]\u{0}",
            "[\"a\",\"b\",\"c\",[]]\u{c}",
            r#"["a","b","c"#,
            r#"["a"#,
            "",
            "[",
        ] {
            assert_eq!(fields_of(text), serde_fields(text), "{text:?}");
        }
    }

    proptest::proptest! {
        /// The head reader agrees with serde_json on any text: fuzzed
        /// mutations of valid heads and text from JSON's own alphabet.
        #[test]
        fn head_reader_matches_serde_json(
            strings in proptest::collection::vec(
                "(\\\\(u[dD][89abAB][0-9a-fA-F]{2}\\\\u[dD][c-fC-F][0-9a-fA-F]{2}|u00[0-9a-fA-F]{2}|u[1-9a-cA-CeE][0-9a-fA-F]{3}|[\"\\\\/bfnrt])|[a-z é😀/~\u{7f}]){0,12}",
                3..8,
            ),
            odd in "(\\\\(u[dD][89abAB][0-9a-f]{2}|u[dD][c-fC-F][0-9a-f]{2}|u[0-9a-fA-Fg]{0,4}|[xu\"\\\\])|[\"\u{0}\u{1}\u{1f}a]){1,3}",
            noise in "[\\[\\]\", \\\\u0-9a-fA-FdD:\t\n\r\u{0}\u{1}é😀x]{0,40}",
            at in 0usize..200,
            cut in 0usize..4,
        ) {
            let mut quoted: Vec<String> = strings.iter().map(|s| format!("\"{s}\"")).collect();
            let head = format!(
                "[{},{},{},[[{},{}],[{},{}]]]",
                quoted[0], quoted[1], quoted[2], quoted[0], quoted[1], quoted[2], quoted[quoted.len() - 1]
            );
            let slot = at % quoted.len();
            quoted[slot] = format!("\"{}{odd}{}\"", strings[slot], strings[0]);
            let odd_head = format!(
                " [ {} , {},{},[ [{},{}] ,[{},{}]]\n]\t",
                quoted[0], quoted[1], quoted[2], quoted[0], quoted[1], quoted[2], quoted[quoted.len() - 1]
            );
            let mut mutated = head.clone();
            let mut at = at.min(mutated.len());
            while !mutated.is_char_boundary(at) {
                at -= 1;
            }
            let end = (at + cut).min(mutated.len());
            if mutated.is_char_boundary(end) {
                mutated.replace_range(at..end, &noise);
            }
            proptest::prop_assert!(fields_of(&head).is_some(), "{:?}", head);
            for text in [head.as_str(), odd_head.as_str(), mutated.as_str(), noise.as_str()] {
                proptest::prop_assert_eq!(fields_of(text), serde_fields(text), "{:?}", text);
            }
        }
    }

    #[test]
    fn escape_index_matches_bytewise() {
        let alphabet = [
            'a', '"', '\\', '\u{0}', '\u{1f}', ' ', '\u{7f}', 'é', '\u{80}', '!', '[', ']',
        ];
        let mut texts = vec![String::new()];
        for len in 1..=18 {
            for seed in 0..200usize {
                let text: String = (0..len)
                    .map(|i| alphabet[(seed * 7 + i * i * 3 + seed / (i + 1)) % alphabet.len()])
                    .collect();
                texts.push(text);
            }
        }
        for text in texts {
            let expected = text
                .bytes()
                .position(|b| b < 0x20 || b == b'"' || b == b'\\');
            assert_eq!(escape_index(&text), expected, "{text:?}");
        }
    }

    #[test]
    fn forward_shape() {
        let cfg = configured();
        let head = r#"["POST","/mcp","",[["host","localhost:8000"],["accept","application/json, text/event-stream"],["content-type","application/json"]]]"#;
        let v: Value = serde_json::from_str(&evaluate_encoded(Some(&cfg), head)).unwrap();
        let expected = serde_json::json!({"forward": {"method": "POST", "path": "/mcp", "route": "mcp", "server_id": null,
            "session_state": "absent", "session_id": null,
            "protocol_version": null, "protocol_state": "absent", "revision": "2025-03-26",
            "accept_json": true, "accept_sse": true, "content_type": "json",
            "origin": null, "origin_state": "absent", "host_state": "allowed",
            "last_event_id": null, "mcp_method": null, "mcp_name": null,
            "cors_headers": [["vary", "Origin"]]}});
        assert_eq!(v, expected);
    }

    #[test]
    fn preflight_shape() {
        let cfg = configured();
        let head = r#"["OPTIONS","/mcp","",[["origin","http://localhost:3000"],["access-control-request-method","POST"]]]"#;
        let v: Value = serde_json::from_str(&evaluate_encoded(Some(&cfg), head)).unwrap();
        assert_eq!(v["preflight"]["status"], 204);
        assert_eq!(
            v["preflight"]["headers"][0],
            serde_json::json!(["access-control-allow-origin", "http://localhost:3000"])
        );
    }
}
