//! `invoke-encoded`'s input, `{"context": {...}, "payload": ...}`, read in one
//! pass: the context's fields decoded into a [`Context`], the payload's syntax
//! and nesting checked together (no value built), without serde's generic
//! machinery. The payload check is a security check (docs/plugins.md, "payloads
//! a hook cannot read fail closed"): it accepts exactly the JSON serde_json's
//! parser accepts (the tests compare the two on many generated inputs) nested
//! at most [`MAX_PAYLOAD_NESTING`] deep, so whatever reaches a hook parses.

use alloc::borrow::Cow;
use alloc::borrow::ToOwned;
use alloc::format;
use alloc::string::String;

use crate::{Context, Hook, Payload, Principal, Value, MAX_PAYLOAD_NESTING};

/// Reading stopped: the reason is in `Reader::why`. Zero-sized, so a step's
/// `Result` comes back in registers; with a `String` error every step's
/// result was a struct written to and read from wasm's linear memory.
struct Stop;

type Result<T> = core::result::Result<T, Stop>;

/// The hook's context and payload, or why the input is refused.
pub(crate) fn read_input(input: &str) -> core::result::Result<(Context, Payload<'_>), String> {
    let mut r = Reader::new(input);
    let mut context = None;
    let mut payload = None;
    let read = r
        .object(|r, key| match key {
            "context" => {
                let value = r.context()?;
                r.once(&mut context, value, "context")
            }
            "payload" => {
                let value = r.value(MAX_PAYLOAD_NESTING, "payload")?;
                r.once(&mut payload, value, "payload")
            }
            _ => r.value(MAX_PAYLOAD_NESTING, "value").map(drop),
        })
        .and_then(|()| match r.peek() {
            Some(_) => r.fail("trailing characters"),
            None => Ok(()),
        });
    if read.is_err() {
        return Err(r.why);
    }
    let Some(context) = context else {
        return Err("missing field `context`".to_owned());
    };
    let payload = payload.map_or(Payload::from(Value::Null), Payload::from_json);
    Ok((context, payload))
}

/// JSON `text` as a payload: one value (whitespace around it allowed) whose
/// syntax serde_json accepts, nested at most `limit` (<= 128) deep.
pub fn check_json(text: &str, limit: usize) -> core::result::Result<&str, String> {
    let mut r = Reader::new(text);
    let read = r.value(limit, "payload").and_then(|value| match r.peek() {
        None => Ok(value),
        Some(_) => r.fail("trailing characters"),
    });
    read.map_err(|Stop| r.why)
}

struct Reader<'a> {
    text: &'a str,
    at: usize,
    why: String,
}

impl<'a> Reader<'a> {
    fn new(text: &'a str) -> Self {
        Reader {
            text,
            at: 0,
            why: String::new(),
        }
    }

    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    #[cold]
    fn fail<T>(&mut self, what: &str) -> Result<T> {
        self.why = format!("{what} at byte {}", self.at);
        Err(Stop)
    }

    #[cold]
    fn stop<T>(&mut self, why: String) -> Result<T> {
        self.why = why;
        Err(Stop)
    }

    fn once<T>(&mut self, slot: &mut Option<T>, value: T, key: &str) -> Result<()> {
        if slot.is_some() {
            return self.stop(format!("duplicate field `{key}`"));
        }
        *slot = Some(value);
        Ok(())
    }

    /// The next byte that is not JSON whitespace (not consumed).
    fn peek(&mut self) -> Option<u8> {
        while let Some(&b) = self.bytes().get(self.at) {
            match b {
                b' ' | b'\n' | b'\t' | b'\r' => self.at += 1,
                _ => return Some(b),
            }
        }
        None
    }

    fn eat(&mut self, byte: u8, what: &str) -> Result<()> {
        if self.peek() == Some(byte) {
            self.at += 1;
            Ok(())
        } else {
            self.fail(what)
        }
    }

