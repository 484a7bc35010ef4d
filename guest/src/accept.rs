//! Accept negotiation for JSON and SSE (contract section 6).

use crate::text::{eq_lower_word, is_token, slice, trim};

/// Splits on `delim` outside quoted strings. A quoted string runs from `"`
/// to the next unescaped `"` (inside it `\` escapes the next character) or
/// to the end. All delimiters are ASCII, so every cut is a char boundary;
/// skipping one byte after `\` is harmless even before a multi-byte
/// character, whose other bytes are never ASCII.
struct SplitOutsideQuotes<'s> {
    rest: Option<&'s str>,
    delim: u8,
}

fn split_outside_quotes(s: &str, delim: u8) -> SplitOutsideQuotes<'_> {
    SplitOutsideQuotes {
        rest: Some(s),
        delim,
    }
}

impl<'s> Iterator for SplitOutsideQuotes<'s> {
    type Item = &'s str;

    fn next(&mut self) -> Option<&'s str> {
        let s = self.rest?;
        let bytes = s.as_bytes();
        // The delimiter at `i` (ASCII): the part before it, the rest after.
        let mut cut = |i: usize| {
            self.rest = Some(slice(s, i + 1..));
            Some(slice(s, ..i))
        };
        // Most values have no quotes: look for the delimiter or a quote
        // first, and run the quote-aware scan only from a quote on.
        let mut i = bytes
            .iter()
            .position(|&b| b == self.delim || b == b'"')
            .unwrap_or(bytes.len());
        if bytes.get(i) == Some(&self.delim) {
            return cut(i);
        }
        let mut quoted = false;
        while let Some(&b) = bytes.get(i) {
            if quoted {
                if b == b'\\' {
                    i += 2;
                    continue;
                }
                if b == b'"' {
                    quoted = false;
                }
            } else if b == b'"' {
                quoted = true;
            } else if b == self.delim {
                return cut(i);
            }
            i += 1;
        }
        self.rest = None;
        Some(s)
    }
}

/// A qvalue in thousandths: `0` optionally followed by `.` and up to three
/// digits, or `1` optionally followed by `.` and up to three `0`s.
fn qvalue(s: &str) -> Option<u16> {
    let (int, frac) = match s.split_once('.') {
        Some((int, frac)) => (int, frac),
        None => (s, ""),
    };
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match int {
        "0" => Some(
            frac.bytes()
                .chain(core::iter::repeat(b'0'))
                .take(3)
                .fold(0u16, |w, d| w * 10 + u16::from(d - b'0')),
        ),
        "1" if frac.bytes().all(|b| b == b'0') => Some(1000),
        _ => None,
    }
}

/// How a media range matches a target: 3 exact, 2 `type/*`, 1 `*/*`.
fn specificity(ty: &str, sub: &str, target_ty: &str, target_sub: &str) -> u8 {
    if eq_lower_word(ty, target_ty) {
        if eq_lower_word(sub, target_sub) {
            3
        } else if sub == "*" {
            2
        } else {
            0
        }
    } else if ty == "*" && sub == "*" {
        1
    } else {
        0
    }
}

/// The best match so far for one target: highest specificity, then the
/// highest weight among the elements of that specificity.
#[derive(Default, Clone, Copy)]
struct Best {
    specificity: u8,
    weight: u16,
}

impl Best {
    fn offer(&mut self, specificity: u8, weight: u16) {
        if specificity > self.specificity {
            *self = Best {
                specificity,
                weight,
            };
        } else if specificity == self.specificity && weight > self.weight {
            self.weight = weight;
        }
    }

    fn acceptable(self) -> bool {
        self.specificity > 0 && self.weight > 0
    }
}

/// One element: its media range (type, subtype) and weight, or `None` when
/// the element is skipped. The range is compared case-insensitively instead
/// of being lower-cased (same result, no allocation).
fn element(elem: &str) -> Option<(&str, &str, u16)> {
    let mut parts = split_outside_quotes(elem, b';');
    let range = trim(parts.next()?);
    let (ty, sub) = range.split_once('/')?;
    if !is_token(ty) || !is_token(sub) {
        return None;
    }
    let mut weight = 1000;
    for part in parts {
        let Some((name, value)) = trim(part).split_once('=') else {
            continue;
        };
        if !trim(name).eq_ignore_ascii_case("q") {
            continue;
        }
        weight = qvalue(trim(value))?; // a bad qvalue skips the element
        break; // the first `q` wins
    }
    Some((ty, sub, weight))
}

