//! The control client: while a scenario misbehaves, a well-behaved client keeps making a
//! cheap request (a stateless 2026-07-28 `tools/list`) on fresh connections. Every one
//! must succeed: one client's abuse must not starve the others.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{sleep, Instant};

use super::gateway::exchange;

pub const META_2026: &str = concat!(
    r#"{"io.modelcontextprotocol/protocolVersion":"2026-07-28","#,
    r#""io.modelcontextprotocol/clientCapabilities":{},"#,
    r#""io.modelcontextprotocol/clientInfo":{"name":"wire-parity","version":"0"}}"#
);

/// Generous (a request normally takes milliseconds, even on two busy cores): the point is
/// "never refused or starved for seconds", not a latency figure.
pub const PER_REQUEST: Duration = Duration::from_secs(5);
const INTERVAL: Duration = Duration::from_millis(200);

#[derive(Debug, Default)]
pub struct ControlReport {
    pub ok: usize,
    pub failures: Vec<String>,
    pub slowest: Duration,
    /// Highest VmRSS seen (KiB), sampled between requests.
    pub rss_peak_kib: Option<u64>,
}

pub struct Control {
    stop: oneshot::Sender<()>,
    task: JoinHandle<ControlReport>,
}

fn request(addr: SocketAddr) -> Vec<u8> {
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{{"_meta":{META_2026}}}}}"#
    );
    format!(
        "POST /mcp HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json, text/event-stream\r\n\
         Content-Type: application/json\r\nMcp-Protocol-Version: 2026-07-28\r\nMcp-Method: tools/list\r\n\
         Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

async fn once(addr: SocketAddr, req: &[u8]) -> Result<(), String> {
    let (head, body) = exchange(addr, req, PER_REQUEST).await?;
    let text = String::from_utf8_lossy(&body);
    if head.status != 200
        || !text.contains(r#""resultType":"complete""#)
        || !text.contains(r#""name":"echo""#)
    {
        return Err(format!(
            "status {}: {}",
            head.status,
            text.chars().take(200).collect::<String>()
        ));
    }
    Ok(())
}

impl Control {
    /// `rss` samples the gateway's resident memory (KiB) between requests.
    pub fn start(addr: SocketAddr, rss: impl Fn() -> Option<u64> + Send + 'static) -> Control {
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let req = request(addr);
            let mut report = ControlReport::default();
            loop {
                let started = Instant::now();
                match once(addr, &req).await {
                    Ok(()) => report.ok += 1,
                    Err(why) if report.failures.len() < 5 => report.failures.push(why),
                    Err(_) => {}
                }
                report.slowest = report.slowest.max(started.elapsed());
                report.rss_peak_kib = report.rss_peak_kib.max(rss());
                tokio::select! {
                    _ = &mut stopped => return report,
                    _ = sleep(INTERVAL) => {}
                }
            }
        });
        Control { stop, task }
    }

    pub async fn finish(self) -> ControlReport {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_else(|e| ControlReport {
            failures: vec![format!("control task failed: {e}")],
            ..Default::default()
        })
    }
}
