//! A real `mcpgw serve` child process on loopback, and the few HTTP calls the runner
//! itself makes to it (`/health`, the control client's request).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::time::{sleep, timeout, Instant};

use super::http::{Head, Item, Parser};

pub type Env = BTreeMap<String, String>;
pub type Live = BTreeMap<String, i64>;

pub struct Gateway {
    pub mode: String,
    pub env: Env,
    pub addr: SocketAddr,
    pub pid: u32,
    pub log_path: PathBuf,
    child: Child,
}

const BOUND: &str = "Uvicorn running on http://127.0.0.1:";

impl Gateway {
    /// Starts `python -m mcpgw.cli serve` with port 0 and waits until `/health` answers.
    /// Output goes to a file (a pipe nobody reads would block the gateway). `base` (the
    /// run's settings, e.g. `MCPGW_REDIS_URL`) comes first, the scenario's `env` over it.
    pub async fn start(
        python: &Path,
        repo: &Path,
        mode: &str,
        env: &Env,
        base: &Env,
        log_path: PathBuf,
    ) -> Result<Gateway, String> {
        let log =
            std::fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(python);
        cmd.args(["-m", "mcpgw.cli", "serve"])
            .current_dir(repo)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .kill_on_drop(true);
        // Only our settings: an MCPGW_* from the caller's shell must not change the gateway.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("MCPGW_") {
                cmd.env_remove(key);
            }
        }
        cmd.env("MCPGW_PORT", "0")
            .env("MCPGW_HOST", "127.0.0.1")
            .env("MCPGW_EDGE", mode)
            .env("PYTHONUNBUFFERED", "1")
            .envs(base)
            .envs(env);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", python.display()))?;
        let pid = child.id().unwrap_or(0);
        let deadline = Instant::now() + Duration::from_secs(120);
        let port = loop {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            if let Some(at) = text.find(BOUND) {
                let digits: String = text[at + BOUND.len()..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                if let Ok(port) = digits.parse::<u16>() {
                    break port;
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("{mode} gateway exited with {status}:\n{text}"));
            }
            if Instant::now() > deadline {
                return Err(format!("{mode} gateway did not bind within 120 s:\n{text}"));
            }
            sleep(Duration::from_millis(50)).await;
        };
        let gw = Gateway {
            mode: mode.to_string(),
            env: env.clone(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            pid,
            log_path,
            child,
        };
        loop {
            if gw.live().await.is_ok() {
                return Ok(gw);
            }
            if Instant::now() > deadline {
                return Err(format!("{mode} gateway: /health never answered"));
            }
            sleep(Duration::from_millis(100)).await;
        }
    }

    /// The `live` counts of `/health`.
    pub async fn live(&self) -> Result<Live, String> {
        let req = format!(
            "GET /health HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        );
        let (head, body) = exchange(self.addr, req.as_bytes(), Duration::from_secs(10)).await?;
        if head.status != 200 {
            return Err(format!("/health answered {}", head.status));
        }
        let doc: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| format!("/health is not JSON: {e}"))?;
        let live = doc
            .get("live")
            .and_then(|l| l.as_object())
            .ok_or("/health has no live")?;
        Ok(live
            .iter()
            .map(|(k, v)| (k.clone(), v.as_i64().unwrap_or(-1)))
            .collect())
    }

    /// Resident memory in KiB (`VmRSS` of /proc/PID/status).
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib(self.pid)
    }

    pub fn log_len(&self) -> u64 {
        std::fs::metadata(&self.log_path)
            .map(|m| m.len())
            .unwrap_or(0)
    }

    /// Error records in the log written since `offset` (see [`error_records`]).
    pub fn errors_since(&self, offset: u64) -> Vec<String> {
        let bytes = std::fs::read(&self.log_path).unwrap_or_default();
        let start = (offset as usize).min(bytes.len());
        error_records(&String::from_utf8_lossy(&bytes[start..]))
    }

    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            _ => None,
        }
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// Log records that report an error: a `Traceback`, a ` ERROR ` record (the gateway's
/// format) or `ERROR:` (uvicorn's). Each comes with the lines after it (a traceback's last
/// lines name the error), at most three records.
pub fn error_records(log: &str) -> Vec<String> {
    let lines: Vec<&str> = log.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() && out.len() < 3 {
        let line = lines[i];
        if line.contains("Traceback") || line.contains(" ERROR ") || line.starts_with("ERROR:") {
            let end = (i + 40).min(lines.len());
            let next = (i + 1..end)
                .find(|&j| lines[j].contains(" ERROR ") || lines[j].starts_with("ERROR:"))
                .unwrap_or(end);
            out.push(lines[i..next].join("\n"));
            i = next;
        } else {
            i += 1;
        }
    }
    out
}

pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Writes `request` on a new connection and reads one response (head and whole body).
pub async fn exchange(
    addr: SocketAddr,
    request: &[u8],
    limit: Duration,
) -> Result<(Head, Vec<u8>), String> {
    let work = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        stream
            .write_all(request)
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut parser = Parser::new();
        let mut head = None;
        let mut body = Vec::new();
        let mut buf = vec![0u8; 16384];
        loop {
            let n = stream
                .read(&mut buf)
                .await
                .map_err(|e| format!("read: {e}"))?;
            let items = if n == 0 {
                parser.eof(false)
            } else {
                parser.feed(&buf[..n])
            };
            for item in items {
                match item {
                    Item::Head(h) if h.status >= 200 => head = Some(h),
                    Item::Body(b) => body = b,
                    Item::Event(e) => {
                        body.extend(e.data.unwrap_or_default().into_bytes());
                        body.push(b'\n');
                    }
                    Item::End => {
                        return head
                            .map(|h| (h, body))
                            .ok_or_else(|| "no response head".to_string())
                    }
                    Item::Malformed(why) => return Err(why),
                    Item::Closed { .. } => return Err("closed before a whole response".into()),
                    _ => {}
                }
            }
        }
    };
    timeout(limit, work)
        .await
        .map_err(|_| format!("no answer within {} s", limit.as_secs_f64()))?
}

#[cfg(test)]
mod tests {
    use super::error_records;

    #[test]
    fn finds_error_records() {
        let log = "INFO: fine\nWARNING:  Invalid HTTP request received.\n\
                   2026-01-01 00:00:00,000 ERROR mcpgw.http: request 1 failed\nTraceback (most recent call last):\n  File x\nKeyError: 1\n\
                   ERROR:    Exception in ASGI application\n";
        let found = error_records(log);
        assert_eq!(found.len(), 2);
        assert!(found[0].starts_with("2026") && found[0].ends_with("KeyError: 1"));
        assert!(found[1].starts_with("ERROR:"));
        assert!(error_records("INFO: ok\nWARNING: meh\n").is_empty());
    }
}
