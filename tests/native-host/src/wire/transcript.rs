//! Transcripts: what a scenario read, as lines, with everything random or
//! time-dependent replaced by stable placeholders so two gateways can be compared.
//!
//! Replaced: the `date`, `server` and `x-request-id` header values (a request id
//! is random unless the client sent one); the gateway's port; the
//! values of captured variables (`<sid>`); any other 43-character URL-safe
//! token (`<id-1>`, `<id-2>`: session ids are 256 random bits in base64); the
//! stream part of SSE event ids `<stream>_<n>` (`<S1>_3`, numbered by first
//! appearance, so "same stream" is still visible).

use std::collections::BTreeMap;

use super::http::{Item, SseEvent};
use super::ws;

#[derive(Default)]
pub struct Normalizer {
    port: String,
    known: Vec<(String, String)>,
    tokens: BTreeMap<String, String>,
    streams: BTreeMap<String, String>,
}

/// Longest body text kept in a transcript line.
const MAX_TEXT: usize = 4000;
/// Length of `secrets.token_urlsafe(32)`.
const TOKEN_LEN: usize = 43;

impl Normalizer {
    pub fn new(port: u16) -> Self {
        Normalizer {
            port: port.to_string(),
            ..Default::default()
        }
    }

    /// A captured variable: its value reads `<name>` from now on.
    pub fn learn(&mut self, name: &str, value: &str) {
        if value.len() >= 6 {
            self.known.push((value.to_string(), format!("<{name}>")));
            // Longest first, so a value containing another is replaced whole.
            self.known.sort_by_key(|(v, _)| std::cmp::Reverse(v.len()));
        }
    }

    pub fn text(&mut self, line: &str) -> String {
        let mut out = line.to_string();
        for (value, name) in &self.known {
            if out.contains(value.as_str()) {
                out = out.replace(value.as_str(), name);
            }
        }
        for host in ["127.0.0.1:", "localhost:"] {
            out = out.replace(&format!("{host}{}", self.port), &format!("{host}<port>"));
        }
        self.tokens_in(&out)
    }

    fn tokens_in(&mut self, text: &str) -> String {
        let is_tok = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        let mut out = String::with_capacity(text.len());
        let mut run = String::new();
        for c in text.chars().chain(std::iter::once('\0')) {
            if is_tok(c) {
                run.push(c);
                continue;
            }
            if run.len() == TOKEN_LEN {
                let next = self.tokens.len() + 1;
                let name = self
                    .tokens
                    .entry(run.clone())
                    .or_insert_with(|| format!("<id-{next}>"));
                out.push_str(name);
            } else {
                out.push_str(&run);
            }
            run.clear();
            if c != '\0' {
                out.push(c);
            }
        }
        out
    }

    pub fn event_id(&mut self, id: &str) -> String {
        match id.rsplit_once('_') {
            Some((stream, seq)) if !seq.is_empty() && seq.bytes().all(|b| b.is_ascii_digit()) => {
                let next = self.streams.len() + 1;
                let name = self
                    .streams
                    .entry(stream.to_string())
                    .or_insert_with(|| format!("<S{next}>"));
                format!("{name}_{seq}")
            }
            _ => self.text(id),
        }
    }

    /// The transcript lines of one consumed item of connection `conn`.
    pub fn item(&mut self, conn: &str, item: &Item, comments: bool) -> Vec<String> {
        let p = format!("{conn} <");
        match item {
            Item::Head(h) => {
                let mut lines = vec![format!("{p} {} {} {}", h.version, h.status, h.reason)];
                for (name, value) in &h.headers {
                    let value = match name.as_str() {
                        "date" => "<date>".to_string(),
                        "server" => "<server>".to_string(),
                        "x-request-id" => "<request-id>".to_string(),
                        _ => self.text(value),
                    };
                    lines.push(format!("{p}   {name}: {value}"));
                }
                lines
            }
            Item::Body(body) => vec![format!("{p} body: {}", self.bytes(body))],
            Item::Event(e) => vec![format!("{p} event: {}", self.event(e))],
            Item::Comment(c) if comments => vec![format!("{p} comment: {}", self.text(c))],
            Item::Comment(_) => Vec::new(),
            Item::End => vec![format!("{p} end")],
            Item::Frame(f) => {
                let detail = match f.close_code() {
                    Some(code) => format!("{code} {}", self.bytes(&f.payload[2..])),
                    None => self.bytes(&f.payload),
                };
                let fin = if f.fin { "" } else { " (not fin)" };
                vec![format!("{p} ws {}{fin}: {detail}", ws::kind_name(f.opcode))]
            }
            Item::Malformed(why) => vec![format!("{p} malformed: {why}")],
            Item::Closed { reset: false } => vec![format!("{p} closed by server")],
            Item::Closed { reset: true } => vec![format!("{p} reset by server")],
        }
    }

    fn event(&mut self, e: &SseEvent) -> String {
        let mut parts = Vec::new();
        if let Some(id) = &e.id {
            parts.push(format!("id={}", self.event_id(id)));
        }
        if let Some(kind) = &e.event {
            parts.push(format!("event={kind}"));
        }
        if let Some(retry) = &e.retry {
            parts.push(format!("retry={retry}"));
        }
        if let Some(data) = &e.data {
            parts.push(format!("data={}", self.text(&escape(data))));
        }
        parts.join(" ")
    }

    fn bytes(&mut self, body: &[u8]) -> String {
        if body.is_empty() {
            return "(empty)".to_string();
        }
        let (text, note) = match std::str::from_utf8(body) {
            Ok(t) => (t.to_string(), String::new()),
            Err(_) => (
                String::from_utf8_lossy(body).into_owned(),
                " (not UTF-8)".to_string(),
            ),
        };
        let mut shown = escape(&text);
        if shown.len() > MAX_TEXT {
            let mut cut = MAX_TEXT;
            while !shown.is_char_boundary(cut) {
                cut -= 1;
            }
            shown = format!("{}… ({} bytes)", &shown[..cut], body.len());
        }
        format!("{}{note}", self.text(&shown))
    }
}

fn escape(text: &str) -> String {
    text.replace('\r', "\\r").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_stable() {
        let mut n = Normalizer::new(40123);
        let sid = "sL6-ZBukEl1khcP0VRgWj7QcHRAeoTRUvEBHJl9-Vxo";
        assert_eq!(n.text(&format!("a {sid} b {sid}")), "a <id-1> b <id-1>");
        n.learn("s", sid);
        assert_eq!(n.text(sid), "<s>");
        assert_eq!(
            n.text("http://127.0.0.1:40123/mcp"),
            "http://127.0.0.1:<port>/mcp"
        );
        assert_eq!(n.event_id("7_3"), "<S1>_3");
        assert_eq!(n.event_id("0_1"), "<S2>_1");
        assert_eq!(n.event_id("7_4"), "<S1>_4");
    }
}
