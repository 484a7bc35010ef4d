//! Wire-level parity and robustness runner (`wire-parity`).
//!
//! Scenarios (`tests/scenarios/*.toml`, format in `tests/scenarios/README.md`) are timed
//! steps over raw TCP: connect, write bytes (paced or split), read (bounded, slow or not at
//! all), half-close, reset, and expectations. Each runs at once against two `mcpgw serve`
//! processes, edge `wasm` and edge `python`; the normalized transcripts of what each read
//! must be identical and every expectation must hold. Around each scenario: a control client
//! that must keep being served, live counts back to their baseline, no error in the
//! gateway's log, and bounded memory growth after slow readers.
//!
//! * [`scenario`]: the file format; [`template`]: placeholders in written bytes;
//! * [`conn`]: one raw connection; [`http`]: the incremental response reader; [`ws`]: frames;
//! * [`expect`]: expectations and captures; [`transcript`]: normalized transcript lines;
//! * [`gateway`]: the gateway process; [`control`]: the control client;
//! * [`redis`]: `--redis`, one redis-server every gateway of the run shares;
//! * [`steps`]: a scenario's steps on one gateway; [`runner`]: those plus the checks around
//!   them; [`suite`]: both modes, diff, report.

pub mod conn;
pub mod control;
pub mod diff;
pub mod expect;
pub mod gateway;
pub mod http;
pub mod redis;
pub mod runner;
pub mod scenario;
pub mod steps;
pub mod suite;
pub mod template;
pub mod transcript;
pub mod ws;
