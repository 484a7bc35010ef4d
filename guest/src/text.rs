//! Text conventions of docs/edge-contract.md section 0.
//!
//! Every helper works on bytes where the rule only involves ASCII: a UTF-8
//! byte >= 0x80 never equals an ASCII byte, so byte-wise checks give the same
//! answer as code-point-wise ones, and slicing only ever happens at the
//! position of an ASCII byte (always a char boundary).

use alloc::string::String;

/// Trim: U+0020 and U+0009 from both ends, nothing else.
pub fn trim(s: &str) -> &str {
    s.trim_matches(|c| c == ' ' || c == '\t')
}

/// tchar: `!#$%&'*+-.^_`|~`, ASCII digits and letters.
pub fn is_tchar(b: u8) -> bool {
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

/// A token: one or more tchars.
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
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
    let mut digits = [0u8; 10];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    digits[i..].iter().map(|&d| d as char).collect()
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
    fn numbers() {
        assert_eq!(u32_text(0), "0");
        assert_eq!(u32_text(600), "600");
        assert_eq!(u32_text(u32::MAX), "4294967295");
    }
}
