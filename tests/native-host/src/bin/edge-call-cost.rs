//! `edge-call-cost`: what one uncached edge crossing's component call costs through wasmtime's
//! Rust API, the floor a native extension (e.g. PyO3 + the wasmtime crate) could reach, beside
//! what the Python host pays through wasmtime-py (`bench/edge_instructions.py`, part `call`).
//!
//! The same component the gateway ships (`host-python/mcpgw/edge/wasm/transport_core.wasm`), the
//! same configuration (`tests/vectors/base-config.json`, which is `EdgeConfig()`), the same
//! limits (fuel `MCPGW_EDGE_FUEL`'s default + 400 per head byte, set before every call; 16 MiB of
//! memory), an engine like the host's (fuel metering, no component-model concurrency), and the
//! same packed compact argument the Python host sends (docs/edge-contract.md section 16, written
//! by `native_host::compact`) for the three heads of `bench/edge_cost.py`. `evaluate-compact` is
//! called two ways on one instance:
//!
//! * `typed`: the `bindgen!` export (`TypedFunc<(&str,), (String,)>`: lowering, the call,
//!   lifting into a `String`, post-return);
//! * `dynamic`: `component::Func::call` with `Val`s, the call the C API that wasmtime-py wraps
//!   makes (the argument `Val` is built once per head; the result slot is reused, so each call
//!   drops the previous answer, as the C API's slot does).
//!
//! Before measuring, every answer is checked: typed and dynamic agree, the answer decoded
//! (`compact::decode_outcome`) equals `evaluate-encoded`'s outcome and the typed `evaluate`'s,
//! and every request case of `tests/vectors/` goes through both calls with its packed head and
//! matches its `expect`.
//!
//! Default: ns per call (p50, p99; each call timed on its own, rounds alternating between the
//! two calls). `--instructions`: re-runs itself under callgrind (`--instr-atstart=no`) and counts
//! instructions per call as (count of HIGH calls - count of LOW calls) / (HIGH - LOW), each loop
//! zeroed and dumped with `callgrind_control`, as `bench/callgrind.py` does for the Python host.
//! Build it optimized (`cargo build --release -p native-host --bin edge-call-cost`). For the
//! call's parts (lowering, realloc, lifting, post-return, the guest), build without stripping
//! (`CARGO_PROFILE_RELEASE_STRIP=false`), run `--instructions --keep DIR` and difference
//! `callgrind_annotate --inclusive=yes --tree=caller` of the two dumps of one head.
//!
//! Measured 2026-12-05 (the workspace's release profile; shared 2-core machine, load ~2-3),
//! browser POST / CLI POST / preflight: typed 15.8k / 14.9k / 12.8k instructions per call,
//! dynamic 16.3k / 15.4k / 13.3k, against 30.3k / 29.4k / 27.2k for wasmtime-py's call from
//! Python (`bench/edge_instructions.py`, part `call`, same session); p50 typed 1.41 / 1.31 /
//! 1.12 us, dynamic 1.46 / 1.37 / 1.17 us, against 3.27 / 3.16 / 2.98 us from Python. Of the
//! typed call, the guest (entry and its wasm) is 12.9k / 12.0k / 9.8k and the canonical ABI
//! and wasmtime's glue ~3.4k (non-LTO build): lowering 0.7k (the guest's `cabi_realloc` 0.56k
//! of it), lifting into a `String` 0.6k, post-return 0.5k, looking the export's function up
//! again on every call 0.9k, entry/exit checks 0.5k.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use native_host::bindings::TransportCore;
use native_host::json::{self, config_from_json, parse_reply, result_to_json};
use native_host::vectors::{load_base_config, load_vectors, partial_mismatch, vectors_dir};
use native_host::{compact, fuel_for_head, Config, RequestHead, DEFAULT_FUEL_BASE};
use serde_json::Value;
use wasmtime::component::{Component, Func, Linker, Val};
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder};

