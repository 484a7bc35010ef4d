//! Header lookup (contract section 1), done in one pass over the request's
//! headers for every name any rule reads.

use alloc::borrow::Cow;
use alloc::string::String;

use crate::broken_invariant;
use crate::text::{eq_lower_word, trim};

/// The headers the rules read, in slot order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Name {
    SessionId,
    ProtocolVersion,
    Accept,
    ContentType,
    Origin,
    Host,
    LastEventId,
    McpMethod,
    McpName,
    RequestMethod,
    RequestHeaders,
}

impl Name {
    /// Every name, in slot order (the compact head's header codes are
    /// indices into this list: docs/edge-contract.md section 16).
    pub const ALL: [Name; 11] = [
        Name::SessionId,
        Name::ProtocolVersion,
        Name::Accept,
        Name::ContentType,
        Name::Origin,
        Name::Host,
        Name::LastEventId,
        Name::McpMethod,
        Name::McpName,
        Name::RequestMethod,
        Name::RequestHeaders,
    ];
}

/// One slot per `Name`: the last variant's index plus one.
const SLOTS: usize = Name::RequestHeaders as usize + 1;

/// Which slot a received header name feeds: its ASCII-lowercase must equal
/// the slot's name. Dispatch on the length first: most headers a request
/// carries (user-agent, cookie, ...) are rejected by one comparison.
fn slot(name: &str) -> Option<Name> {
    let is = |lower: &str| eq_lower_word(name, lower);
    let found = match name.len() {
        4 if is("host") => Name::Host,
        6 if is("accept") => Name::Accept,
        6 if is("origin") => Name::Origin,
        8 if is("mcp-name") => Name::McpName,
        10 if is("mcp-method") => Name::McpMethod,
        12 if is("content-type") => Name::ContentType,
        13 if is("last-event-id") => Name::LastEventId,
        14 if is("mcp-session-id") => Name::SessionId,
        20 if is("mcp-protocol-version") => Name::ProtocolVersion,
        29 if is("access-control-request-method") => Name::RequestMethod,
        30 if is("access-control-request-headers") => Name::RequestHeaders,
        _ => return None,
    };
    Some(found)
}

/// The value of `get(name)` for every name the rules read: `None` when
/// absent, else the trimmed values joined with `", "`. A single occurrence
/// borrows from the request; only duplicates allocate.
#[derive(Debug, Default)]
pub struct Headers<'a> {
    values: [Option<Cow<'a, str>>; SLOTS],
}

impl<'a> Headers<'a> {
    pub fn collect<I>(headers: I) -> Self
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let mut out = Headers::default();
        for (name, value) in headers {
            out.add(name, Cow::Borrowed(value));
        }
        out
    }

    /// Records one received header (ignored unless a rule reads it).
    pub fn add(&mut self, name: &str, value: Cow<'a, str>) {
        let Some(name) = slot(name) else { return };
        let value = match value {
            Cow::Borrowed(v) => Cow::Borrowed(trim(v)),
            Cow::Owned(v) => Cow::Owned(String::from(trim(&v))),
        };
        let entry = self.slot(name);
        match entry {
            None => *entry = Some(value),
            Some(joined) => {
                let joined = joined.to_mut();
                joined.push_str(", ");
                joined.push_str(&value);
            }
        }
    }

    pub fn get(&self, name: Name) -> Option<&str> {
        match self.values.get(name as usize) {
            Some(value) => value.as_deref(),
            None => broken_invariant("headers: a Name past SLOTS"),
        }
    }

    /// Sets the value of `get(name)` as the host already computed it (the
    /// compact head carries each name's combined, trimmed value once).
    /// False when the name already has a value.
    pub fn set(&mut self, name: Name, value: &'a str) -> bool {
        let entry = self.slot(name);
        if entry.is_some() {
            return false;
        }
        *entry = Some(Cow::Borrowed(value));
        true
    }

    /// Moves a value out, for fields the context reports as they are.
    pub fn take(&mut self, name: Name) -> Option<Cow<'a, str>> {
        self.slot(name).take()
    }

    fn slot(&mut self, name: Name) -> &mut Option<Cow<'a, str>> {
        match self.values.get_mut(name as usize) {
            Some(value) => value,
            None => broken_invariant("headers: a Name past SLOTS"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_trims_and_joins() {
        let h = Headers::collect([
            ("MCP-Session-Id", " a\t"),
            ("x-other", "zzz"),
            ("mcp-session-id", "b"),
            ("Accept", ""),
        ]);
        assert_eq!(h.get(Name::SessionId), Some("a, b"));
        assert_eq!(h.get(Name::Accept), Some(""));
        assert_eq!(h.get(Name::Origin), None);
    }

    #[test]
    fn names_are_ascii_case_insensitive_only() {
        // U+212A KELVIN SIGN lower-cases to `k` in Unicode, not in ASCII.
        let h = Headers::collect([("\u{212a}ost", "x"), ("hoſt", "y")]);
        assert_eq!(h.get(Name::Host), None);
        let h = Headers::collect([("HOST", "x")]);
        assert_eq!(h.get(Name::Host), Some("x"));
    }

    #[test]
    fn all_names() {
        let names = [
            ("mcp-session-id", Name::SessionId),
            ("mcp-protocol-version", Name::ProtocolVersion),
            ("accept", Name::Accept),
            ("content-type", Name::ContentType),
            ("origin", Name::Origin),
            ("host", Name::Host),
            ("last-event-id", Name::LastEventId),
            ("mcp-method", Name::McpMethod),
            ("mcp-name", Name::McpName),
            ("access-control-request-method", Name::RequestMethod),
            ("access-control-request-headers", Name::RequestHeaders),
        ];
        for (text, name) in names {
            assert_eq!(slot(text), Some(name));
            assert_eq!(slot(&text.to_ascii_uppercase()), Some(name));
        }
    }
}
