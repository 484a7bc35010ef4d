//! `--redis`: one real `redis-server` (Debian's; `make test` installs it) on a free loopback
//! port with no persistence, shared by every gateway of the run through `MCPGW_REDIS_URL`, so
//! the same scenarios run against Redis-backed session state.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::time::{sleep, timeout, Instant};

pub struct Redis {
    pub url: String,
    port: u16,
    child: Child,
}

impl Redis {
    /// Starts `redis-server --save '' --appendonly no` on a free port; its output goes to
    /// `log_path`. Fails (never skips) when redis-server is not installed.
    pub async fn start(log_path: PathBuf, dir: &Path) -> Result<Redis, String> {
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
            probe.local_addr().map_err(|e| e.to_string())?.port()
        };
        let log =
            std::fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot start redis-server ({e}): `make test` installs it (.build/redis.stamp)"
                )
            })?;
        let mut redis = Redis {
            url: format!("redis://127.0.0.1:{port}/0"),
            port,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !redis.ping().await {
            if let Ok(Some(status)) = redis.child.try_wait() {
                return Err(format!(
                    "redis-server exited with {status}: see {}",
                    log_path.display()
                ));
            }
            if Instant::now() > deadline {
                return Err("redis-server did not answer PING within 30 s".into());
            }
            sleep(Duration::from_millis(50)).await;
        }
        Ok(redis)
    }

    async fn ping(&self) -> bool {
        let work = async {
            let mut s = TcpStream::connect(("127.0.0.1", self.port)).await.ok()?;
            s.write_all(b"PING\r\n").await.ok()?;
            let mut buf = [0u8; 16];
            let n = s.read(&mut buf).await.ok()?;
            Some(buf[..n].starts_with(b"+PONG"))
        };
        matches!(timeout(Duration::from_secs(1), work).await, Ok(Some(true)))
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