const USAGE: &str = "\
usage: edge-call-cost [--component PATH] [--calls N] [--instructions [--low N] [--high N] [--keep DIR]]

  --component PATH  the component (env MCPGW_COMPONENT; default
                    host-python/mcpgw/edge/wasm/transport_core.wasm, what the gateway ships)
  --calls N         timed calls per head and call path (default 20000)
  --instructions    instructions per call under callgrind instead of time
  --low N, --high N the two loop lengths whose counts are differenced (default 1000, 21000)
  --keep DIR        keep callgrind's output files in DIR (for callgrind_annotate)";

/// `MCPGW_EDGE_MEMORY_MB`'s default (`edge_memory_mb` in host-python/mcpgw/settings.py).
const MEMORY_BYTES: usize = 16 << 20;
const INTERFACE: &str = "mcpgw:edge/transport@1.0.0";

/// A bench head: label, method, headers (the path is `/mcp`, no query).
type BenchHead = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

/// The three heads of `bench/edge_cost.py`, headers in the order uvicorn delivers them.
const HEADS: [BenchHead; 3] = [
    (
        "browser POST (12 headers)",
        "POST",
        &[
            ("host", "127.0.0.1:4444"),
            ("connection", "keep-alive"),
            ("content-length", "87"),
            ("sec-ch-ua-platform", "\"Linux\""),
            (
                "user-agent",
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/156.0 Safari/537.36",
            ),
            ("accept", "application/json, text/event-stream"),
            ("content-type", "application/json"),
            (
                "mcp-session-id",
                "Vq3n0bq2oQ0rPzJ7s1k9cM8wYpX4hT6uLf2eR5aD1gE",
            ),
            ("mcp-protocol-version", "2025-06-18"),
            ("origin", "http://localhost:5173"),
            ("referer", "http://localhost:5173/"),
            ("accept-encoding", "gzip, deflate, br, zstd"),
        ],
    ),
    (
        "CLI POST (5 headers)",
        "POST",
        &[
            ("host", "127.0.0.1:4444"),
            ("accept", "application/json, text/event-stream"),
            ("content-type", "application/json"),
            ("mcp-protocol-version", "2025-11-25"),
            (
                "mcp-session-id",
                "Vq3n0bq2oQ0rPzJ7s1k9cM8wYpX4hT6uLf2eR5aD1gE",
            ),
        ],
    ),
    (
        "preflight (7 headers)",
        "OPTIONS",
        &[
            ("host", "127.0.0.1:4444"),
            ("origin", "http://localhost:5173"),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "content-type,mcp-protocol-version,mcp-session-id",
            ),
            ("user-agent", "Mozilla/5.0"),
            ("accept", "*/*"),
            ("sec-fetch-mode", "cors"),
        ],
    ),
];

/// What host-python's `CompactCodec.head_bytes` writes for these heads (packed, as the gateway
/// sends them once the component reads the packed form), read from it on 2026-12-05: the
/// argument here must be the one the Python host passes.
const PYTHON_ARGUMENTS: [&str; 3] = [
    "\u{4}POST\u{4}/mcp*\u{5}bcdef\n#\u{10}\u{15}\u{e}2025-06-18application/json, text/event-streamapplication/jsonhttp://localhost:5173127.0.0.1:4444a\u{1}s",
    "\u{4}POST\u{4}/mcp*\u{4}bcdf\n#\u{10}\u{e}2025-11-25application/json, text/event-streamapplication/json127.0.0.1:4444a\u{1}s",
    "\u{7}OPTIONS\u{4}/mcp*\u{5}cefjk\u{3}\u{15}\u{e}\u{4}0*/*http://localhost:5173127.0.0.1:4444POSTcontent-type,mcp-protocol-version,mcp-session-id",
];

const PATHS: [&str; 2] = ["typed", "dynamic"];

type Res<T> = Result<T, String>;

fn err(e: impl std::fmt::Display) -> String {
    format!("{e:#}")
}

/// One instance in its own store, with both handles on `evaluate-compact`.
struct Edge {
    store: Store<StoreLimits>,
    core: TransportCore,
    dynamic: Func,
    results: [Val; 1],
}

