//! An incremental HTTP/1.1 response reader for raw sockets.
//!
//! Bytes go in as they arrive; what comes out is a list of self-contained
//! [`Item`]s (a response head, a whole non-SSE body, one SSE event, a WebSocket
//! frame, ...). Items do not depend on how the bytes were split by the network,
//! so a transcript built from them is the same however the server's writes
//! were coalesced: that is what makes two runs comparable.

use super::ws::{self, Frame};

/// One thing the server sent, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    Head(Head),
    /// A complete body of a response that is not `text/event-stream`.
    Body(Vec<u8>),
    Event(SseEvent),
    /// An SSE comment line (keepalives): timing-dependent, so counted but not recorded by default.
    Comment(String),
    /// The end of a response (after its body or its last event).
    End,
    Frame(Frame),
    /// The server sent something that is not HTTP; the rest of the connection is not parsed.
    Malformed(String),
    /// The server closed the connection (`reset`: with a RST).
    Closed {
        reset: bool,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Head {
    pub version: String,
    pub status: u16,
    pub reason: String,
    /// Names lowercased, in the order sent.
    pub headers: Vec<(String, String)>,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn is_sse(&self) -> bool {
        self.header("content-type").is_some_and(|v| {
            v.trim()
                .to_ascii_lowercase()
                .starts_with("text/event-stream")
        })
    }
}

/// One dispatched SSE block: any block with at least one field (a `retry`-only block counts).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: Option<String>,
    pub retry: Option<String>,
}

#[derive(Debug)]
enum State {
    Head,
    Fixed(usize),
    ChunkSize,
    ChunkData(usize),
    ChunkDataEnd,
    Trailers,
    UntilClose,
    WebSocket,
    Broken,
}

/// The reader for one connection.
#[derive(Debug)]
pub struct Parser {
    buf: Vec<u8>,
    state: State,
    sse: bool,
    body: Vec<u8>,
    line: Vec<u8>,
    event: SseEvent,
    event_has_field: bool,
}

impl Default for Parser {
    fn default() -> Self {
        Self::new()
    }
}

/// Header sections larger than this are not a response we want to keep reading.
const MAX_HEAD: usize = 1 << 20;

impl Parser {
    pub fn new() -> Self {
        Parser {
            buf: Vec::new(),
            state: State::Head,
            sse: false,
            body: Vec::new(),
            line: Vec::new(),
            event: SseEvent::default(),
            event_has_field: false,
        }
    }

    /// Feeds bytes; returns the items they complete.
    pub fn feed(&mut self, data: &[u8]) -> Vec<Item> {
        self.buf.extend_from_slice(data);
        let mut items = Vec::new();
        while self.step(&mut items) {}
        items
    }

    /// The server closed the connection: an until-close body ends here, anything else half
    /// read is reported.
    pub fn eof(&mut self, reset: bool) -> Vec<Item> {
        let mut items = Vec::new();
        match self.state {
            State::UntilClose => {
                let rest = std::mem::take(&mut self.buf);
                self.body_bytes(&rest, &mut items);
                self.end_body(&mut items);
            }
            State::Head if self.buf.is_empty() => {}
            State::WebSocket | State::Broken => {}
            _ => items.push(Item::Malformed(format!(
                "connection ended inside a response ({} bytes unparsed)",
                self.buf.len()
            ))),
        }
        self.state = State::Broken;
        items.push(Item::Closed { reset });
        items
    }

    /// One parsing step; false when more bytes are needed.
    fn step(&mut self, items: &mut Vec<Item>) -> bool {
        match self.state {
            State::Broken => {
                self.buf.clear();
                false
            }
            State::Head => self.head(items),
            State::Fixed(left) => {
                if self.buf.is_empty() {
                    return false;
                }
                let take = left.min(self.buf.len());
                let chunk: Vec<u8> = self.buf.drain(..take).collect();
                self.body_bytes(&chunk, items);
                if take == left {
                    self.end_body(items);
                } else {
                    self.state = State::Fixed(left - take);
                }
                true
            }
            State::ChunkSize => {
                let Some(line) = self.take_line() else {
                    return false;
                };
                let size = line.split(|&b| b == b';').next().unwrap_or(&[]);
                let size = std::str::from_utf8(size)
                    .ok()
                    .and_then(|s| usize::from_str_radix(s.trim(), 16).ok());
                match size {
                    Some(0) => self.state = State::Trailers,
                    Some(n) => self.state = State::ChunkData(n),
                    None => self.broken(items, "bad chunk size line"),
                }
                true
            }
            State::ChunkData(left) => {
                if self.buf.is_empty() {
                    return false;
                }
                let take = left.min(self.buf.len());
                let chunk: Vec<u8> = self.buf.drain(..take).collect();
                self.body_bytes(&chunk, items);
                self.state = if take == left {
                    State::ChunkDataEnd
                } else {
                    State::ChunkData(left - take)
                };
                true
            }
            State::ChunkDataEnd => match self.take_line() {
                Some(line) if line.is_empty() => {
                    self.state = State::ChunkSize;
                    true
                }
                Some(_) => {
                    self.broken(items, "chunk not followed by CRLF");
                    true
                }
                None => false,
            },
            State::Trailers => match self.take_line() {
                Some(line) if line.is_empty() => {
                    self.end_body(items);
                    true
                }
                Some(_) => true, // trailer fields are not recorded
                None => false,
            },
            State::UntilClose => {
                let chunk = std::mem::take(&mut self.buf);
                self.body_bytes(&chunk, items);
                false
            }
            State::WebSocket => match ws::parse_frame(&self.buf) {
                Ok(Some((frame, used))) => {
                    self.buf.drain(..used);
                    items.push(Item::Frame(frame));
                    true
                }
                Ok(None) => false,
                Err(why) => {
                    self.broken(items, &why);
                    true
                }
            },
        }
    }

