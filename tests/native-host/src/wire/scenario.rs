//! The scenario file format (`tests/scenarios/*.toml`, described in `tests/scenarios/README.md`).
//!
//! Every step is a TOML table with exactly one action key (`connect`, `write`, `read`, ...)
//! naming the connection it acts on; each action has its own struct with
//! `deny_unknown_fields`, so a misspelt option is an error instead of a silently weaker test.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Deserialize;

#[derive(Debug)]
pub struct Scenario {
    pub name: String,
    pub path: PathBuf,
    pub meta: Meta,
    pub steps: Vec<Step>,
    /// Always run after the steps (also after a failure), unrecorded, errors ignored.
    pub finally: Vec<Step>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    pub description: String,
    /// Extra MCPGW_* settings: a gateway pair is started per distinct `env`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    /// Bound on the whole scenario (a hang fails it).
    #[serde(default = "default_timeout_s")]
    pub timeout_s: f64,
    /// Check resident memory growth after this scenario.
    #[serde(default)]
    pub slow_reader: bool,
    #[serde(default)]
    pub max_rss_growth_mib: Option<f64>,
    /// Record SSE comments (keepalives) in the transcript; off because their number is timing.
    #[serde(default)]
    pub record_comments: bool,
    /// The issue a known-bug scenario shows (informational).
    #[serde(default)]
    pub bug: Option<String>,
}

fn default_timeout_s() -> f64 {
    30.0
}