impl Edge {
    fn new(component_path: &Path) -> Res<Self> {
        let mut cfg = wasmtime::Config::new();
        cfg.wasm_component_model(true);
        cfg.consume_fuel(true);
        // As host-python's `sandbox_engine`: the contract has no async functions.
        cfg.concurrency_support(false);
        let engine = Engine::new(&cfg).map_err(err)?;
        let component = Component::from_file(&engine, component_path)
            .map_err(|e| format!("{}: {}", component_path.display(), err(e)))?;
        // Empty: the contract's world imports nothing, and nothing is granted.
        let linker = Linker::<StoreLimits>::new(&engine);
        let limits = StoreLimitsBuilder::new().memory_size(MEMORY_BYTES).build();
        let mut store = Store::new(&engine, limits);
        store.limiter(|l| l);
        store.set_fuel(DEFAULT_FUEL_BASE).map_err(err)?;
        let instance = linker.instantiate(&mut store, &component).map_err(err)?;
        let core = TransportCore::new(&mut store, &instance).map_err(err)?;
        let iface = instance
            .get_export_index(&mut store, None, INTERFACE)
            .ok_or("no transport interface")?;
        let index = instance
            .get_export_index(&mut store, Some(&iface), "evaluate-compact")
            .ok_or("no evaluate-compact export")?;
        let dynamic = instance
            .get_func(&mut store, index)
            .ok_or("evaluate-compact is not a function")?;
        Ok(Self {
            store,
            core,
            dynamic,
            results: [Val::Bool(false)],
        })
    }

    fn fuel(&mut self, call_fuel: u64) -> Res<()> {
        self.store.set_fuel(call_fuel).map_err(err)
    }

    fn configure(&mut self, config_json: &str) -> Res<()> {
        self.fuel(DEFAULT_FUEL_BASE)?;
        let out = self
            .core
            .mcpgw_edge_transport()
            .call_configure_encoded(&mut self.store, config_json)
            .map_err(err)?;
        if out.is_empty() {
            Ok(())
        } else {
            Err(format!("configure-encoded refused the config: {out}"))
        }
    }

    #[inline(never)]
    fn typed(&mut self, head: &str, call_fuel: u64) -> Res<String> {
        self.fuel(call_fuel)?;
        self.core
            .mcpgw_edge_transport()
            .call_evaluate_compact(&mut self.store, head)
            .map_err(err)
    }

    /// The answer stays in the result slot (the next call drops it).
    #[inline(never)]
    fn dynamic(&mut self, params: &[Val], call_fuel: u64) -> Res<&str> {
        self.fuel(call_fuel)?;
        self.dynamic
            .call(&mut self.store, params, &mut self.results)
            .map_err(err)?;
        match &self.results[0] {
            Val::String(s) => Ok(s),
            other => Err(format!("evaluate-compact returned {other:?}")),
        }
    }

    fn fuel_used(&mut self, call_fuel: u64) -> u64 {
        call_fuel - self.store.get_fuel().unwrap_or(0)
    }
}

