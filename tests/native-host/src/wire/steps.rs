//! Executing a scenario's steps on one gateway: connections, writes, reads (recorded in the
//! transcript), expectations, captures, `wait_live` and the `session` shorthand.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::time::Duration;

use tokio::time::{sleep, Instant};

use super::conn::{Conn, ReadEnd};
use super::control::META_2026;
use super::expect;
use super::gateway::{Gateway, Live};
use super::scenario::{
    ConnectStep, ExpectStep, ReadStep, Scenario, SessionStep, Step, Until, WaitLiveStep, WriteStep,
    WsSendStep,
};
use super::template::{expand, expand_str, Vars};
use super::transcript::Normalizer;
use super::ws;

/// The state of one scenario on one gateway: its connections, variables and transcript.
pub struct Runner<'a> {
    gw: &'a Gateway,
    conns: BTreeMap<String, Conn>,
    vars: Vars,
    norm: Normalizer,
    transcript: Vec<String>,
    /// false while cleaning up: `[[finally]]` steps are not part of the comparison.
    recording: bool,
    record_comments: bool,
    baseline: Live,
    /// Sessions opened with `session = ...`, deleted at the end whatever happened.
    sessions: Vec<(String, String)>,
    step_no: usize,
}

/// `body` as HTTP/1.1 chunks of `size` bytes and the last, empty chunk.
fn chunk_encode(body: &[u8], size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in body.chunks(size) {
        out.extend(format!("{:x}\r\n", piece.len()).into_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

fn io_kind(e: &std::io::Error) -> String {
    match e.kind() {
        ErrorKind::BrokenPipe | ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted => {
            "connection closed by the server".into()
        }
        ErrorKind::TimedOut => "timed out (the server stopped reading)".into(),
        _ => e.to_string(),
    }
}

impl<'a> Runner<'a> {
    pub fn new(gw: &'a Gateway, sc: &Scenario, baseline: Live) -> Self {
        let mut vars = Vars::new();
        vars.insert("host".into(), gw.addr.to_string());
        vars.insert("port".into(), gw.addr.port().to_string());
        vars.insert("meta2026".into(), META_2026.into());
        for (k, v) in &sc.meta.vars {
            vars.insert(k.clone(), v.clone());
        }
        Runner {
            gw,
            conns: BTreeMap::new(),
            vars,
            norm: Normalizer::new(gw.addr.port()),
            transcript: Vec::new(),
            recording: true,
            record_comments: sc.meta.record_comments,
            baseline,
            sessions: Vec::new(),
            step_no: 0,
        }
    }

    fn note(&mut self, line: String) {
        if self.recording {
            let line = self.norm.text(&line);
            self.transcript.push(line);
        }
    }

    fn conn(&mut self, name: &str) -> Result<&mut Conn, String> {
        self.conns
            .get_mut(name)
            .ok_or_else(|| format!("no connection named {name:?} (connect it first)"))
    }

    /// The step being run (1-based), for reports.
    pub fn step_no(&self) -> usize {
        self.step_no
    }

    pub fn into_transcript(self) -> Vec<String> {
        self.transcript
    }

    pub async fn steps(&mut self, steps: &[Step]) -> Result<(), String> {
        for (i, step) in steps.iter().enumerate() {
            self.step_no = i + 1;
            self.step(step).await?;
        }
        Ok(())
    }

    /// `[[finally]]` steps and the deletion of sessions the scenario opened, unrecorded and
    /// errors ignored; then every client connection of the scenario is closed.
    pub async fn cleanup(&mut self, steps: &[Step]) {
        self.recording = false;
        for step in steps {
            let _ = self.step(step).await;
        }
        for (var, revision) in std::mem::take(&mut self.sessions) {
            let Some(id) = self.vars.get(&var).cloned() else {
                continue;
            };
            let req = format!(
                "DELETE /mcp HTTP/1.1\r\nHost: {}\r\nMcp-Session-Id: {id}\r\nMcp-Protocol-Version: {revision}\r\n\
                 Connection: close\r\n\r\n",
                self.gw.addr
            );
            let _ = super::gateway::exchange(self.gw.addr, req.as_bytes(), Duration::from_secs(5))
                .await;
        }
        self.conns.clear();
    }

    async fn step(&mut self, step: &Step) -> Result<(), String> {
        let n = self.step_no;
        match step {
            Step::Connect(c) => self.connect(c).await,
            Step::Write(w) => self.write(w).await,
            Step::WsSend(w) => self.ws_send(w).await,
            Step::Read(r) => self.read(r).await,
            Step::Expect(e) => self.expect(e),
            Step::Capture(c) => {
                let got = expect::capture(self.conn(&c.capture)?, c)?;
                let names: Vec<String> = got.iter().map(|(k, _)| k.clone()).collect();
                for (name, value) in got {
                    self.norm.learn(&name, &value);
                    self.vars.insert(name, value);
                }
                self.note(format!(
                    "step {n}: capture {} {}",
                    c.capture,
                    names.join(" ")
                ));
                Ok(())
            }
            Step::Shutdown(name) => {
                self.note(format!("step {n}: shutdown {name} (half-close)"));
                match self.conn(name)?.shutdown_write().await {
                    Ok(()) => Ok(()),
                    Err(e) => Err(format!("shutdown {name}: {}", io_kind(&e))),
                }
            }
            Step::Reset(name) => {
                self.note(format!("step {n}: reset {name}"));
                self.conn(name)?
                    .reset()
                    .map_err(|e| format!("reset {name}: {e}"))
            }
            Step::Close(name) => {
                self.note(format!("step {n}: close {name}"));
                self.conn(name)?.close();
                Ok(())
            }
            Step::Wait(ms) => {
                self.note(format!("step {n}: wait {ms} ms"));
                sleep(Duration::from_millis(*ms)).await;
                Ok(())
            }
            Step::WaitLive(w) => self.wait_live(w).await,
            Step::Session(s) => self.session(s).await,
        }
    }

    async fn connect(&mut self, c: &ConnectStep) -> Result<(), String> {
        self.note(format!("step {}: connect {}", self.step_no, c.connect));
        let conn = Conn::connect(self.gw.addr, c.recv_buffer, c.source)
            .await
            .map_err(|e| format!("connect {}: {e}", c.connect))?;
        self.conns.insert(c.connect.clone(), conn);
        Ok(())
    }

    fn request_bytes(&self, w: &WriteStep) -> Result<Vec<u8>, String> {
        if let Some(data) = &w.data {
            return expand(data, &self.vars);
        }
        let line = expand(w.request.as_deref().unwrap_or_default(), &self.vars)?;
        let mut lines: Vec<Vec<u8>> = Vec::new();
        for h in &w.headers {
            match h.as_str() {
                "@mcp" | "@mcp2026" => {
                    lines.push(b"Accept: application/json, text/event-stream".to_vec());
                    lines.push(b"Content-Type: application/json".to_vec());
                    if h == "@mcp2026" {
                        lines.push(b"MCP-Protocol-Version: 2026-07-28".to_vec());
                    }
                }
                _ => lines.push(expand(h, &self.vars)?),
            }
        }
        let has = |lines: &[Vec<u8>], name: &str| {
            lines.iter().any(|l| {
                l.len() > name.len()
                    && l[..name.len()].eq_ignore_ascii_case(name.as_bytes())
                    && l[name.len()] == b':'
            })
        };
        if w.host && !has(&lines, "host") {
            lines.insert(0, format!("Host: {}", self.gw.addr).into_bytes());
        }
        let mut body = match &w.body {
            Some(b) => expand(b, &self.vars)?,
            None => Vec::new(),
        };
        if let Some(size) = w.chunked {
            if !has(&lines, "transfer-encoding") {
                lines.push(b"Transfer-Encoding: chunked".to_vec());
            }
            body = chunk_encode(&body, size.max(1));
        } else if w.body.is_some()
            && w.content_length
            && !has(&lines, "content-length")
            && !has(&lines, "transfer-encoding")
        {
            lines.push(format!("Content-Length: {}", body.len()).into_bytes());
        }
        let mut out = line;
        out.extend_from_slice(b" HTTP/1.1\r\n");
        for l in lines {
            out.extend(l);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend(body);
        Ok(out)
    }

    async fn write(&mut self, w: &WriteStep) -> Result<(), String> {
        let bytes = self.request_bytes(w)?;
        let what = match &w.request {
            Some(r) => format!(" ({})", expand_str(r, &self.vars)?),
            None => String::new(),
        };
        let pacing = match w.chunk {
            Some(c) => format!(" in {c}-byte pieces"),
            None => String::new(),
        };
        let lenient = if w.ignore_errors {
            " (errors ignored)"
        } else {
            ""
        };
        self.note(format!(
            "step {}: write {}{what}{pacing}{lenient}",
            self.step_no, w.write
        ));
        let result = self
            .conn(&w.write)?
            .write(
                &bytes,
                w.chunk,
                Duration::from_millis(w.pause_ms),
                Duration::from_millis(w.timeout_ms),
            )
            .await;
        match result {
            Ok(()) => Ok(()),
            Err(_) if w.ignore_errors => Ok(()),
            Err(e) => {
                self.note(format!("{} write failed: {}", w.write, io_kind(&e)));
                Err(format!("write {}: {}", w.write, io_kind(&e)))
            }
        }
    }

    async fn ws_send(&mut self, w: &WsSendStep) -> Result<(), String> {
        let opcode =
            ws::opcode(&w.kind).ok_or_else(|| format!("unknown frame kind {:?}", w.kind))?;
        let mut payload = Vec::new();
        if let Some(code) = w.close_code {
            payload.extend_from_slice(&code.to_be_bytes());
        }
        payload.extend(expand(&w.data, &self.vars)?);
        self.note(format!(
            "step {}: ws_send {} {}",
            self.step_no, w.ws_send, w.kind
        ));
        let frame = ws::encode(opcode, &payload, w.fin);
        self.conn(&w.ws_send)?
            .write(&frame, None, Duration::ZERO, Duration::from_secs(5))
            .await
            .map_err(|e| format!("ws_send {}: {}", w.ws_send, io_kind(&e)))
    }

    async fn read(&mut self, r: &ReadStep) -> Result<(), String> {
        let what = match r.until {
            Until::Headers => format!("{} head(s)", r.count),
            Until::Interim => format!("{} interim head(s)", r.count),
            Until::Response => format!("{} response(s)", r.count),
            Until::Events => format!("{} event(s)", r.count),
            Until::Frames => format!("{} frame(s)", r.count),
            Until::Close => "close".into(),
            Until::Idle => "idle".into(),
        };
        let rate = r.rate.map(|b| format!(" at {b} B/s")).unwrap_or_default();
        let quiet = if r.record { "" } else { " (not recorded)" };
        self.note(format!(
            "step {}: read {} until {what}{rate}{quiet}",
            self.step_no, r.read
        ));
        let (items, end) = self
            .conn(&r.read)?
            .read(
                r.until,
                r.count,
                Duration::from_millis(r.idle_ms),
                Duration::from_millis(r.timeout_ms),
                r.rate,
            )
            .await;
        if r.record {
            for item in &items {
                for line in self.norm.item(&r.read, item, self.record_comments) {
                    self.note(line);
                }
            }
        }
        match end {
            ReadEnd::Satisfied => Ok(()),
            ReadEnd::TimedOut => {
                self.note(format!("{} timed out", r.read));
                Err(format!(
                    "read {}: no {what} within {} ms",
                    r.read, r.timeout_ms
                ))
            }
            ReadEnd::Ended => {
                self.note(format!("{} ended", r.read));
                Err(format!(
                    "read {}: the connection ended before {what}",
                    r.read
                ))
            }
        }
    }

    fn expect(&mut self, e: &ExpectStep) -> Result<(), String> {
        let conn = self
            .conns
            .get(&e.expect)
            .ok_or_else(|| format!("no connection named {:?}", e.expect))?;
        let bad = expect::check(conn, e, &self.vars)?;
        if bad.is_empty() {
            self.note(format!("step {}: expect {}: ok", self.step_no, e.expect));
            Ok(())
        } else {
            self.note(format!(
                "step {}: expect {}: FAILED",
                self.step_no, e.expect
            ));
            Err(format!("expect {}: {}", e.expect, bad.join("; ")))
        }
    }

    async fn wait_live(&mut self, w: &WaitLiveStep) -> Result<(), String> {
        let wanted: Vec<String> = w
            .wait_live
            .iter()
            .map(|(k, v)| format!("{k}={v:+}"))
            .collect();
        self.note(format!(
            "step {}: wait_live {}",
            self.step_no,
            wanted.join(" ")
        ));
        let deadline = Instant::now() + Duration::from_millis(w.timeout_ms);
        let matches = |live: &Live| {
            w.wait_live.iter().all(|(k, v)| {
                live.get(k).copied() == Some(self.baseline.get(k).copied().unwrap_or(0) + v)
            })
        };
        // Two matching polls in a row: the control client's own short requests show up in
        // the counts for a moment and must not satisfy (or spoil) the wait.
        let mut hits = 0;
        loop {
            let live = self.gw.live().await;
            match &live {
                Ok(l) if matches(l) => hits += 1,
                _ => hits = 0,
            }
            if hits >= 2 {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "wait_live {}: still {live:?} after {} ms",
                    wanted.join(" "),
                    w.timeout_ms
                ));
            }
            sleep(Duration::from_millis(40)).await;
        }
    }

    /// initialize + notifications/initialized on a connection of its own; the id goes into
    /// the variable named by the step, and the session is deleted after the scenario.
    async fn session(&mut self, s: &SessionStep) -> Result<(), String> {
        let name = format!("{}-init", s.session);
        self.note(format!(
            "step {}: session {} ({})",
            self.step_no, s.session, s.revision
        ));
        let conn = Conn::connect(self.gw.addr, None, None)
            .await
            .map_err(|e| format!("session {}: connect: {e}", s.session))?;
        self.conns.insert(name.clone(), conn);
        let init = format!(
            r#"{{"jsonrpc":"2.0","id":0,"method":"initialize","params":{{"protocolVersion":"{}","capabilities":{{}},"clientInfo":{{"name":"wire-parity","version":"0"}}}}}}"#,
            s.revision
        );
        let host = self.gw.addr;
        let first = format!(
            "POST /mcp HTTP/1.1\r\nHost: {host}\r\nAccept: application/json, text/event-stream\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{init}",
            init.len()
        );
        let status = self.exchange_on(&name, first.as_bytes()).await?;
        let id = {
            let conn = self.conn(&name)?;
            conn.seen
                .last()
                .and_then(|s| s.head.as_ref())
                .and_then(|h| h.header("mcp-session-id"))
                .map(str::to_string)
        };
        let id = match (status, id) {
            (200, Some(id)) => id,
            (st, _) => {
                return Err(format!(
                    "session {}: initialize answered {st} without a session",
                    s.session
                ))
            }
        };
        self.norm.learn(&s.session, &id);
        self.vars.insert(s.session.clone(), id.clone());
        self.sessions.push((s.session.clone(), s.revision.clone()));
        let note = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
        let second = format!(
            "POST /mcp HTTP/1.1\r\nHost: {host}\r\nAccept: application/json, text/event-stream\r\n\
             Content-Type: application/json\r\nMcp-Session-Id: {id}\r\nMcp-Protocol-Version: {}\r\n\
             Content-Length: {}\r\n\r\n{note}",
            s.revision,
            note.len()
        );
        let status = self.exchange_on(&name, second.as_bytes()).await?;
        if status != 202 {
            return Err(format!(
                "session {}: notifications/initialized answered {status}",
                s.session
            ));
        }
        self.conns.remove(&name);
        Ok(())
    }

    /// Writes a request on `name` and reads its whole response (recorded); its status.
    async fn exchange_on(&mut self, name: &str, bytes: &[u8]) -> Result<u16, String> {
        let conn = self.conn(name)?;
        conn.write(bytes, None, Duration::ZERO, Duration::from_secs(5))
            .await
            .map_err(|e| format!("{name}: {}", io_kind(&e)))?;
        let (items, end) = conn
            .read(
                Until::Response,
                1,
                Duration::ZERO,
                Duration::from_secs(10),
                None,
            )
            .await;
        let status = conn
            .seen
            .last()
            .and_then(|s| s.head.as_ref())
            .map(|h| h.status);
        for item in &items {
            for line in self.norm.item(name, item, false) {
                self.note(line);
            }
        }
        match (end, status) {
            (ReadEnd::Satisfied, Some(st)) => Ok(st),
            _ => Err(format!("{name}: no complete response ({end:?})")),
        }
    }
}
