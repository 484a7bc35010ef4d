//! Placeholders in the bytes a scenario writes (and in the values it expects).
//!
//! * `${name}`: a variable (built-in, from `[vars]`, or captured by an earlier step); a
//!   variable's value may itself contain placeholders;
//! * `${len:name}`, `${hexlen:name}`: the byte length of that variable's expanded value, in
//!   decimal (Content-Length) or hex (a chunk size);
//! * `${hex:0d0a ff}`: raw bytes (TOML strings are UTF-8; this is how invalid UTF-8 is written);
//! * `${repeat:N:text}`: `text` N times (`text` may hold placeholders, expanded once);
//! * `${body_length}`: the byte length of everything after the first `\r\n\r\n` of the same
//!   write, computed after every other placeholder is expanded;
//! * `$${`: a literal `${`.

use std::collections::BTreeMap;

pub type Vars = BTreeMap<String, String>;

enum Piece {
    Bytes(Vec<u8>),
    BodyLength,
}

/// Expands `template`; an unknown variable or a malformed placeholder is an error (a typo in
/// a scenario must not silently send something else).
pub fn expand(template: &str, vars: &Vars) -> Result<Vec<u8>, String> {
    expand_at(template, vars, 0)
}

/// Nested variables deeper than this are a loop.
const MAX_DEPTH: usize = 8;

fn expand_at(template: &str, vars: &Vars, depth: usize) -> Result<Vec<u8>, String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "variables nested more than {MAX_DEPTH} deep in {template:?}"
        ));
    }
    let mut pieces = Vec::new();
    let mut literal = Vec::new();
    let mut rest = template;
    while let Some(at) = rest.find('$') {
        literal.extend_from_slice(&rest.as_bytes()[..at]);
        let after = &rest[at..];
        if let Some(tail) = after.strip_prefix("$${") {
            literal.extend_from_slice(b"${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let end = closing_brace(tail)
                .ok_or_else(|| format!("unterminated placeholder in {template:?}"))?;
            let body = &tail[..end];
            if body == "body_length" {
                pieces.push(Piece::Bytes(std::mem::take(&mut literal)));
                pieces.push(Piece::BodyLength);
            } else {
                literal.extend(placeholder(body, vars, depth)?);
            }
            rest = &tail[end + 1..];
        } else {
            literal.push(b'$');
            rest = &after[1..];
        }
    }
    literal.extend_from_slice(rest.as_bytes());
    pieces.push(Piece::Bytes(literal));
    Ok(join(pieces))
}

/// Expands and requires UTF-8 (for header values, expected strings and the like).
pub fn expand_str(template: &str, vars: &Vars) -> Result<String, String> {
    String::from_utf8(expand(template, vars)?)
        .map_err(|_| format!("{template:?} does not expand to UTF-8 text"))
}

fn placeholder(body: &str, vars: &Vars, depth: usize) -> Result<Vec<u8>, String> {
    if let Some(name) = body.strip_prefix("len:") {
        let value = placeholder(name, vars, depth)?;
        return Ok(value.len().to_string().into_bytes());
    }
    if let Some(name) = body.strip_prefix("hexlen:") {
        let value = placeholder(name, vars, depth)?;
        return Ok(format!("{:x}", value.len()).into_bytes());
    }
    if let Some(hex) = body.strip_prefix("hex:") {
        return decode_hex(hex);
    }
    if let Some(spec) = body.strip_prefix("repeat:") {
        let (count, text) = spec
            .split_once(':')
            .ok_or_else(|| format!("${{repeat:N:text}} expected, got ${{{body}}}"))?;
        let count: usize = count
            .trim()
            .parse()
            .map_err(|_| format!("bad repeat count in ${{{body}}}"))?;
        return Ok(expand_at(text, vars, depth + 1)?.repeat(count));
    }
    match vars.get(body) {
        Some(v) if v.contains("${") => expand_at(v, vars, depth + 1),
        Some(v) => Ok(v.clone().into_bytes()),
        None => Err(format!(
            "unknown variable ${{{body}}} (known: {})",
            known(vars)
        )),
    }
}

/// The index of the `}` closing a placeholder whose body starts `tail` (nested `${...}` skipped).
fn closing_brace(tail: &str) -> Option<usize> {
    let bytes = tail.as_bytes();
    let mut depth = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

fn known(vars: &Vars) -> String {
    vars.keys().cloned().collect::<Vec<_>>().join(", ")
}

fn decode_hex(hex: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return Err(format!("odd number of hex digits in ${{hex:{hex}}}"));
    }
    digits
        .chunks(2)
        .map(|pair| {
            let text = std::str::from_utf8(pair).unwrap_or("zz");
            u8::from_str_radix(text, 16).map_err(|_| format!("bad hex {text:?} in ${{hex:{hex}}}"))
        })
        .collect()
}

fn join(pieces: Vec<Piece>) -> Vec<u8> {
    let without: Vec<u8> = pieces
        .iter()
        .flat_map(|p| match p {
            Piece::Bytes(b) => b.as_slice(),
            Piece::BodyLength => &[],
        })
        .copied()
        .collect();
    if !pieces.iter().any(|p| matches!(p, Piece::BodyLength)) {
        return without;
    }
    // The placeholder sits in the head, so the body's length does not depend on its own digits.
    let body_len = match find(&without, b"\r\n\r\n") {
        Some(at) => without.len() - at - 4,
        None => 0,
    };
    let digits = body_len.to_string().into_bytes();
    pieces
        .into_iter()
        .flat_map(|p| match p {
            Piece::Bytes(b) => b,
            Piece::BodyLength => digits.clone(),
        })
        .collect()
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders() {
        let mut vars = Vars::new();
        vars.insert("sid".into(), "abc".into());
        let out = expand("A ${sid} ${hex:ff 00} ${repeat:3:[} $${x} $5", &vars).unwrap();
        assert_eq!(out, b"A abc \xff\x00 [[[ ${x} $5");
        let req = expand(
            "POST / HTTP/1.1\r\nContent-Length: ${body_length}\r\n\r\nhello",
            &vars,
        );
        assert_eq!(
            req.unwrap(),
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
        );
        assert!(expand("${nope}", &vars).is_err());
        vars.insert("body".into(), "{\"s\":\"${sid}\"}".into());
        assert_eq!(
            expand("${len:body} ${body}", &vars).unwrap(),
            b"11 {\"s\":\"abc\"}"
        );
        assert_eq!(
            expand("${repeat:2:<${sid}>}", &vars).unwrap(),
            b"<abc><abc>"
        );
        vars.insert("loop".into(), "${loop}".into());
        assert!(expand("${loop}", &vars).is_err());
        assert!(expand("${hex:f}", &vars).is_err());
    }
}