/// One bench head, ready to cross.
struct Head {
    label: &'static str,
    head: RequestHead,
    found: Vec<(&'static str, String)>,
    argument: String,
    params: [Val; 1],
    fuel: u64,
}

fn heads() -> Res<Vec<Head>> {
    let mut out = Vec::new();
    for ((label, method, headers), python) in HEADS.iter().zip(PYTHON_ARGUMENTS) {
        let head = RequestHead {
            method: (*method).into(),
            path: "/mcp".into(),
            query: String::new(),
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
        };
        let found = compact::lookup(&head.headers);
        let argument = compact::encode_head_packed(method, "/mcp", &head.headers, &found)
            .ok_or("a field too long for the compact encoding")?;
        if argument != python {
            return Err(format!(
                "{label}: the packed head {argument:?} is not the Python host's {python:?}"
            ));
        }
        out.push(Head {
            label,
            fuel: fuel_for_head(DEFAULT_FUEL_BASE, argument.len()),
            params: [Val::String(argument.clone())],
            head,
            found,
            argument,
        });
    }
    Ok(out)
}

/// The answers are the ones the parity runs expect: typed = dynamic, the decoded outcome equals
/// `evaluate-encoded`'s and the typed `evaluate`'s, and every vector request case matches.
fn check(edge: &mut Edge, base: &Value, cfg: &Config, heads: &[Head]) -> Res<()> {
    for h in heads {
        let typed = edge.typed(&h.argument, h.fuel)?;
        let fuel = edge.fuel_used(h.fuel);
        let dynamic = edge.dynamic(&h.params, h.fuel)?.to_owned();
        if typed != dynamic {
            return Err(format!(
                "{}: typed {typed:?} != dynamic {dynamic:?}",
                h.label
            ));
        }
        let decoded = compact::decode_outcome(&typed, cfg, &h.head.method, "/mcp", &h.found)?;
        edge.fuel(h.fuel)?;
        let encoded = parse_reply(
            &edge
                .core
                .mcpgw_edge_transport()
                .call_evaluate_encoded(&mut edge.store, &json::encode_head(&h.head))
                .map_err(err)?,
        );
        edge.fuel(h.fuel)?;
        let typed_outcome = result_to_json(
            &edge
                .core
                .mcpgw_edge_transport()
                .call_evaluate(&mut edge.store, &h.head)
                .map_err(err)?,
        );
        if decoded != encoded || !json::typed_matches_encoded(&typed_outcome, &encoded) {
            return Err(format!(
                "{}: decoded {decoded}\n  encoded {encoded}\n  typed {typed_outcome}",
                h.label
            ));
        }
        println!(
            "  {:27} argument {:3} bytes, answer {typed:?}, fuel used {fuel}: decoded = encoded = typed evaluate",
            h.label,
            h.argument.len()
        );
    }
    let cases = load_vectors(&vectors_dir())?;
    let (mut passed, mut skipped) = (0, 0);
    for case in &cases {
        let (Some(head), Ok(case_cfg)) = (&case.request, case.typed_config()) else {
            skipped += 1;
            continue;
        };
        let found = compact::lookup(&head.headers);
        let Some(argument) =
            compact::encode_head_packed(&head.method, &head.path, &head.headers, &found)
        else {
            skipped += 1; // a field too long for the encoding: hosts use the JSON path
            continue;
        };
        edge.configure(&case.config.to_string())?;
        let fuel = fuel_for_head(DEFAULT_FUEL_BASE, argument.len());
        let typed = edge.typed(&argument, fuel)?;
        let dynamic = edge.dynamic(&[Val::String(argument.clone())], fuel)?;
        if typed != dynamic {
            return Err(format!("vector {}: typed != dynamic", case.name));
        }
        let got = compact::decode_outcome(&typed, &case_cfg, &head.method, &head.path, &found)
            .map_err(|e| format!("vector {}: {e}", case.name))?;
        if let Some(at) = partial_mismatch(&case.expect, &got) {
            return Err(format!(
                "vector {}: mismatch at {at}: expected {} got {got}",
                case.name, case.expect
            ));
        }
        passed += 1;
    }
    edge.configure(&base.to_string())?;
    println!(
        "  tests/vectors: {passed} request cases matched through both calls ({skipped} configure-only or not expressible in the compact encoding)"
    );
    Ok(())
}

#[inline(never)]
fn run_loop(edge: &mut Edge, h: &Head, path: &str, n: usize) -> Res<()> {
    for _ in 0..n {
        if path == "typed" {
            drop(std::hint::black_box(edge.typed(&h.argument, h.fuel)?));
        } else {
            std::hint::black_box(edge.dynamic(&h.params, h.fuel)?);
        }
    }
    Ok(())
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    // The index rule of bench/edge_cost.py's `pct`.
    let i = ((p * sorted.len() as f64) as usize).min(sorted.len() - 1);
    sorted[i]
}

fn time(edge: &mut Edge, heads: &[Head], calls: usize) -> Res<()> {
    const ROUNDS: usize = 10;
    let per_round = calls.div_ceil(ROUNDS);
    let clock = {
        let mut s: Vec<u64> = (0..10_000)
            .map(|_| {
                let t = Instant::now();
                let u = std::hint::black_box(Instant::now());
                u64::try_from((u - t).as_nanos()).unwrap_or(u64::MAX)
            })
            .collect();
        s.sort_unstable();
        percentile(&s, 0.5)
    };
    println!(
        "ns per call ({ROUNDS} alternating rounds x {per_round} calls, each call timed; the clock pair alone: {clock} ns p50, included)"
    );
    println!("{:28} {:8} {:>8} {:>8}", "head", "call", "p50 ns", "p99 ns");
    for h in heads {
        let mut samples: [Vec<u64>; 2] = [Vec::new(), Vec::new()];
        for path in PATHS {
            run_loop(edge, h, path, 2000)?; // warm-up
        }
        for round in 0..ROUNDS {
            for k in 0..2 {
                let k = if round % 2 == 0 { k } else { 1 - k };
                for _ in 0..per_round {
                    let t = Instant::now();
                    if k == 0 {
                        drop(std::hint::black_box(edge.typed(&h.argument, h.fuel)?));
                    } else {
                        std::hint::black_box(edge.dynamic(&h.params, h.fuel)?);
                    }
                    samples[k].push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
                }
            }
        }
        for (k, s) in samples.iter_mut().enumerate() {
            s.sort_unstable();
            println!(
                "{:28} {:8} {:>8} {:>8}",
                h.label,
                PATHS[k],
                percentile(s, 0.5),
                percentile(s, 0.99)
            );
        }
    }
    Ok(())
}

fn callgrind_control(args: &[&str]) -> Res<()> {
    let pid = std::process::id().to_string();
    let done = Command::new("callgrind_control")
        .args(args)
        .arg(&pid)
        .output()
        .map_err(|e| format!("callgrind_control: {e}"))?;
    if done.status.success() {
        Ok(())
    } else {
        Err(format!(
            "callgrind_control {args:?} failed: {}",
            String::from_utf8_lossy(&done.stderr)
        ))
    }
}

/// Under callgrind: for each head and call, LOW then HIGH calls, each zeroed and dumped.
fn count_inside(edge: &mut Edge, heads: &[Head], low: usize, high: usize) -> Res<()> {
    callgrind_control(&["-i", "on"])?;
    for (i, h) in heads.iter().enumerate() {
        for path in PATHS {
            run_loop(edge, h, path, 200)?; // warm-up
            for n in [low, high] {
                callgrind_control(&["-z"])?;
                run_loop(edge, h, path, n)?;
                callgrind_control(&[&format!("--dump=h{i}:{path}:{n}")])?;
            }
        }
    }
    callgrind_control(&["-i", "off"])
}

/// {label: total} of every dump in `dir`.
fn read_dumps(dir: &Path) -> Res<Vec<(String, u64)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(err)? {
        let path = entry.map_err(err)?.path();
        if !path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("callgrind.out"))
        {
            continue;
        }
        let text = String::from_utf8_lossy(&std::fs::read(&path).map_err(err)?).into_owned();
        let label = text
            .lines()
            .find_map(|l| l.strip_prefix("desc: Trigger: dump "))
            .map(str::trim);
        let total = text
            .lines()
            .find_map(|l| l.strip_prefix("totals:"))
            .and_then(|t| t.trim().parse::<u64>().ok());
        if let (Some(label), Some(total)) = (label, total) {
            found.push((label.to_owned(), total));
        }
    }
    Ok(found)
}