#[derive(Debug)]
pub enum Step {
    Connect(ConnectStep),
    Write(WriteStep),
    WsSend(WsSendStep),
    Read(ReadStep),
    Expect(Box<ExpectStep>),
    Capture(CaptureStep),
    Shutdown(String),
    Reset(String),
    Close(String),
    Wait(u64),
    WaitLive(WaitLiveStep),
    Session(SessionStep),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectStep {
    pub connect: String,
    /// SO_RCVBUF before connecting: a small receive window makes a non-reading client push
    /// back on the server after a few KiB instead of megabytes.
    pub recv_buffer: Option<u32>,
    /// Local IPv4 address to connect from (e.g. "127.0.0.2"): a client other than the
    /// control client, for per-client limits.
    pub source: Option<std::net::Ipv4Addr>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteStep {
    pub write: String,
    /// Raw bytes (a template).
    pub data: Option<String>,
    /// Or a request built by the runner: `"POST /mcp"` (HTTP/1.1 is appended) ...
    pub request: Option<String>,
    /// ... its header lines (`@mcp`, `@mcp2026` expand to header sets) ...
    #[serde(default)]
    pub headers: Vec<String>,
    /// ... and body. `Host` and `Content-Length` are added unless given or switched off.
    pub body: Option<String>,
    #[serde(default = "yes")]
    pub host: bool,
    #[serde(default = "yes")]
    pub content_length: bool,
    /// Send the body with `Transfer-Encoding: chunked`, in HTTP chunks of this many bytes.
    pub chunked: Option<usize>,
    /// Write in pieces of this many bytes ...
    pub chunk: Option<usize>,
    /// ... with this pause between them.
    #[serde(default)]
    pub pause_ms: u64,
    /// A failed write (the server closed) is not an error; recorded as `write (errors ignored)`.
    #[serde(default)]
    pub ignore_errors: bool,
    #[serde(default = "default_io_timeout_ms")]
    pub timeout_ms: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WsSendStep {
    pub ws_send: String,
    /// `text` (default), `binary`, `close`, `ping`, `pong`, `continuation`.
    #[serde(default = "default_ws_kind")]
    pub kind: String,
    /// Payload (a template).
    #[serde(default)]
    pub data: String,
    /// For `close`: the status code put before `data`.
    pub close_code: Option<u16>,
    #[serde(default = "yes")]
    pub fin: bool,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum Until {
    /// `count` final response heads.
    Headers,
    /// `count` interim (1xx) heads such as 100 Continue.
    Interim,
    /// `count` complete responses.
    Response,
    /// `count` SSE events.
    Events,
    /// `count` WebSocket frames.
    Frames,
    /// The server closes the connection.
    Close,
    /// Nothing arrives for `idle_ms` (never fails).
    Idle,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadStep {
    pub read: String,
    pub until: Until,
    #[serde(default = "one")]
    pub count: usize,
    #[serde(default = "default_idle_ms")]
    pub idle_ms: u64,
    #[serde(default = "default_io_timeout_ms")]
    pub timeout_ms: u64,
    /// Read at most this many bytes per second (a slow reader).
    pub rate: Option<u64>,
    /// false: the items are consumed (and count for expectations) but not put in the transcript.
    #[serde(default = "yes")]
    pub record: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectStep {
    pub expect: String,
    /// Which response of the connection (negative: from the end; default -1, the latest).
    pub response: Option<i64>,
    /// How many responses (final heads) the connection has read.
    pub responses: Option<usize>,
    /// Interim (1xx) statuses the connection has read, in order.
    pub interim: Option<Vec<u16>>,
    pub status: Option<u16>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub header_contains: BTreeMap<String, String>,
    #[serde(default)]
    pub headers_present: Vec<String>,
    #[serde(default)]
    pub headers_absent: Vec<String>,
    #[serde(default)]
    pub body_contains: Vec<String>,
    #[serde(default)]
    pub body_lacks: Vec<String>,
    /// JSON pointer → expected value (see README: the document of an SSE or WebSocket reply
    /// is the array of its messages).
    #[serde(default)]
    pub json: BTreeMap<String, toml::Value>,
    #[serde(default)]
    pub json_contains: BTreeMap<String, String>,
    #[serde(default)]
    pub json_absent: Vec<String>,
    /// Pointers whose value must be JSON `null` (TOML has no null).
    #[serde(default)]
    pub json_null: Vec<String>,
    /// SSE events read so far in that response.
    pub events: Option<usize>,
    pub comments_at_least: Option<usize>,
    /// The response's body (or stream) has ended.
    pub complete: Option<bool>,
    /// The server closed the connection (FIN or RST).
    pub closed: Option<bool>,
    pub frames: Option<usize>,
    /// Close code of the last WebSocket close frame.
    pub ws_close_code: Option<u16>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureStep {
    pub capture: String,
    pub response: Option<i64>,
    /// variable → source: `header:NAME`, `json:/pointer`, `event_id:INDEX`, `event_data:INDEX`.
    pub vars: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitLiveStep {
    /// `/health` live counts to wait for, relative to those before the scenario.
    pub wait_live: BTreeMap<String, i64>,
    #[serde(default = "default_live_timeout_ms")]
    pub timeout_ms: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionStep {
    /// Variable that receives the session id.
    pub session: String,
    #[serde(default = "default_revision")]
    pub revision: String,
}

fn yes() -> bool {
    true
}
fn one() -> usize {
    1
}
fn default_io_timeout_ms() -> u64 {
    5000
}
fn default_idle_ms() -> u64 {
    300
}
fn default_live_timeout_ms() -> u64 {
    10_000
}
fn default_revision() -> String {
    "2025-11-25".to_string()
}
fn default_ws_kind() -> String {
    "text".to_string()
}

const ACTIONS: [&str; 12] = [
    "connect",
    "write",
    "ws_send",
    "read",
    "expect",
    "capture",
    "shutdown",
    "reset",
    "close",
    "wait_ms",
    "wait_live",
    "session",
];

fn typed<T: DeserializeOwned>(table: toml::Table) -> Result<T, String> {
    toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| e.to_string())
}

fn single<T: DeserializeOwned>(mut table: toml::Table, key: &str) -> Result<T, String> {
    let value = table.remove(key).expect("action key present");
    if let Some(extra) = table.keys().next() {
        return Err(format!("`{key}` takes no option `{extra}`"));
    }
    value.try_into().map_err(|e: toml::de::Error| e.to_string())
}

pub fn parse_step(table: toml::Table) -> Result<Step, String> {
    let found: Vec<&str> = ACTIONS
        .iter()
        .copied()
        .filter(|a| table.contains_key(*a))
        .collect();
    let action = match found.as_slice() {
        [one] => *one,
        [] => return Err(format!("no action key (one of {})", ACTIONS.join(", "))),
        many => return Err(format!("several action keys: {}", many.join(", "))),
    };
    Ok(match action {
        "connect" => Step::Connect(typed(table)?),
        "write" => {
            let w: WriteStep = typed(table)?;
            if w.data.is_some() == w.request.is_some() {
                return Err("`write` needs exactly one of `data` or `request`".into());
            }
            Step::Write(w)
        }
        "ws_send" => Step::WsSend(typed(table)?),
        "read" => Step::Read(typed(table)?),
        "expect" => Step::Expect(Box::new(typed(table)?)),
        "capture" => Step::Capture(typed(table)?),
        "shutdown" => Step::Shutdown(single(table, "shutdown")?),
        "reset" => Step::Reset(single(table, "reset")?),
        "close" => Step::Close(single(table, "close")?),
        "wait_ms" => Step::Wait(single(table, "wait_ms")?),
        "wait_live" => Step::WaitLive(typed(table)?),
        "session" => Step::Session(typed(table)?),
        _ => unreachable!(),
    })
}

fn parse_steps(value: Option<toml::Value>, key: &str) -> Result<Vec<Step>, String> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let toml::Value::Array(items) = value else {
        return Err(format!("`{key}` must be an array of tables ([[{key}]])"));
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| match item {
            toml::Value::Table(t) => {
                parse_step(t).map_err(|e| format!("[[{key}]] #{}: {e}", i + 1))
            }
            _ => Err(format!("[[{key}]] #{}: not a table", i + 1)),
        })
        .collect()
}

pub fn load(path: &Path) -> Result<Scenario, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut table: toml::Table = text
        .parse()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let steps = parse_steps(table.remove("step"), "step");
    let finally = parse_steps(table.remove("finally"), "finally");
    let meta: Result<Meta, String> = typed(table);
    let at = |e: String| format!("{}: {e}", path.display());
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let scenario = Scenario {
        name,
        path: path.to_path_buf(),
        meta: meta.map_err(at)?,
        steps: steps.map_err(at)?,
        finally: finally.map_err(at)?,
    };
    if scenario.steps.is_empty() {
        return Err(at("no [[step]]".into()));
    }
    Ok(scenario)
}

/// Every `*.toml` directly in `dir`, sorted by name.
pub fn load_dir(dir: &Path) -> Result<Vec<Scenario>, String> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    paths.iter().map(|p| load(p)).collect()
}
