//! Native harness for profiling `evaluate-encoded` (e.g. under callgrind).
use transport_core::encoded::{configure_encoded, evaluate_encoded};

const CONFIG: &str = include_str!("../../tests/vectors/base-config.json");
const HEADS: [&str; 3] = [
    r#"["POST","/mcp","",[["host","127.0.0.1:4444"],["accept","application/json, text/event-stream"],["content-type","application/json"],["mcp-session-id","Vq3n0bq2oQ0rPzJ7s1k9cM8wYpX4hT6uLf2eR5aD1gE"],["mcp-protocol-version","2025-06-18"],["origin","http://localhost:5173"]]]"#,
    r#"["OPTIONS","/mcp","",[["host","127.0.0.1:4444"],["origin","http://localhost:5173"],["access-control-request-method","POST"],["access-control-request-headers","content-type,mcp-protocol-version,mcp-session-id"],["accept","*/*"]]]"#,
    "x",
];

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let mut state = None;
    assert_eq!(configure_encoded(&mut state, CONFIG), "");
    let custom: Vec<String> = std::env::args().skip(2).collect();
    let heads: Vec<&str> = if custom.is_empty() {
        HEADS.to_vec()
    } else {
        custom.iter().map(String::as_str).collect()
    };
    let mut total = 0;
    for _ in 0..n {
        for &head in &heads {
            total +=
                std::hint::black_box(evaluate_encoded(state.as_ref(), std::hint::black_box(head)))
                    .len();
        }
    }
    println!("{total}");
}