    /// An object, each member's value read by `member` (called with the key).
    fn object(&mut self, mut member: impl FnMut(&mut Self, &str) -> Result<()>) -> Result<()> {
        self.eat(b'{', "expected an object")?;
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(());
        }
        loop {
            self.eat(b'"', "expected a key")?;
            let key = self.string()?;
            self.eat(b':', "expected `:`")?;
            member(self, &key)?;
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return Ok(());
                }
                _ => return self.fail("expected `,` or `}`"),
            }
        }
    }

    fn context(&mut self) -> Result<Context> {
        let (mut hook, mut endpoint, mut upstream, mut method) = (None, None, None, None);
        let (mut name, mut principal, mut request_id, mut session_hash) = (None, None, None, None);
        self.object(|r, key| match key {
            "hook" => {
                let value = r.hook()?;
                r.once(&mut hook, value, key)
            }
            "endpoint" => {
                let value = r.text_value(key)?;
                r.once(&mut endpoint, value, key)
            }
            "upstream" => {
                let value = r.optional_text(key)?;
                r.once(&mut upstream, value, key)
            }
            "method" => {
                let value = r.text_value(key)?;
                r.once(&mut method, value, key)
            }
            "name" => {
                let value = r.optional_text(key)?;
                r.once(&mut name, value, key)
            }
            "principal" => {
                let value = r.principal()?;
                r.once(&mut principal, value, key)
            }
            "request-id" => {
                let value = r.text_value(key)?;
                r.once(&mut request_id, value, key)
            }
            "session-hash" => {
                let value = r.optional_text(key)?;
                r.once(&mut session_hash, value, key)
            }
            _ => r.value(MAX_PAYLOAD_NESTING, "value").map(drop),
        })?;
        let (hook, endpoint, method) = match (hook, endpoint, method) {
            (Some(hook), Some(endpoint), Some(method)) => (hook, endpoint, method),
            (hook, endpoint, _) => {
                let key = match (hook, endpoint) {
                    (None, _) => "hook",
                    (_, None) => "endpoint",
                    _ => "method",
                };
                return self.stop(format!("missing field `{key}`"));
            }
        };
        Ok(Context {
            hook,
            endpoint,
            upstream: upstream.flatten(),
            method,
            name: name.flatten(),
            principal: principal.flatten(),
            request_id: request_id.unwrap_or_default(),
            session_hash: session_hash.flatten(),
        })
    }

    fn hook(&mut self) -> Result<Hook> {
        let name = self.text_value("hook")?;
        Ok(match name.as_str() {
            "tool-pre-invoke" => Hook::ToolPreInvoke,
            "tool-post-invoke" => Hook::ToolPostInvoke,
            "prompt-pre-fetch" => Hook::PromptPreFetch,
            "prompt-post-fetch" => Hook::PromptPostFetch,
            "resource-pre-fetch" => Hook::ResourcePreFetch,
            "resource-post-fetch" => Hook::ResourcePostFetch,
            "list-filter" => Hook::ListFilter,
            _ => return self.stop(format!("unknown hook `{name}`")),
        })
    }

    /// Absent or null: None. Rare (authentication on): serde reads it.
    fn principal(&mut self) -> Result<Option<Principal>> {
        if self.null()? {
            return Ok(None);
        }
        let raw = self.value(MAX_PAYLOAD_NESTING, "value")?;
        match serde_json::from_str(raw) {
            Ok(principal) => Ok(Some(principal)),
            Err(e) => self.stop(format!("principal: {e}")),
        }
    }

    /// Consumes a `null` if that is what comes next.
    fn null(&mut self) -> Result<bool> {
        if self.peek() != Some(b'n') {
            return Ok(false);
        }
        self.literal(b"null")?;
        Ok(true)
    }

    fn text_value(&mut self, key: &str) -> Result<String> {
        if self.peek() != Some(b'"') {
            return self.stop(format!("`{key}` must be a string at byte {}", self.at));
        }
        self.at += 1;
        Ok(self.string()?.into_owned())
    }

    fn optional_text(&mut self, key: &str) -> Result<Option<String>> {
        if self.null()? {
            return Ok(None);
        }
        self.text_value(key).map(Some)
    }

    /// A string's contents (after its opening quote), escapes decoded.
    fn string(&mut self) -> Result<Cow<'a, str>> {
        let start = self.at;
        let escaped = self.skip_string()?;
        let inner = self.text.get(start..self.at - 1).unwrap_or_default();
        if !escaped {
            return Ok(Cow::Borrowed(inner));
        }
        match unescape(inner) {
            Some(text) => Ok(Cow::Owned(text)),
            None => self.fail("lone surrogate in a string"),
        }
    }

    /// To just past a string's closing quote (from after its opening one):
    /// what serde_json accepts in a string (no control character, only its
    /// escapes). Whether there were escapes.
    fn skip_string(&mut self) -> Result<bool> {
        let bytes = self.bytes();
        let mut escaped = false;
        loop {
            self.at = plain_run(bytes, self.at);
            match bytes.get(self.at) {
                Some(b'"') => {
                    self.at += 1;
                    return Ok(escaped);
                }
                Some(b'\\') => {
                    escaped = true;
                    self.at += 1;
                    match bytes.get(self.at) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                            self.at += 1
                        }
                        Some(b'u') => {
                            self.at += 1;
                            if hex4(bytes, self.at).is_none() {
                                return self.fail("invalid escape");
                            }
                            self.at += 4;
                        }
                        _ => return self.fail("invalid escape"),
                    }
                }
                Some(_) => return self.fail("control character in a string"),
                None => return self.fail("unterminated string"),
            }
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<()> {
        if self.bytes().get(self.at..self.at + word.len()) == Some(word) {
            self.at += word.len();
            Ok(())
        } else {
            self.fail("expected a value")
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.at;
        while let Some(b'0'..=b'9') = self.bytes().get(self.at) {
            self.at += 1;
        }
        self.at - start
    }

    /// serde_json's number syntax: `-`? (`0` | [1-9][0-9]*) (`.` [0-9]+)? ([eE] [+-]? [0-9]+)?
    fn number(&mut self) -> Result<()> {
        let bytes = self.bytes();
        if bytes.get(self.at) == Some(&b'-') {
            self.at += 1;
        }
        match bytes.get(self.at) {
            Some(b'0') => {
                self.at += 1;
                if let Some(b'0'..=b'9') = bytes.get(self.at) {
                    return self.fail("invalid number");
                }
            }
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return self.fail("invalid number"),
        }
        if bytes.get(self.at) == Some(&b'.') {
            self.at += 1;
            if self.digits() == 0 {
                return self.fail("invalid number");
            }
        }
        if let Some(b'e' | b'E') = bytes.get(self.at) {
            self.at += 1;
            if let Some(b'+' | b'-') = bytes.get(self.at) {
                self.at += 1;
            }
            if self.digits() == 0 {
                return self.fail("invalid number");
            }
        }
        Ok(())
    }

    /// One JSON value, its syntax checked as serde_json checks it and its
    /// arrays and objects nested at most `limit` deep (at most 128):
    /// iterative, a bit per level for whether it is an object. Its text.
    fn value(&mut self, limit: usize, what: &str) -> Result<&'a str> {
        let limit = limit.min(128);
        self.peek();
        let start = self.at;
        let mut depth = 0usize;
        let mut objects = 0u128; // bit d - 1: level d is an object
        'value: loop {
            match self.peek() {
                Some(open @ (b'[' | b'{')) => {
                    self.at += 1;
                    depth += 1;
                    if depth > limit {
                        return self.stop(format!("{what} nested deeper than {limit}"));
                    }
                    let bit = 1u128 << (depth - 1);
                    if open == b'{' {
                        objects |= bit;
                        if self.peek() == Some(b'}') {
                            self.at += 1;
                            depth -= 1;
                        } else {
                            self.member_key()?;
                            continue 'value;
                        }
                    } else {
                        objects &= !bit;
                        if self.peek() == Some(b']') {
                            self.at += 1;
                            depth -= 1;
                        } else {
                            continue 'value;
                        }
                    }
                }
                Some(b'"') => {
                    self.at += 1;
                    self.skip_string()?;
                }
                Some(b'n') => self.literal(b"null")?,
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'-' | b'0'..=b'9') => self.number()?,
                _ => return self.fail("expected a value"),
            }
            // After a value: the end of the whole, the next member, or a close.
            loop {
                if depth == 0 {
                    return Ok(self.text.get(start..self.at).unwrap_or_default());
                }
                let object = objects & (1u128 << (depth - 1)) != 0;
                match self.peek() {
                    Some(b',') => {
                        self.at += 1;
                        if object {
                            self.member_key()?;
                        }
                        continue 'value;
                    }
                    Some(b'}') if object => {
                        self.at += 1;
                        depth -= 1;
                    }
                    Some(b']') if !object => {
                        self.at += 1;
                        depth -= 1;
                    }
                    _ => return self.fail("expected `,` or the end of a list or object"),
                }
            }
        }
    }

    fn member_key(&mut self) -> Result<()> {
        self.eat(b'"', "expected a key")?;
        self.skip_string()?;
        self.eat(b':', "expected `:`")
    }
}