    fn head(&mut self, items: &mut Vec<Item>) -> bool {
        let Some(end) = super::template::find(&self.buf, b"\r\n\r\n") else {
            if self.buf.len() > MAX_HEAD {
                self.broken(items, "response head over 1 MiB");
                return true;
            }
            return false;
        };
        let raw: Vec<u8> = self.buf.drain(..end + 4).collect();
        let text = String::from_utf8_lossy(&raw[..end]).into_owned();
        let mut lines = text.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or("").to_string();
        let status = parts.next().and_then(|s| s.parse::<u16>().ok());
        let reason = parts.next().unwrap_or("").to_string();
        let Some(status) = status.filter(|_| version.starts_with("HTTP/")) else {
            self.broken(items, &format!("not an HTTP status line: {status_line:?}"));
            return true;
        };
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let head = Head {
            version,
            status,
            reason,
            headers,
        };
        self.sse = head.is_sse();
        self.body.clear();
        self.line.clear();
        self.event = SseEvent::default();
        self.event_has_field = false;
        let chunked = head
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let length = head
            .header("content-length")
            .and_then(|v| v.parse::<usize>().ok());
        self.state = match status {
            101 => State::WebSocket,
            100..=199 => State::Head,
            204 | 304 => State::Fixed(0),
            _ if chunked => State::ChunkSize,
            _ => match length {
                Some(n) => State::Fixed(n),
                None => State::UntilClose,
            },
        };
        let interim = (100..200).contains(&status) && status != 101;
        items.push(Item::Head(head));
        if matches!(self.state, State::Fixed(0)) && !interim {
            self.end_body(items);
        }
        true
    }

    fn take_line(&mut self) -> Option<Vec<u8>> {
        let at = super::template::find(&self.buf, b"\r\n")?;
        let line: Vec<u8> = self.buf.drain(..at + 2).take(at).collect();
        Some(line)
    }

    fn broken(&mut self, items: &mut Vec<Item>, why: &str) {
        items.push(Item::Malformed(why.to_string()));
        self.state = State::Broken;
    }

    fn body_bytes(&mut self, chunk: &[u8], items: &mut Vec<Item>) {
        if !self.sse {
            self.body.extend_from_slice(chunk);
            return;
        }
        for &b in chunk {
            if b == b'\n' {
                let mut line = std::mem::take(&mut self.line);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                self.sse_line(&line, items);
            } else {
                self.line.push(b);
            }
        }
    }

    fn sse_line(&mut self, line: &[u8], items: &mut Vec<Item>) {
        let text = String::from_utf8_lossy(line);
        if text.is_empty() {
            if self.event_has_field {
                items.push(Item::Event(std::mem::take(&mut self.event)));
            }
            self.event_has_field = false;
            return;
        }
        if let Some(comment) = text.strip_prefix(':') {
            items.push(Item::Comment(comment.trim_start().to_string()));
            return;
        }
        let (name, value) = match text.split_once(':') {
            Some((n, v)) => (n.to_string(), v.strip_prefix(' ').unwrap_or(v).to_string()),
            None => (text.to_string(), String::new()),
        };
        self.event_has_field = true;
        match name.as_str() {
            "id" => self.event.id = Some(value),
            "event" => self.event.event = Some(value),
            "retry" => self.event.retry = Some(value),
            "data" => {
                self.event.data = Some(match self.event.data.take() {
                    Some(prev) => prev + "\n" + &value,
                    None => value,
                })
            }
            _ => {} // unknown fields are ignored, as the SSE spec says
        }
    }

    fn end_body(&mut self, items: &mut Vec<Item>) {
        if self.sse {
            if !self.line.is_empty() || self.event_has_field {
                items.push(Item::Malformed(
                    "SSE stream ended inside an event".to_string(),
                ));
            }
        } else {
            items.push(Item::Body(std::mem::take(&mut self.body)));
        }
        items.push(Item::End);
        self.sse = false;
        self.state = State::Head;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(parts: &[&[u8]]) -> Vec<Item> {
        let mut p = Parser::new();
        let mut items = Vec::new();
        for part in parts {
            items.extend(p.feed(part));
        }
        items
    }

    #[test]
    fn split_anywhere_gives_the_same_items() {
        let wire: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n\
            10\r\nid: 1_0\ndata: \n\n\r\n1e\r\nevent: message\ndata: {\"a\":1}\n\n\r\n0\r\n\r\n\
            HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n";
        let whole = all(&[wire]);
        for cut in 1..wire.len() {
            assert_eq!(all(&[&wire[..cut], &wire[cut..]]), whole, "cut at {cut}");
        }
        let bytewise: Vec<&[u8]> = wire.chunks(1).collect();
        assert_eq!(all(&bytewise), whole);
        assert_eq!(
            whole.iter().filter(|i| matches!(i, Item::Event(_))).count(),
            2
        );
        assert_eq!(whole.iter().filter(|i| matches!(i, Item::End)).count(), 2);
    }

    #[test]
    fn body_until_close() {
        let mut p = Parser::new();
        let mut items = p.feed(b"HTTP/1.1 400 Bad Request\r\n\r\nnope");
        items.extend(p.eof(false));
        assert_eq!(
            items[1..],
            [
                Item::Body(b"nope".to_vec()),
                Item::End,
                Item::Closed { reset: false }
            ]
        );
    }
}
