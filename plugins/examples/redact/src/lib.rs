//! redact: masks personal data and secrets in tool results before the
//! client sees them: the `text` of text content items and every string in
//! `structuredContent`.
//!
//! Kinds: `email`, `phone` (a `+` and 8 to 15 digits, or 10 to 15 digits with
//! separators such as `(555) 123-4567`), `card` (13 to 19 digits, spaces or
//! dashes between, passing the Luhn check), `aws-key` (`AKIA`/`ASIA` and 16
//! upper-case letters or digits) and `bearer` (the token after `Bearer `).
//! Config: `replacement` (default `"[redacted:{kind}]"`; `{kind}` is replaced
//! by the kind's name) and `kinds` (default: all five). Hand-written
//! scanners: linear in the text, no regex engine in the component.

#![cfg_attr(target_arch = "wasm32", no_std)]

use mcpgw_plugin_sdk::prelude::*;
use serde::Deserialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Email,
    Phone,
    Card,
    AwsKey,
    Bearer,
}

impl Kind {
    const ALL: [Kind; 5] = [
        Kind::Email,
        Kind::Phone,
        Kind::Card,
        Kind::AwsKey,
        Kind::Bearer,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::Email => "email",
            Kind::Phone => "phone",
            Kind::Card => "card",
            Kind::AwsKey => "aws-key",
            Kind::Bearer => "bearer",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    replacement: String,
    kinds: Vec<Kind>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            replacement: "[redacted:{kind}]".to_owned(),
            kinds: Kind::ALL.to_vec(),
        }
    }
}

#[derive(Default)]
pub struct Redact {
    config: Config,
}

/// A found span: byte range and kind (every scanner matches ASCII only, so
/// the bounds are always character boundaries).
type Span = (usize, usize, Kind);

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn emails(s: &[u8], out: &mut Vec<Span>) {
    let local = |b: u8| b.is_ascii_alphanumeric() || b"._%+-".contains(&b);
    let domain = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'.';
    let mut floor = 0; // no span starts before the end of the previous one
    for (at, _) in s.iter().enumerate().filter(|(_, &b)| b == b'@') {
        let mut start = at;
        while start > floor && at - start < 64 && s.get(start - 1).copied().is_some_and(local) {
            start -= 1;
        }
        let mut end = at + 1;
        while end - at <= 255 && s.get(end).copied().is_some_and(domain) {
            end += 1;
        }
        while end > at + 1 && matches!(s.get(end - 1), Some(b'.' | b'-')) {
            end -= 1; // a sentence's full stop is not part of the domain
        }
        let host = s.get(at + 1..end).unwrap_or_default();
        let tld = host.rsplit(|&b| b == b'.').next().unwrap_or_default();
        let dotted = host.contains(&b'.') && !host.starts_with(b".");
        if start < at && dotted && tld.len() >= 2 && tld.iter().all(u8::is_ascii_alphabetic) {
            out.push((start, end, Kind::Email));
            floor = end;
        }
    }
}

fn aws_keys(s: &[u8], out: &mut Vec<Span>) {
    let mut i = 0;
    while i + 20 <= s.len() {
        if s.get(i) != Some(&b'A') {
            i += 1;
            continue;
        }
        let key = s.get(i..i + 20).unwrap_or_default();
        let boundary_before = i == 0 || !s.get(i - 1).copied().is_some_and(is_word);
        let boundary_after = !s.get(i + 20).copied().is_some_and(is_word);
        if boundary_before
            && boundary_after
            && (key.starts_with(b"AKIA") || key.starts_with(b"ASIA"))
            && key
                .iter()
                .skip(4)
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        {
            out.push((i, i + 20, Kind::AwsKey));
            i += 20;
        } else {
            i += 1;
        }
    }
}