/// Where the run of plain string bytes from `at` ends: the first `"`, `\` or
/// control character, or the end. Eight bytes at a time (as serde_json does).
fn plain_run(bytes: &[u8], mut at: usize) -> usize {
    const ONES: u64 = u64::MAX / 255;
    while let Some(chunk) = bytes.get(at..at + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let c = u64::from_le_bytes(word);
        let control = c.wrapping_sub(ONES * 0x20) & !c;
        let q = c ^ (ONES * u64::from(b'"'));
        let quote = q.wrapping_sub(ONES) & !q;
        let s = c ^ (ONES * u64::from(b'\\'));
        let backslash = s.wrapping_sub(ONES) & !s;
        let found = (control | quote | backslash) & (ONES << 7);
        if found != 0 {
            // The lowest flagged byte is exact (a borrow only spills upwards).
            return at + (found.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    while let Some(&b) = bytes.get(at) {
        if b < 0x20 || b == b'"' || b == b'\\' {
            break;
        }
        at += 1;
    }
    at
}

fn hex4(bytes: &[u8], at: usize) -> Option<u16> {
    let digits = bytes.get(at..at + 4)?;
    let mut value = 0u16;
    for &d in digits {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            b'A'..=b'F' => d - b'A' + 10,
            _ => return None,
        };
        value = (value << 4) | u16::from(v);
    }
    Some(value)
}

/// A string's contents with escapes (already checked) decoded; None for a
/// lone surrogate, which serde_json refuses in a `String` too.
fn unescape(inner: &str) -> Option<String> {
    let bytes = inner.as_bytes();
    let mut out = String::with_capacity(inner.len());
    let mut at = 0;
    while let Some(offset) = bytes.get(at..).and_then(|rest| memchr::memchr(b'\\', rest)) {
        out.push_str(inner.get(at..at + offset).unwrap_or_default());
        at += offset + 1;
        let escape = bytes.get(at).copied().unwrap_or_default();
        at += 1;
        let ch = match escape {
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let unit = hex4(bytes, at)?;
                at += 4;
                let code = match unit {
                    0xD800..=0xDBFF => {
                        let low = match (bytes.get(at..at + 2), hex4(bytes, at + 2)) {
                            (Some(b"\\u"), Some(low @ 0xDC00..=0xDFFF)) => low,
                            _ => return None,
                        };
                        at += 6;
                        0x10000 + ((u32::from(unit) - 0xD800) << 10) + (u32::from(low) - 0xDC00)
                    }
                    0xDC00..=0xDFFF => return None,
                    _ => u32::from(unit),
                };
                char::from_u32(code)?
            }
            other => char::from(other), // `"`, `\`, `/`
        };
        out.push(ch);
    }
    out.push_str(inner.get(at..).unwrap_or_default());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// What the SDK accepted before the one-pass reader: serde_json's syntax
    /// check of a raw value, then the nesting scan.
    fn reference(text: &str) -> bool {
        serde_json::from_str::<&serde_json::value::RawValue>(text).is_ok()
            && crate::nesting_within(text, MAX_PAYLOAD_NESTING)
    }

    const SEEDS: &[&str] = &[
        r#"{"name": "echo", "arguments": {"text": "hello", "n": [1, -2.5e+3, 0, 0.1, 1E9, true, false, null]}}"#,
        r#"{"content":[{"type":"text","text":"a \"quoted\" \\ \/ \b\f\n\r\t \u00e9 \ud83d\ude00 \ud800"}],"isError":false}"#,
        r#"[[], {}, [{}], {"": []}, "", -0, 0e0, 1.5E-7, "[{\"", "\u0000"]"#,
        "  [1 ,\t2\r\n, 3]  ",
        r#""just a string""#,
        "-12",
        "null",
    ];
    const ALPHABET: &[u8] = b"[]{}\",:\\/0123456789-+.eEtrufalsn ux\t\n\x01\x1fAbz";

    /// Random edits of valid JSON: the one-pass check accepts exactly what
    /// serde_json and the nesting scan accepted, on every one.
    #[test]
    fn accepts_exactly_what_serde_json_accepts() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let mut accepted = 0;
        for round in 0..60_000 {
            let mut text: Vec<u8> = SEEDS[round % SEEDS.len()].as_bytes().to_vec();
            for _ in 0..1 + next(3) {
                let at = next(text.len() + 1);
                let byte = ALPHABET[next(ALPHABET.len())];
                match next(3) {
                    0 if at < text.len() => {
                        text.remove(at);
                    }
                    1 if at < text.len() => text[at] = byte,
                    _ => text.insert(at, byte),
                }
            }
            let Ok(text) = core::str::from_utf8(&text) else {
                continue;
            };
            let ours = check_json(text, MAX_PAYLOAD_NESTING).is_ok();
            assert_eq!(ours, reference(text), "{text:?}");
            accepted += usize::from(ours);
        }
        assert!(accepted > 3_000, "too few valid variants: {accepted}");
        for seed in SEEDS {
            assert_eq!(check_json(seed, MAX_PAYLOAD_NESTING), Ok(seed.trim()));
        }
    }

    #[test]
    fn nesting_limit_and_strings_in_one_pass() {
        for depth in [1, 126, 127, 128, 200, 10_000] {
            for (open, close) in [("[", "]"), ("{\"k\":", "}")] {
                let text = open.repeat(depth) + "0" + &close.repeat(depth);
                assert_eq!(
                    check_json(&text, 127).is_ok(),
                    depth <= 127,
                    "{depth} {open}"
                );
                assert_eq!(
                    check_json(&text, 127).is_ok(),
                    reference(&text),
                    "{depth} {open}"
                );
            }
        }
        let err = check_json(&"[".repeat(200), 127).unwrap_err();
        assert_eq!(err, "payload nested deeper than 127");
        // Brackets in strings, escaped quotes, a long plain run (the 8-byte steps).
        let text = json_text(
            &serde_json::json!({"s": "[".repeat(500), "t": "\\\"{{{{", "u": "x".repeat(37)}),
        );
        assert_eq!(check_json(&text, 1), Ok(text.as_str()));
        for bad in [
            "\"a\u{1}b\"",
            "\"abcdefghijklmnop\u{1f}\"",
            "\"\\x\"",
            "\"\\u12g4\"",
            "01",
            "1.",
            "-",
            "1e",
            "[1,]",
            "{\"a\":1,}",
            "{1:2}",
            "[1 2]",
            "tru",
            "nul",
            "\"open",
            "[]]",
            "",
        ] {
            assert!(check_json(bad, 127).is_err(), "{bad:?}");
            assert!(!reference(bad), "{bad:?}");
        }
    }

    fn json_text(value: &Value) -> String {
        value.to_string()
    }

    #[test]
    fn reads_the_context_as_serde_did() {
        let input = r#" { "extra": [[{"x": 1}]], "payload" : {"a": [1]}, "context": {"hook": "list-filter",
            "endpoint": "/servers/a\"b/mcp", "upstream": "up", "method": "tools/list", "name": "caf\u00e9 \ud83d\ude00",
            "principal": {"subject": "alice", "scopes": ["r"], "claims-json": "{}"}, "request-id": "\"7\"",
            "session-hash": null, "future": {"k": null}} } "#;
        let (ctx, payload) = read_input(input).unwrap();
        assert_eq!(ctx.hook, Hook::ListFilter);
        assert_eq!(ctx.endpoint, "/servers/a\"b/mcp");
        assert_eq!(ctx.upstream.as_deref(), Some("up"));
        assert_eq!(ctx.method, "tools/list");
        assert_eq!(ctx.name.as_deref(), Some("café 😀"));
        assert_eq!(
            ctx.principal.as_ref().map(|p| p.subject.as_str()),
            Some("alice")
        );
        assert_eq!(ctx.request_id, "\"7\"");
        assert_eq!(ctx.session_hash, None);
        assert_eq!(payload.try_value().unwrap(), serde_json::json!({"a": [1]}));
        // The same context through serde's derive gives the same value.
        let value: Value = serde_json::from_str(input).unwrap();
        let by_serde: Context = serde_json::from_value(value["context"].clone()).unwrap();
        assert_eq!(ctx, by_serde);
        // Absent optional fields, no payload.
        let (ctx, payload) = read_input(
            r#"{"context": {"hook": "tool-pre-invoke", "endpoint": "/mcp", "method": "m"}}"#,
        )
        .unwrap();
        assert_eq!(
            (ctx.name, ctx.principal, ctx.request_id.as_str()),
            (None, None, "")
        );
        assert_eq!(payload.try_value().unwrap(), Value::Null);
        for (bad, why) in [
            (
                r#"{"context": {"hook": "tool-pre-invoke", "method": "m"}}"#,
                "missing field `endpoint`",
            ),
            (r#"{"payload": 1}"#, "missing field `context`"),
            (
                r#"{"context": {"hook": "nope", "endpoint": "/mcp", "method": "m"}}"#,
                "unknown hook `nope`",
            ),
            (
                r#"{"context": {"hook": "list-filter", "endpoint": 1, "method": "m"}}"#,
                "`endpoint` must be a string",
            ),
            (
                r#"{"context": {"hook": "list-filter", "endpoint": "/", "method": "m", "name": "\ud800"}}"#,
                "lone surrogate",
            ),
            (
                r#"{"context": {"hook": "list-filter", "endpoint": "/", "method": "m"}, "payload": 1, "payload": 2}"#,
                "duplicate field `payload`",
            ),
            (
                r#"{"context": {"hook": "list-filter", "endpoint": "/", "method": "m"}} x"#,
                "trailing characters",
            ),
            (
                r#"{"context": {"hook": "list-filter", "endpoint": "/", "method": "m", "principal": {"scopes": []}}}"#,
                "principal: missing field `subject`",
            ),
        ] {
            let err = read_input(bad).map(|_| ()).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
        assert!(read_input(&"[".repeat(10_000)).is_err());
    }
}
