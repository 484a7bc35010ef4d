//! Text conventions of docs/edge-contract.md section 0.
//!
//! Every helper works on bytes where the rule only involves ASCII: a UTF-8
//! byte >= 0x80 never equals an ASCII byte, so byte-wise checks give the same
//! answer as code-point-wise ones, and slicing only ever happens at the
//! position of an ASCII byte (always a char boundary).

use alloc::string::String;
use core::slice::SliceIndex;

use crate::broken_invariant;

/// `&s[range]` for a range whose ends the caller found next to ASCII bytes
/// (or at the ends of `s`), so always char boundaries within `s`: anything
/// else is a broken invariant, never an empty string in its place.
pub fn slice<R: SliceIndex<str, Output = str>>(s: &str, range: R) -> &str {
    match s.get(range) {
        Some(part) => part,
        None => broken_invariant("text::slice: a range off a char boundary or past the end"),
    }
}

/// Trim: U+0020 and U+0009 from both ends, nothing else.
pub fn trim(s: &str) -> &str {
    // Byte-wise: cutting next to an ASCII byte keeps char boundaries.
    let bytes = s.as_bytes();
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !blank(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !blank(b))
        .map_or(start, |i| i + 1);
    slice(s, start..end)
}

/// tchar: `!#$%&'*+-.^_`|~`, ASCII digits and letters.
pub const fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// `is_tchar` by byte value: one load per byte instead of a chain of tests.
#[expect(
    clippy::indexing_slicing,
    reason = "evaluated at compile time, where an out-of-bounds index is a build error"
)]
const TCHARS: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = is_tchar(b as u8);
        b += 1;
    }
    table
};

/// A token: one or more tchars.
pub fn is_token(s: &str) -> bool {
    #[expect(
        clippy::indexing_slicing,
        reason = "a u8 always indexes a [_; 256] (no bounds check is emitted)"
    )]
    let tchar = |b: u8| TCHARS[usize::from(b)];
    !s.is_empty() && s.bytes().all(tchar)
}

/// Visible ASCII: U+0021..U+007E.
pub fn is_visible_ascii(s: &str) -> bool {
    s.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

/// ASCII unreserved (RFC 3986): letters, digits, `-`, `.`, `_`, `~`.
pub fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// `ascii_lowercase(value) == lower`, without allocating. `lower` is compared
/// as is: an upper-case byte in it never matches (unlike
/// `eq_ignore_ascii_case`, which would lower-case both sides).
pub fn eq_lower(value: &str, lower: &str) -> bool {
    value.len() == lower.len()
        && value
            .bytes()
            .zip(lower.bytes())
            .all(|(v, l)| v.to_ascii_lowercase() == l)
}

/// Up to eight bytes, zero-padded to eight.
fn padded(bytes: &[u8]) -> [u8; 8] {
    let mut word = [0u8; 8];
    for (w, b) in word.iter_mut().zip(bytes) {
        *w = *b;
    }
    word
}

/// `eq_lower(name, lower)` eight bytes at a time (byte loops dominate the
/// cost of short comparisons), for a `lower` made of `a-z` and bytes below
/// 0x40 only (`-`, `/`, digits ...), such as the names the rules look for.
/// There a byte is a letter exactly when its 0x40 bit is set, and a byte
/// `v` matches the letter `l` in either case exactly when `v | 0x20 == l`;
/// other bytes must be equal.
pub fn eq_lower_word(name: &str, lower: &str) -> bool {
    let (mut v, mut l) = (name.as_bytes(), lower.as_bytes());
    if v.len() != l.len() {
        return false;
    }
    loop {
        let (vw, lw) = match (v.split_first_chunk::<8>(), l.split_first_chunk::<8>()) {
            (Some((vc, vr)), Some((lc, lr))) => {
                (v, l) = (vr, lr);
                (*vc, *lc)
            }
            _ => {
                // The tail (equal lengths), zero-padded alike.
                let (vc, lc) = (padded(v), padded(l));
                (v, l) = (&[], &[]);
                (vc, lc)
            }
        };
        let (vw, lw) = (u64::from_le_bytes(vw), u64::from_le_bytes(lw));
        let letters = (lw & 0x4040_4040_4040_4040) >> 1;
        if vw | letters != lw {
            return false;
        }
        if v.is_empty() {
            return true;
        }
    }
}

/// `items` joined with `sep` (`[T]::join` links a generic copy routine).
pub fn join<S: AsRef<str>>(items: &[S], sep: &str) -> String {
    let mut out = String::new();
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(sep);
        }
        out.push_str(item.as_ref());
    }
    out
}

/// Decimal text of a number without the `core::fmt` machinery.
pub fn u32_text(mut n: u32) -> String {
    // Ten places hold u32::MAX; filled from the right.
    let mut digits = [0u8; 10];
    let mut first = digits.len();
    for (i, d) in digits.iter_mut().enumerate().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
        first = i;
        if n == 0 {
            break;
        }
    }
    digits.iter().skip(first).map(|&d| char::from(d)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trim_only_space_and_tab() {
        assert_eq!(trim(" \t a b \t "), "a b");
        assert_eq!(trim("\n a \r"), "\n a \r");
        assert_eq!(trim("\u{a0}a\u{a0}"), "\u{a0}a\u{a0}");
        assert_eq!(trim("   "), "");
    }

    #[test]
    fn token_table() {
        for b in 0..=255u8 {
            assert_eq!(TCHARS[usize::from(b)], is_tchar(b), "{b}");
        }
    }

    #[test]
    fn tokens() {
        assert!(is_token("application"));
        assert!(is_token("!#$%&'*+-.^_`|~09azAZ"));
        assert!(!is_token(""));
        assert!(!is_token("a/b"));
        assert!(!is_token("a b"));
        assert!(!is_token("é"));
        assert!(!is_token("a\"b"));
    }

    #[test]
    fn visible() {
        assert!(is_visible_ascii("!~azAZ09"));
        assert!(!is_visible_ascii("a b"));
        assert!(!is_visible_ascii("a\u{7f}"));
        assert!(!is_visible_ascii("é"));
    }

    #[test]
    fn lower_compare() {
        assert!(eq_lower("LocalHost", "localhost"));
        assert!(!eq_lower("localhost", "LocalHost"));
        // The Kelvin sign is not an ASCII letter.
        assert!(!eq_lower("\u{212a}", "k"));
        assert!(!eq_lower("É", "é"));
    }

    #[test]
    fn eq_lower_word_matches_eq_ignore_ascii_case() {
        let names = [
            "host",
            "accept",
            "mcp-name",
            "content-type",
            "access-control-request-headers",
            "application/json",
            "0123456789-./:;<=>?",
            "",
        ];
        for lower in names {
            for i in 0..lower.len() {
                for c in (0u8..128).map(char::from).chain(['é', '\u{212a}']) {
                    for base in [lower.to_string(), lower.to_ascii_uppercase()] {
                        let mut name: Vec<char> = base.chars().collect();
                        name[i] = c;
                        let name: String = name.into_iter().collect();
                        assert_eq!(
                            eq_lower_word(&name, lower),
                            name.eq_ignore_ascii_case(lower),
                            "{name:?} {lower:?}"
                        );
                    }
                }
            }
            assert!(eq_lower_word(lower, lower));
            assert!(eq_lower_word(&lower.to_ascii_uppercase(), lower));
        }
    }

    #[test]
    fn numbers() {
        assert_eq!(u32_text(0), "0");
        assert_eq!(u32_text(600), "600");
        assert_eq!(u32_text(u32::MAX), "4294967295");
    }
}
