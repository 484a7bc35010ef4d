//! One named raw TCP connection of a scenario.
//!
//! Bytes read go through the [`Parser`] into a queue of items; a read step takes items
//! from the queue one at a time until its condition holds and leaves the rest for the
//! next step. What a step consumes therefore does not depend on how the server's bytes
//! were split or coalesced, only on what was sent.

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{sleep, timeout, Instant};

use super::http::{Head, Item, Parser, SseEvent};
use super::scenario::Until;
use super::ws::Frame;

/// What a connection has consumed of one response.
#[derive(Debug, Default)]
pub struct Seen {
    pub head: Option<Head>,
    pub body: Option<Vec<u8>>,
    pub events: Vec<SseEvent>,
    pub comments: usize,
    pub frames: Vec<Frame>,
    pub complete: bool,
}

pub struct Conn {
    stream: Option<TcpStream>,
    parser: Parser,
    queue: VecDeque<Item>,
    /// The server's side is finished (EOF or reset seen by the socket).
    eof: bool,
    /// Consumed responses (interim 1xx heads are not kept here).
    pub seen: Vec<Seen>,
    /// The consumer saw the server close the connection (FIN or RST).
    pub closed: Option<bool>,
    /// Statuses of interim (1xx) heads consumed, such as 100 Continue.
    pub interim: Vec<u16>,
}

/// Why a read step stopped.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ReadEnd {
    Satisfied,
    TimedOut,
    /// The connection ended before the condition held.
    Ended,
}

