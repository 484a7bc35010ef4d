//! `wire-parity`: runs the raw-TCP scenarios of `tests/scenarios/` against the gateway in
//! both edge modes and compares what each answered. See `tests/scenarios/README.md`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use native_host::wire::suite::{self, Options};

const USAGE: &str = "\
usage: wire-parity [options] [NAME...]

Runs tests/scenarios/*.toml against `mcpgw serve` with MCPGW_EDGE=wasm and =python
at once and fails on any failed expectation or transcript difference.
NAME...             only scenarios whose name contains one of these

  --repo DIR        repository root        (env MCPGW_REPO; default: the workspace this
                                            binary was built from, or the current directory)
  --python PATH     Python with mcpgw      (env MCPGW_PYTHON; default REPO/.venv/bin/python)
  --scenarios DIR   scenario directory     (default REPO/tests/scenarios)
  --known-bugs      run only DIR/known-bugs (scenarios that show open gateway bugs)
  --all             run DIR and DIR/known-bugs
  --mode MODE       only `wasm` or `python` (no comparison)
  --out DIR         transcripts and logs   (default REPO/target/wire-parity)
  --redis           every gateway shares one redis-server (started on a free loopback
                    port, no persistence) through MCPGW_REDIS_URL
  --list            print the scenarios and their descriptions, run nothing
  -v, --verbose     details for passing scenarios too (control client, memory)";

fn default_repo() -> PathBuf {
    if let Some(dir) = std::env::var_os("MCPGW_REPO").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    if cwd.join("tests/scenarios").is_dir() {
        return cwd;
    }
    native_host::workspace_root()
}

struct Cli {
    opts: Options,
    list: bool,
}

fn parse(args: Vec<String>) -> Result<Cli, String> {
    let mut repo = None;
    let mut python = std::env::var_os("MCPGW_PYTHON")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from);
    let mut scenarios = None;
    let mut out = None;
    let (mut main_set, mut bugs) = (true, false);
    let mut modes = vec!["wasm".to_string(), "python".to_string()];
    let (mut list, mut verbose, mut redis) = (false, false, false);
    let mut only = Vec::new();
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let mut value = |flag: &str| it.next().ok_or_else(|| format!("{flag} needs a value"));
        match arg.as_str() {
            "--repo" => repo = Some(PathBuf::from(value("--repo")?)),
            "--python" => python = Some(PathBuf::from(value("--python")?)),
            "--scenarios" => scenarios = Some(PathBuf::from(value("--scenarios")?)),
            "--out" => out = Some(PathBuf::from(value("--out")?)),
            "--mode" => {
                let m = value("--mode")?;
                if m != "wasm" && m != "python" {
                    return Err(format!("--mode wasm|python, not {m:?}"));
                }
                modes = vec![m];
            }
            "--known-bugs" => (main_set, bugs) = (false, true),
            "--all" => (main_set, bugs) = (true, true),
            "--list" => list = true,
            "--redis" => redis = true,
            "-v" | "--verbose" => verbose = true,
            "-h" | "--help" => return Err(String::new()),
            flag if flag.starts_with('-') => return Err(format!("unknown option {flag}")),
            name => only.push(name.to_string()),
        }
    }
    let repo = repo.unwrap_or_else(default_repo);
    let dir = scenarios.unwrap_or_else(|| repo.join("tests").join("scenarios"));
    let mut dirs = Vec::new();
    if main_set {
        dirs.push(dir.clone());
    }
    if bugs {
        dirs.push(dir.join("known-bugs"));
    }
    Ok(Cli {
        opts: Options {
            python: python.unwrap_or_else(|| repo.join(".venv").join("bin").join("python")),
            out: out.unwrap_or_else(|| repo.join("target").join("wire-parity")),
            repo,
            dirs,
            only,
            modes,
            verbose,
            redis,
        },
        list,
    })
}

fn check_setup(opts: &Options) -> Result<(), String> {
    let must = |p: &Path, what: &str| {
        if p.exists() {
            Ok(())
        } else {
            Err(format!(
                "{what} not found at {} (run `make build`, or see --help)",
                p.display()
            ))
        }
    };
    must(&opts.python, "the gateway's Python")?;
    must(
        &opts
            .repo
            .join("host-python/mcpgw/edge/wasm/transport_core.wasm"),
        "the packaged component",
    )
}

fn main() -> ExitCode {
    let cli = match parse(std::env::args().skip(1).collect()) {
        Ok(cli) => cli,
        Err(why) => {
            if !why.is_empty() {
                eprintln!("wire-parity: {why}\n");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let scenarios = match suite::load(&cli.opts) {
        Ok(s) => s,
        Err(why) => {
            eprintln!("wire-parity: {why}");
            return ExitCode::from(2);
        }
    };
    if cli.list {
        for s in &scenarios {
            println!("{:<44} {}", s.name, s.meta.description);
        }
        return ExitCode::SUCCESS;
    }
    if scenarios.is_empty() {
        eprintln!("wire-parity: no scenario selected");
        return ExitCode::from(2);
    }
    if let Err(why) = check_setup(&cli.opts) {
        eprintln!("wire-parity: {why}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wire-parity: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(suite::run(&cli.opts, &scenarios)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(why) => {
            eprintln!("wire-parity: {why}");
            ExitCode::from(2)
        }
    }
}