fn count(opts: &Opts, heads: &[Head]) -> Res<()> {
    let dir = match &opts.keep {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("edge-call-cost-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).map_err(err)?;
    let exe = std::env::current_exe().map_err(err)?;
    println!(
        "instructions per call (callgrind; (count of {} calls - count of {}) / {})",
        opts.high,
        opts.low,
        opts.high - opts.low
    );
    let done = Command::new("valgrind")
        .args(["--tool=callgrind", "--instr-atstart=no"])
        .arg(format!(
            "--callgrind-out-file={}/callgrind.out",
            dir.display()
        ))
        .arg(&exe)
        .args(["--inside-callgrind", "--low", &opts.low.to_string()])
        .args(["--high", &opts.high.to_string(), "--component"])
        .arg(&opts.component)
        .current_dir(&dir)
        .output()
        .map_err(|e| format!("valgrind: {e} (is valgrind installed?)"))?;
    let dumps = read_dumps(&dir)?;
    if opts.keep.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    if !done.status.success() {
        return Err(format!(
            "the run under callgrind failed:\n{}{}",
            String::from_utf8_lossy(&done.stdout),
            String::from_utf8_lossy(&done.stderr)
        ));
    }
    println!("{:28} {:>12} {:>12}", "head", "typed", "dynamic");
    for (i, h) in heads.iter().enumerate() {
        let mut row = format!("{:28}", h.label);
        for path in PATHS {
            let get = |n: usize| {
                dumps
                    .iter()
                    .find(|(l, _)| *l == format!("h{i}:{path}:{n}"))
                    .map(|(_, t)| *t)
            };
            let (Some(lo), Some(hi)) = (get(opts.low), get(opts.high)) else {
                return Err(format!("no dump for {} {path}", h.label));
            };
            let per_call = (hi as f64 - lo as f64) / (opts.high - opts.low) as f64;
            row.push_str(&format!(" {per_call:>12.0}"));
        }
        println!("{row}");
    }
    if let Some(d) = &opts.keep {
        println!("callgrind output kept in {}", d.display());
    }
    Ok(())
}

struct Opts {
    component: PathBuf,
    calls: usize,
    instructions: bool,
    inside: bool,
    low: usize,
    high: usize,
    keep: Option<PathBuf>,
}

fn parse() -> Res<Opts> {
    let default_component = std::env::var_os("MCPGW_COMPONENT")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            native_host::workspace_root().join("host-python/mcpgw/edge/wasm/transport_core.wasm")
        });
    let mut o = Opts {
        component: default_component,
        calls: 20_000,
        instructions: false,
        inside: false,
        low: 1000,
        high: 21_000,
        keep: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value\n{USAGE}"));
        let number = |v: String| v.parse::<usize>().map_err(|e| format!("{v}: {e}"));
        match arg.as_str() {
            "--component" => o.component = PathBuf::from(value()?),
            "--calls" => o.calls = number(value()?)?.max(ROUND_MIN),
            "--instructions" => o.instructions = true,
            "--inside-callgrind" => o.inside = true,
            "--low" => o.low = number(value()?)?,
            "--high" => o.high = number(value()?)?,
            "--keep" => o.keep = Some(PathBuf::from(value()?)),
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if o.high <= o.low {
        return Err("--high must be more than --low".into());
    }
    Ok(o)
}

const ROUND_MIN: usize = 10;

fn run() -> Res<()> {
    let opts = parse()?;
    let base = load_base_config(&vectors_dir())?;
    let cfg = config_from_json(&base)?;
    let heads = heads()?;
    let mut edge = Edge::new(&opts.component)?;
    edge.configure(&base.to_string())?;
    if opts.inside {
        return count_inside(&mut edge, &heads, opts.low, opts.high);
    }
    println!(
        "component {} ({} bytes), wasmtime 48, fuel {DEFAULT_FUEL_BASE} + 400/head byte per call, memory {} MiB",
        opts.component.display(),
        std::fs::metadata(&opts.component).map_err(err)?.len(),
        MEMORY_BYTES >> 20
    );
    check(&mut edge, &base, &cfg, &heads)?;
    if opts.instructions {
        count(&opts, &heads)
    } else {
        time(&mut edge, &heads, opts.calls)
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edge-call-cost: {e}");
            ExitCode::FAILURE
        }
    }
}