impl Conn {
    pub async fn connect(
        addr: SocketAddr,
        recv_buffer: Option<u32>,
        source: Option<Ipv4Addr>,
    ) -> std::io::Result<Conn> {
        let socket = TcpSocket::new_v4()?;
        if let Some(size) = recv_buffer {
            socket.set_recv_buffer_size(size)?;
        }
        if let Some(ip) = source {
            socket.bind(SocketAddr::new(ip.into(), 0))?;
        }
        let stream = timeout(Duration::from_secs(10), socket.connect(addr))
            .await
            .map_err(|_| std::io::Error::new(ErrorKind::TimedOut, "connect timed out"))??;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream: Some(stream),
            parser: Parser::new(),
            queue: VecDeque::new(),
            eof: false,
            seen: Vec::new(),
            closed: None,
            interim: Vec::new(),
        })
    }

    fn stream(&mut self) -> std::io::Result<&mut TcpStream> {
        self.stream
            .as_mut()
            .ok_or_else(|| std::io::Error::new(ErrorKind::NotConnected, "closed by the client"))
    }

    /// Writes `bytes`, in `chunk`-sized pieces with `pause` between them if asked.
    pub async fn write(
        &mut self,
        bytes: &[u8],
        chunk: Option<usize>,
        pause: Duration,
        limit: Duration,
    ) -> std::io::Result<()> {
        let stream = self.stream()?;
        let size = chunk.unwrap_or(bytes.len()).max(1);
        let pieces: Vec<&[u8]> = if bytes.is_empty() {
            Vec::new()
        } else {
            bytes.chunks(size).collect()
        };
        let last = pieces.len().saturating_sub(1);
        for (i, piece) in pieces.into_iter().enumerate() {
            timeout(limit, stream.write_all(piece))
                .await
                .map_err(|_| std::io::Error::new(ErrorKind::TimedOut, "write timed out"))??;
            if i != last && !pause.is_zero() {
                sleep(pause).await;
            }
        }
        Ok(())
    }

    /// Half-close: FIN on our side, reading goes on.
    pub async fn shutdown_write(&mut self) -> std::io::Result<()> {
        self.stream()?.shutdown().await
    }

    /// Close with SO_LINGER 0: the kernel sends RST instead of FIN.
    pub fn reset(&mut self) -> std::io::Result<()> {
        if let Some(stream) = self.stream.take() {
            stream.set_zero_linger()?;
        }
        Ok(())
    }

    pub fn close(&mut self) {
        self.stream = None;
    }

    /// Reads until `until` holds for `count` items, the deadline passes, or the connection
    /// ends. Consumed items are returned in order (and applied to [`Conn::seen`]).
    pub async fn read(
        &mut self,
        until: Until,
        count: usize,
        idle: Duration,
        limit: Duration,
        rate: Option<u64>,
    ) -> (Vec<Item>, ReadEnd) {
        let deadline = Instant::now() + limit;
        let mut got = Vec::new();
        let mut n = 0;
        loop {
            while let Some(item) = self.queue.pop_front() {
                n += counts(until, &item) as usize;
                let closed = matches!(item, Item::Closed { .. });
                self.apply(&item);
                got.push(item);
                if until != Until::Idle && until != Until::Close && n >= count {
                    return (got, ReadEnd::Satisfied);
                }
                if closed {
                    // The end of the connection is what `close` waits for and ends an `idle` wait.
                    let done = until == Until::Close || until == Until::Idle;
                    return (
                        got,
                        if done {
                            ReadEnd::Satisfied
                        } else {
                            ReadEnd::Ended
                        },
                    );
                }
            }
            if self.eof || self.stream.is_none() {
                let end = if until == Until::Idle {
                    ReadEnd::Satisfied
                } else {
                    ReadEnd::Ended
                };
                return (got, end);
            }
            let now = Instant::now();
            if now >= deadline {
                return (got, ReadEnd::TimedOut);
            }
            let mut wait = deadline - now;
            if until == Until::Idle {
                wait = wait.min(idle);
            }
            match self.fill(wait, rate).await {
                Some(_) => {}
                None if until == Until::Idle => return (got, ReadEnd::Satisfied),
                None => {} // the deadline is checked above
            }
        }
    }

    /// One socket read into the queue; None when nothing arrived within `wait`.
    async fn fill(&mut self, wait: Duration, rate: Option<u64>) -> Option<()> {
        // A rate-limited reader takes a tenth of its per-second budget every 100 ms.
        let (size, pace) = match rate {
            Some(r) => (((r / 10).max(1)) as usize, Duration::from_millis(100)),
            None => (64 * 1024, Duration::ZERO),
        };
        let mut buf = vec![0u8; size];
        let stream = self.stream.as_mut()?;
        let started = Instant::now();
        let result = timeout(wait, stream.read(&mut buf)).await.ok()?;
        let items = match result {
            Ok(0) => {
                self.eof = true;
                self.parser.eof(false)
            }
            Ok(n) => self.parser.feed(&buf[..n]),
            Err(e) => {
                self.eof = true;
                let reset = matches!(
                    e.kind(),
                    ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
                );
                self.parser.eof(reset)
            }
        };
        self.queue.extend(items);
        let spent = started.elapsed();
        if pace > spent && !self.eof {
            sleep(pace - spent).await;
        }
        Some(())
    }

    fn apply(&mut self, item: &Item) {
        match item {
            Item::Head(head) if (100..200).contains(&head.status) && head.status != 101 => {
                self.interim.push(head.status)
            }
            Item::Head(head) => self.seen.push(Seen {
                head: Some(head.clone()),
                ..Seen::default()
            }),
            Item::Body(body) => self.current().body = Some(body.clone()),
            Item::Event(e) => self.current().events.push(e.clone()),
            Item::Comment(_) => self.current().comments += 1,
            Item::End => self.current().complete = true,
            Item::Frame(f) => self.current().frames.push(f.clone()),
            Item::Malformed(_) => {}
            Item::Closed { reset } => self.closed = Some(*reset),
        }
    }

    fn current(&mut self) -> &mut Seen {
        if self.seen.is_empty() {
            self.seen.push(Seen::default());
        }
        self.seen.last_mut().expect("just pushed")
    }
}

fn counts(until: Until, item: &Item) -> bool {
    match (until, item) {
        (Until::Headers, Item::Head(h)) => h.status >= 200 || h.status == 101,
        (Until::Interim, Item::Head(h)) => h.status < 200 && h.status != 101,
        (Until::Response, Item::End) => true,
        (Until::Events, Item::Event(_)) => true,
        (Until::Frames, Item::Frame(_)) => true,
        _ => false,
    }
}
