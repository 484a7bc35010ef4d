//! Runs one scenario against one gateway, with the checks around it: the control client,
//! live counts back to the baseline, the log, memory. The steps themselves are `steps.rs`.

use std::time::Duration;

use tokio::time::{sleep, timeout, Instant};

use super::control::Control;
use super::gateway::{Gateway, Live};
use super::scenario::Scenario;
use super::steps::Runner;

/// Live counts must be back at the baseline within this after a scenario (a deadline, not a
/// timing assertion: polling stops as soon as they are).
const DRAIN_DEADLINE: Duration = Duration::from_secs(20);
/// Resident memory a slow-reader scenario may add (after its clients are gone).
pub const DEFAULT_RSS_GROWTH_MIB: f64 = 48.0;

/// One scenario's result on one gateway.
pub struct ModeRun {
    pub mode: String,
    pub transcript: Vec<String>,
    pub failures: Vec<String>,
    pub elapsed: Duration,
    pub rss_growth_kib: Option<i64>,
    pub control_ok: usize,
    pub control_slowest: Duration,
    pub rss_peak_kib: Option<u64>,
}

pub async fn run_on(gw: &Gateway, sc: &Scenario) -> ModeRun {
    let started = Instant::now();
    let mut failures = Vec::new();
    let baseline = match gw.live().await {
        Ok(l) => l,
        Err(why) => {
            failures.push(format!("gateway unreachable before the scenario: {why}"));
            Live::new()
        }
    };
    let log_offset = gw.log_len();
    let rss_before = gw.rss_kib();
    let pid = gw.pid;
    let control = Control::start(gw.addr, move || super::gateway::rss_kib(pid));

    let mut r = Runner::new(gw, sc, baseline.clone());
    let limit = Duration::from_secs_f64(sc.meta.timeout_s);
    match timeout(limit, r.steps(&sc.steps)).await {
        Ok(Ok(())) => {}
        Ok(Err(why)) => failures.push(format!("step {}: {why}", r.step_no())),
        Err(_) => failures.push(format!(
            "step {}: scenario did not finish within {} s (a hang?)",
            r.step_no(),
            sc.meta.timeout_s
        )),
    }
    // Bounded too: a finally step or a DELETE must not hang the run.
    let _ = timeout(Duration::from_secs(15), r.cleanup(&sc.finally)).await;
    let transcript = r.into_transcript(); // every client connection is closed by now

    let report = control.finish().await;
    if report.ok == 0 || !report.failures.is_empty() {
        failures.push(format!(
            "control client: {} ok, failures: {}",
            report.ok,
            report.failures.join(" | ")
        ));
    }
    if let Err(why) = drained(gw, &baseline).await {
        failures.push(why);
    }
    for record in gw.errors_since(log_offset) {
        failures.push(format!("gateway log:\n{}", indent(&record, "      ")));
    }
    let rss_after = gw.rss_kib();
    let rss_growth_kib = match (rss_before, rss_after) {
        (Some(a), Some(b)) => Some(b as i64 - a as i64),
        _ => None,
    };
    if sc.meta.slow_reader {
        let bound = sc.meta.max_rss_growth_mib.unwrap_or(DEFAULT_RSS_GROWTH_MIB);
        match rss_growth_kib {
            Some(g) if g as f64 > bound * 1024.0 => failures.push(format!(
                "resident memory grew by {:.1} MiB (bound {bound} MiB)",
                g as f64 / 1024.0
            )),
            None => failures.push("cannot read the gateway's VmRSS".into()),
            _ => {}
        }
    }
    ModeRun {
        mode: gw.mode.clone(),
        transcript,
        failures,
        elapsed: started.elapsed(),
        rss_growth_kib,
        control_ok: report.ok,
        control_slowest: report.slowest,
        rss_peak_kib: report.rss_peak_kib.zip(rss_before).map(|(p, b)| p.max(b)),
    }
}

/// Polls `/health` until every live count is back at the baseline.
async fn drained(gw: &Gateway, baseline: &Live) -> Result<(), String> {
    let deadline = Instant::now() + DRAIN_DEADLINE;
    loop {
        let now = gw.live().await;
        if let Ok(live) = &now {
            if live == baseline {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(format!(
                "live counts not back to {baseline:?} within {} s: {now:?}",
                DRAIN_DEADLINE.as_secs()
            ));
        }
        sleep(Duration::from_millis(50)).await;
    }
}

fn indent(text: &str, by: &str) -> String {
    text.lines()
        .map(|l| format!("{by}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