fn bearers(s: &[u8], out: &mut Vec<Span>) {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b);
    let mut i = 0;
    while i + 7 <= s.len() {
        if !matches!(s.get(i), Some(b'b' | b'B')) {
            i += 1;
            continue;
        }
        let word = s.get(i..i + 7).unwrap_or_default();
        let boundary = i == 0 || !s.get(i - 1).copied().is_some_and(is_word);
        if boundary && word.eq_ignore_ascii_case(b"bearer ") {
            let start = i + 7;
            let mut end = start;
            while s.get(end).copied().is_some_and(token) {
                end += 1;
            }
            if end - start >= 8 {
                out.push((start, end, Kind::Bearer));
            }
            i = end.max(i + 1);
        } else {
            i += 1;
        }
    }
}

fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            let d = u32::from(d - b'0');
            if !i.is_multiple_of(2) {
                if d * 2 > 9 {
                    d * 2 - 9
                } else {
                    d * 2
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Cards and phones: runs of digits and separators, classified by their
/// digits. A run starts at a digit, `+` or `(` that does not follow a word
/// character, and ends at the last digit before anything else.
fn numbers(s: &[u8], kinds: &[Kind], out: &mut Vec<Span>) {
    let sep = |b: u8| matches!(b, b' ' | b'-' | b'.' | b'(' | b')');
    let mut i = 0;
    while i < s.len() {
        let b = s.get(i).copied().unwrap_or_default();
        let starts = b.is_ascii_digit() || b == b'+' || b == b'(';
        if !starts
            || (i > 0
                && s.get(i - 1)
                    .copied()
                    .is_some_and(|p| is_word(p) || p == b'.'))
        {
            i += 1;
            continue;
        }
        let mut digits = Vec::new();
        let mut end = i + 1;
        let mut last_digit = if b.is_ascii_digit() {
            digits.push(b);
            Some(i + 1)
        } else {
            None
        };
        let mut run_sep = 0; // consecutive separators
        while let Some(c) = s.get(end).copied() {
            if c.is_ascii_digit() {
                digits.push(c);
                last_digit = Some(end + 1);
                run_sep = 0;
            } else if sep(c) && run_sep < 2 {
                run_sep += 1;
            } else {
                break;
            }
            end += 1;
            if digits.len() > 19 {
                break;
            }
        }
        let Some(end) = last_digit else {
            i += 1;
            continue;
        };
        let glued = s
            .get(end)
            .copied()
            .is_some_and(|c| is_word(c) || c.is_ascii_digit());
        let text = s.get(i..end).unwrap_or_default();
        let separated = text.iter().any(|&c| sep(c));
        let date = text.len() >= 10
            && text.get(4) == Some(&b'-')
            && text.get(7) == Some(&b'-')
            && text.iter().take(4).all(u8::is_ascii_digit);
        // One dot and no other separator: a decimal number, not a phone.
        let decimal = text.iter().filter(|&&c| sep(c)).eq([b'.'].iter());
        let kind = if glued || digits.len() > 19 {
            None
        } else if kinds.contains(&Kind::Card)
            && (13..=19).contains(&digits.len())
            && !text.contains(&b'(')
            && !text.starts_with(b"+")
            && luhn(&digits)
        {
            Some(Kind::Card)
        } else if kinds.contains(&Kind::Phone)
            && !date
            && !decimal
            && ((b == b'+' && (8..=15).contains(&digits.len()))
                || (separated && (10..=15).contains(&digits.len())))
        {
            Some(Kind::Phone)
        } else {
            None
        };
        match kind {
            Some(kind) => {
                out.push((i, end, kind));
                i = end;
            }
            None => {
                // Skip this run's digits: a number is never matched from its middle.
                let mut j = i + 1;
                while s.get(j).copied().is_some_and(|c| c.is_ascii_digit()) {
                    j += 1;
                }
                i = j;
            }
        }
    }
}

impl Redact {
    /// `text` with every enabled kind replaced, or `None` when nothing matched.
    pub fn redact(&self, text: &str) -> Option<String> {
        let s = text.as_bytes();
        let kinds = &self.config.kinds;
        let mut spans = Vec::new();
        if kinds.contains(&Kind::Email) && s.contains(&b'@') {
            emails(s, &mut spans);
        }
        if kinds.contains(&Kind::AwsKey) {
            aws_keys(s, &mut spans);
        }
        if kinds.contains(&Kind::Bearer) {
            bearers(s, &mut spans);
        }
        if kinds.contains(&Kind::Card) || kinds.contains(&Kind::Phone) {
            numbers(s, kinds, &mut spans);
        }
        if spans.is_empty() {
            return None;
        }
        // Earliest first, the longest of those starting together; overlaps dropped.
        spans.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        let mut out = String::with_capacity(text.len());
        let mut done = 0;
        for (start, end, kind) in spans {
            if start < done {
                continue;
            }
            out.push_str(text.get(done..start).unwrap_or_default());
            out.push_str(&self.config.replacement.replace("{kind}", kind.name()));
            done = end;
        }
        out.push_str(text.get(done..).unwrap_or_default());
        Some(out)
    }

    /// Redacts every string in `value` in place; whether any changed.
    fn redact_strings(&self, value: &mut Value) -> bool {
        match value {
            Value::String(s) => match self.redact(s) {
                Some(r) => {
                    *s = r;
                    true
                }
                None => false,
            },
            Value::Array(items) => items
                .iter_mut()
                .fold(false, |c, v| self.redact_strings(v) | c),
            Value::Object(map) => map
                .values_mut()
                .fold(false, |c, v| self.redact_strings(v) | c),
            _ => false,
        }
    }
}

impl Plugin for Redact {
    const NAME: &'static str = "redact";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const HOOKS: &'static [Hook] = &[Hook::ToolPostInvoke];

    fn configure(&mut self, config: Value) -> Result<(), String> {
        self.config = mcpgw_plugin_sdk::config(config)?;
        Ok(())
    }

    fn tool_post_invoke(&mut self, _ctx: &Context, result: Payload<'_>) -> Action {
        // A result it cannot read is refused: it could hold what it redacts.
        let mut result = match result.try_value() {
            Ok(result) => result,
            Err(e) => {
                return Action::deny(
                    mcpgw_plugin_sdk::INTERNAL_ERROR,
                    format!("redact: result unreadable: {e}"),
                )
            }
        };
        let mut changed = false;
        if let Some(items) = result.get_mut("content").and_then(Value::as_array_mut) {
            for item in items
                .iter_mut()
                .filter(|i| i.get("type") == Some(&json!("text")))
            {
                if let Some(text) = item.get_mut("text") {
                    changed |= self.redact_strings(text);
                }
            }
        }
        if let Some(structured) = result.get_mut("structuredContent") {
            changed |= self.redact_strings(structured);
        }
        if changed {
            Action::Modify(result)
        } else {
            Action::Continue
        }
    }
}

export_plugin!(Redact);

#[cfg(test)]
mod tests {
    use super::*;

    fn r(text: &str) -> String {
        Redact::default()
            .redact(text)
            .unwrap_or_else(|| text.to_owned())
    }

    #[test]
    fn a_result_it_cannot_read_is_refused() {
        let ctx = Context::new(Hook::ToolPostInvoke, "tools/call", Some("echo"));
        let result = r#"{"content": [{"type": "text", "text": "mail bob@example.com \ud800"}]}"#;
        let action = Redact::default().tool_post_invoke(&ctx, Payload::from_json(result));
        assert!(
            matches!(&action, Action::Deny { code: -32603, message } if message.starts_with("redact: result unreadable: ")),
            "{action:?}"
        );
    }

    #[test]
    fn emails() {
        assert_eq!(
            r("mail bob.smith+x@example.co.uk."),
            "mail [redacted:email]."
        );
        assert_eq!(
            r("a@b.io, c_d@e-f.org"),
            "[redacted:email], [redacted:email]"
        );
        for keep in ["@handle", "a@localhost", "x@y.z1", "user@", "@@", "a@.com"] {
            assert_eq!(r(keep), keep);
        }
    }

    #[test]
    fn cards_need_luhn() {
        assert_eq!(r("card 4111 1111 1111 1111 ok"), "card [redacted:card] ok");
        assert_eq!(r("4111-1111-1111-1111"), "[redacted:card]");
        assert_eq!(r("5500005555555559"), "[redacted:card]");
        // Fails Luhn: kept (and not a phone: no separator, no +).
        assert_eq!(r("4111111111111112"), "4111111111111112");
        // Too long, or glued to letters: kept.
        assert_eq!(r("41111111111111111111111"), "41111111111111111111111");
        assert_eq!(r("id4111111111111111"), "id4111111111111111");
    }

    #[test]
    fn phones() {
        assert_eq!(r("call +1 555-123-4567 now"), "call [redacted:phone] now");
        assert_eq!(r("(555) 123-4567"), "[redacted:phone]");
        assert_eq!(r("+442079460958"), "[redacted:phone]");
        assert_eq!(r("tel: 020 7946 0958."), "tel: [redacted:phone].");
        for keep in [
            "2024-01-15 10:30",
            "1234567890",
            "v1.2.3",
            "3.14159265358979",
            "12 apples",
        ] {
            assert_eq!(r(keep), keep);
        }
    }

    #[test]
    fn aws_keys_and_bearer_tokens() {
        assert_eq!(r("key=AKIAIOSFODNN7EXAMPLE;"), "key=[redacted:aws-key];");
        assert_eq!(r("XAKIAIOSFODNN7EXAMPLE"), "XAKIAIOSFODNN7EXAMPLE");
        assert_eq!(r("AKIAIOSFODNN7EXAMPL"), "AKIAIOSFODNN7EXAMPL");
        assert_eq!(
            r("Authorization: Bearer eyJhbGciOi.J9.x-_y== done"),
            "Authorization: Bearer [redacted:bearer] done"
        );
        assert_eq!(r("bearer short"), "bearer short");
    }

    #[test]
    fn config_picks_kinds_and_replacement() {
        let mut p = Redact::default();
        p.configure(json!({"replacement": "<{kind}>", "kinds": ["email"]}))
            .unwrap();
        assert_eq!(
            p.redact("a@b.io +1 555 123 4567").unwrap(),
            "<email> +1 555 123 4567"
        );
        assert!(p.configure(json!({"kinds": ["ssn"]})).is_err());
    }

    #[test]
    fn result_text_and_structured_content() {
        let mut p = Redact::default();
        let ctx = Context::new(Hook::ToolPostInvoke, "tools/call", Some("lookup"));
        let result = json!({
            "content": [{"type": "text", "text": "mail a@b.io"}, {"type": "image", "data": "a@b.io"}],
            "structuredContent": {"who": ["x", {"mail": "c@d.org"}], "n": 4111111111111111u64},
            "isError": false,
        });
        assert_eq!(
            p.tool_post_invoke(&ctx, result.into()),
            Action::Modify(json!({
                "content": [{"type": "text", "text": "mail [redacted:email]"}, {"type": "image", "data": "a@b.io"}],
                "structuredContent": {"who": ["x", {"mail": "[redacted:email]"}], "n": 4111111111111111u64},
                "isError": false,
            }))
        );
        let clean = json!({"content": [{"type": "text", "text": "nothing here"}]});
        assert_eq!(p.tool_post_invoke(&ctx, clean.into()), Action::Continue);
    }

    #[test]
    fn non_ascii_text_is_safe() {
        assert_eq!(r("é a@b.io ü"), "é [redacted:email] ü");
        assert_eq!(r("日本@例え.jp"), "日本@例え.jp");
    }
}
