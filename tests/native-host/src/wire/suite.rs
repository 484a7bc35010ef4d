//! The whole run: gateways per (edge mode, env), every scenario on both modes at once,
//! transcripts compared, one line per scenario, details for failures.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use std::time::Duration;

use tokio::time::Instant;

use super::diff::diff;
use super::gateway::{Env, Gateway};
use super::runner::{run_on, ModeRun};
use super::scenario::{self, Scenario};

pub struct Options {
    pub repo: PathBuf,
    pub python: PathBuf,
    /// Directories whose `*.toml` files are run, in order.
    pub dirs: Vec<PathBuf>,
    /// Only scenarios whose name contains one of these (empty: all).
    pub only: Vec<String>,
    /// `wasm`, `python`, or both (compared).
    pub modes: Vec<String>,
    /// Transcripts and gateway logs go here.
    pub out: PathBuf,
    pub verbose: bool,
    /// Every gateway shares one redis-server started for the run (`MCPGW_REDIS_URL`).
    pub redis: bool,
}

pub fn load(opts: &Options) -> Result<Vec<Scenario>, String> {
    let mut all = Vec::new();
    for dir in &opts.dirs {
        all.extend(scenario::load_dir(dir)?);
    }
    if !opts.only.is_empty() {
        all.retain(|s| opts.only.iter().any(|o| s.name.contains(o.as_str())));
    }
    Ok(all)
}

fn env_tag(env: &Env) -> String {
    if env.is_empty() {
        return "default".into();
    }
    let mut h = DefaultHasher::new();
    env.hash(&mut h);
    format!("env{:08x}", h.finish() as u32)
}