/// `(accept-json, accept-sse)` for the value of `get("accept")`.
pub fn accepts(value: Option<&str>) -> (bool, bool) {
    let Some(value) = value else {
        return (false, false);
    };
    let mut json = Best::default();
    let mut sse = Best::default();
    for elem in split_outside_quotes(value, b',') {
        if let Some((ty, sub, weight)) = element(elem) {
            json.offer(specificity(ty, sub, "application", "json"), weight);
            sse.offer(specificity(ty, sub, "text", "event-stream"), weight);
        }
    }
    (json.acceptable(), sse.acceptable())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acc(v: &str) -> (bool, bool) {
        accepts(Some(v))
    }

    #[test]
    fn absent_and_basic() {
        assert_eq!(accepts(None), (false, false));
        assert_eq!(acc(""), (false, false));
        assert_eq!(acc("application/json"), (true, false));
        assert_eq!(acc("text/event-stream"), (false, true));
        assert_eq!(acc("application/json, text/event-stream"), (true, true));
        assert_eq!(acc("*/*"), (true, true));
        assert_eq!(acc("application/*"), (true, false));
        assert_eq!(acc("text/*"), (false, true));
        assert_eq!(acc("*/json"), (false, false));
        assert_eq!(acc("APPLICATION/JSON"), (true, false));
        assert_eq!(acc("Text/Event-Stream"), (false, true));
    }

    #[test]
    fn weights_and_specificity() {
        assert_eq!(acc("*/*, application/json;q=0"), (false, true));
        assert_eq!(acc("application/json;q=0, */*"), (false, true));
        assert_eq!(acc("application/*;q=0, application/json"), (true, false));
        assert_eq!(
            acc("application/json;q=0, application/json;q=0.1"),
            (true, false)
        );
        assert_eq!(acc("application/json;q=0.000"), (false, false));
        assert_eq!(acc("application/json;q=0.001"), (true, false));
        assert_eq!(acc("*/*;q=0, text/*"), (false, true));
        assert_eq!(acc("text/*;q=0, */*"), (true, false));
    }

    #[test]
    fn qvalues() {
        assert_eq!(qvalue("0"), Some(0));
        assert_eq!(qvalue("0."), Some(0));
        assert_eq!(qvalue("0.5"), Some(500));
        assert_eq!(qvalue("0.05"), Some(50));
        assert_eq!(qvalue("0.123"), Some(123));
        assert_eq!(qvalue("1"), Some(1000));
        assert_eq!(qvalue("1."), Some(1000));
        assert_eq!(qvalue("1.000"), Some(1000));
        for bad in [
            "", ".", ".5", "0.1234", "1.001", "1.0000", "2", "01", "0,5", "-0", "0.a", "1e0",
            "\"0.5\"", "0.５",
        ] {
            assert_eq!(qvalue(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn parameters() {
        // A bad qvalue skips the element.
        assert_eq!(acc("application/json;q=2"), (false, false));
        assert_eq!(acc("application/json;q=2, */*"), (true, true));
        // The first q wins; later ones are not even checked.
        assert_eq!(acc("application/json;q=0;q=1"), (false, false));
        assert_eq!(acc("application/json;q=1;q=bad"), (true, false));
        // Parameters without `=` and other names are ignored.
        assert_eq!(acc("application/json;foo;bar=baz;Q = 0"), (false, false));
        assert_eq!(acc("application/json; charset=utf-8"), (true, false));
        // Parts are trimmed, names lower-cased.
        assert_eq!(acc(" application/json ;\tQ=0.5 "), (true, false));
        // A quoted q value is not a qvalue.
        assert_eq!(acc("application/json;q=\"0.5\""), (false, false));
    }

    #[test]
    fn quoting() {
        // Commas and semicolons inside quotes do not split.
        assert_eq!(acc("application/json;x=\"a,b;q=0\""), (true, false));
        assert_eq!(
            acc("application/json;x=\"a\\\",q=0\", text/event-stream"),
            (true, true)
        );
        // An unterminated quote runs to the end.
        assert_eq!(
            acc("application/json;x=\"a, text/event-stream"),
            (true, false)
        );
        // A quote inside the range makes the range invalid.
        assert_eq!(
            acc("appli\"cation/json, text/event-stream\""),
            (false, false)
        );
        // Backslash outside quotes is plain text: the `"` after it opens a
        // quoted string that swallows the rest.
        assert_eq!(
            acc("text/event-stream;a=\\\", application/json"),
            (false, true)
        );
        // Escape before a multi-byte character.
        assert_eq!(
            acc("text/event-stream;a=\"\\é\", application/json"),
            (true, true)
        );
        assert_eq!(acc("text/event-stream;a=\"\\"), (false, true));
    }

    #[test]
    fn ranges_must_be_tokens() {
        assert_eq!(acc("application/json/x"), (false, false));
        assert_eq!(acc("application /json"), (false, false));
        assert_eq!(acc("/json"), (false, false));
        assert_eq!(acc("application/"), (false, false));
        assert_eq!(acc("applicatiön/json, */*;q=0"), (false, false));
        assert_eq!(acc(",,, application/json ,"), (true, false));
    }
}