/// Runs `scenarios`; true when every one passed.
pub async fn run(opts: &Options, scenarios: &[Scenario]) -> Result<bool, String> {
    let started = Instant::now();
    let logs = opts.out.join("logs");
    let transcripts = opts.out.join("transcripts");
    for dir in [&logs, &transcripts] {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }

    let redis = if opts.redis {
        Some(super::redis::Redis::start(logs.join("redis-server.log"), &opts.out).await?)
    } else {
        None
    };
    let mut base = Env::new();
    if let Some(r) = &redis {
        base.insert("MCPGW_REDIS_URL".into(), r.url.clone());
    }

    // One gateway per (mode, env), all started at once and kept for the whole run.
    let envs: Vec<Env> = {
        let mut v: Vec<Env> = scenarios.iter().map(|s| s.meta.env.clone()).collect();
        v.sort();
        v.dedup();
        v
    };
    let mut starting = Vec::new();
    for env in &envs {
        for mode in &opts.modes {
            let (python, repo, mode, env, base) = (
                opts.python.clone(),
                opts.repo.clone(),
                mode.clone(),
                env.clone(),
                base.clone(),
            );
            let log = logs.join(format!("{mode}-{}.log", env_tag(&env)));
            starting.push(tokio::spawn(async move {
                Gateway::start(&python, &repo, &mode, &env, &base, log).await
            }));
        }
    }
    let mut gateways: BTreeMap<(String, Env), Gateway> = BTreeMap::new();
    let mut start_error = None;
    for task in starting {
        match task.await.map_err(|e| e.to_string()).and_then(|r| r) {
            Ok(gw) => {
                gateways.insert((gw.mode.clone(), gw.env.clone()), gw);
            }
            Err(why) => start_error = Some(why),
        }
    }
    if let Some(why) = start_error {
        for (_, gw) in gateways {
            gw.stop().await;
        }
        if let Some(r) = redis {
            r.stop().await;
        }
        return Err(why);
    }
    println!(
        "wire-parity: {} scenarios, modes {}, {} gateways{} ready in {:.1} s (logs in {})",
        scenarios.len(),
        opts.modes.join("+"),
        gateways.len(),
        redis
            .as_ref()
            .map(|r| format!(" sharing {}", r.url))
            .unwrap_or_default(),
        started.elapsed().as_secs_f64(),
        logs.display()
    );
    let rss_start: BTreeMap<(String, Env), Option<u64>> = gateways
        .iter()
        .map(|(k, g)| (k.clone(), g.rss_kib()))
        .collect();

    let mut failed = Vec::new();
    for sc in scenarios {
        let pick = |mode: &str| gateways.get(&(mode.to_string(), sc.meta.env.clone()));
        let runs: Vec<ModeRun> = match opts.modes.as_slice() {
            [a, b] => {
                let (x, y) = tokio::join!(
                    run_on(pick(a).expect("started"), sc),
                    run_on(pick(b).expect("started"), sc)
                );
                vec![x, y]
            }
            [a] => vec![run_on(pick(a).expect("started"), sc).await],
            _ => return Err("one or two modes".into()),
        };
        let mut problems: Vec<String> = Vec::new();
        for run in &runs {
            let file = transcripts.join(format!("{}.{}.txt", sc.name, run.mode));
            let _ = std::fs::write(&file, run.transcript.join("\n") + "\n");
            problems.extend(run.failures.iter().map(|f| format!("{}: {f}", run.mode)));
        }
        for gw in gateways.values_mut() {
            if let Some(status) = gw.exited() {
                problems.push(format!(
                    "{} gateway ({}) exited: {status}",
                    gw.mode,
                    env_tag(&gw.env)
                ));
            }
        }
        if let [a, b] = runs.as_slice() {
            let d = diff(&a.transcript, &b.transcript, 3);
            if !d.is_empty() {
                problems.push(format!(
                    "transcripts differ (- {}, + {}):\n{}",
                    a.mode,
                    b.mode,
                    d.iter()
                        .map(|l| format!("      {l}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                ));
            }
        }
        let timing: Vec<String> = runs
            .iter()
            .map(|r| format!("{} {:.1}s", r.mode, r.elapsed.as_secs_f64()))
            .collect();
        let verdict = if problems.is_empty() { "ok  " } else { "FAIL" };
        println!("{verdict} {:<44} ({})", sc.name, timing.join(", "));
        if opts.verbose || !problems.is_empty() {
            println!("     {}", sc.meta.description);
            for r in &runs {
                let mib = |k: i64| k as f64 / 1024.0;
                let rss = r
                    .rss_growth_kib
                    .map(|k| format!("{:+.1} MiB", mib(k)))
                    .unwrap_or("?".into());
                let peak = r
                    .rss_peak_kib
                    .map(|k| format!(", peak {:.1} MiB", mib(k as i64)))
                    .unwrap_or_default();
                println!(
                    "     {}: control {} ok (slowest {} ms), rss {rss}{peak}",
                    r.mode,
                    r.control_ok,
                    r.control_slowest.as_millis()
                );
            }
        }
        for p in &problems {
            println!("   - {p}");
        }
        if !problems.is_empty() {
            println!(
                "     transcripts: {}",
                transcripts
                    .join(format!("{}.<mode>.txt", sc.name))
                    .display()
            );
            failed.push(sc.name.clone());
        }
    }

    println!("resident memory over the run (after start → now):");
    for (key, gw) in &gateways {
        let before = rss_start.get(key).copied().flatten();
        if let (Some(a), Some(b)) = (before, gw.rss_kib()) {
            println!(
                "  {:<7} {:<16} {:.1} → {:.1} MiB",
                gw.mode,
                env_tag(&gw.env),
                a as f64 / 1024.0,
                b as f64 / 1024.0
            );
        }
    }
    for (_, gw) in gateways {
        gw.stop().await;
    }
    if let Some(r) = redis {
        r.stop().await;
    }
    let total = started.elapsed();
    if failed.is_empty() {
        println!(
            "wire-parity: all {} scenarios passed in {}",
            scenarios.len(),
            secs(total)
        );
    } else {
        println!(
            "wire-parity: {} of {} scenarios FAILED in {}: {}",
            failed.len(),
            scenarios.len(),
            secs(total),
            failed.join(", ")
        );
    }
    Ok(failed.is_empty())
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}
