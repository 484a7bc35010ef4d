//! Property: for generated request heads, hostile ones included, `evaluate`
//! (typed, converted to JSON) and `evaluate-encoded` give exactly the same
//! outcome, that outcome is never an error on a configured instance, and the
//! instance never traps.
//!
//! `MCPGW_FUZZ_CASES` (default 300) sets the number of heads;
//! `MCPGW_FUZZ_SEED` (any text, default fixed) picks the random stream.
//! Every head runs against three instances with different configurations.

use std::cell::RefCell;

use native_host::json::{config_from_json, encode_head, parse_reply, result_to_json};
use native_host::vectors::{load_base_config, vectors_dir};
use native_host::{load_component_or_panic, EdgeHost, RequestHead};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config as PtConfig, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use serde_json::{json, Value};

const INTERESTING: [&str; 13] = [
    "origin",
    "host",
    "accept",
    "content-type",
    "mcp-session-id",
    "mcp-protocol-version",
    "access-control-request-method",
    "access-control-request-headers",
    "last-event-id",
    "mcp-method",
    "mcp-name",
    // Not read by the edge; present so lookups must skip them.
    "authorization",
    "x-forwarded-host",
];

/// `s` with its ASCII letters' case flipped at random.
fn random_case(s: &'static str) -> impl Strategy<Value = String> + Clone {
    any::<u64>().prop_map(move |mask| {
        s.chars()
            .enumerate()
            .map(|(i, c)| {
                // Mostly lowercase as sent by clients, sometimes mixed.
                if mask & 1 == 1 && (mask >> (i % 63 + 1)) & 1 == 1 {
                    if c.is_ascii_lowercase() {
                        c.to_ascii_uppercase()
                    } else {
                        c.to_ascii_lowercase()
                    }
                } else {
                    c
                }
            })
            .collect()
    })
}

fn name_of(i: usize) -> impl Strategy<Value = String> + Clone {
    random_case(INTERESTING[i])
}

/// Random padding with spaces and tabs (trim must remove exactly these).
fn padded(inner: impl Strategy<Value = String>) -> impl Strategy<Value = String> {
    (
        inner,
        select(vec![
            "", "", "", " ", "\t", "  ", " \t", "\u{a0}", "\r", "\n", "\u{b}",
        ]),
        select(vec!["", "", "", " ", "\t", " \t ", "\u{a0}", "\u{0}"]),
    )
        .prop_map(|(v, l, r)| format!("{l}{v}{r}"))
}

fn generic_value() -> BoxedStrategy<String> {
    prop_oneof![
        4 => "[ -~]{0,24}",
        2 => "[\u{0}-\u{ff}]{0,24}",
        2 => "(?s).{0,16}",
        1 => "[ -~]{200,3000}",
        1 => "[a-z]{1,5}".prop_map(|s| s.repeat(2000)),
        1 => Just(String::new()),
    ]
    .boxed()
}

fn origin_value() -> BoxedStrategy<String> {
    prop_oneof![
        6 => select(vec![
            "http://localhost:3000", "http://localhost", "HTTP://LOCALHOST:3000", "http://Localhost:8080",
            "http://127.0.0.1:8080", "http://127.0.0.1", "http://[::1]:9", "http://[::1]",
            "null", "NULL", "Null", "http://localhost:123456", "http://localhost:", "http://localhost:*",
            "http://localhost:3000/", "http://localhost:30a0", "https://localhost:3000", "http://evil.example",
            "https://app.example.com", "HTTPS://APP.EXAMPLE.COM", "https://app.example.com:443",
            "http://localhost.evil.example", "http://localhost:3000, http://localhost:3001", "*", "",
            "http://localhost:３０００", "http://localhost:3000\u{0}",
        ]).prop_map(str::to_owned),
        2 => "(http|https|HTTP|ws)://[a-z0-9.:\\[\\]*-]{0,20}",
        1 => generic_value(),
    ]
    .boxed()
}

fn host_value() -> BoxedStrategy<String> {
    prop_oneof![
        6 => select(vec![
            "localhost", "localhost:8000", "LOCALHOST:8000", "LocalHost", "127.0.0.1", "127.0.0.1:65535",
            "127.0.0.1:123456", "127.0.0.1:", "[::1]", "[::1]:80", "[::1", "[::1]x", "[::1]:", "[::1]:8a",
            ":80", "localhost:", "localhost:abc", "localhost:8000:1", "evil.example", "evil.example:8000",
            "", "*", "localhost.", "127.0.0.2", "[::2]:80", "localhost:0", "localhost:00000",
            "localhost:1 ", "lõcalhost",
        ]).prop_map(str::to_owned),
        2 => "[a-z0-9.:\\[\\]]{0,20}",
        1 => generic_value(),
    ]
    .boxed()
}

fn media_range() -> BoxedStrategy<String> {
    prop_oneof![
        8 => select(vec![
            "application/json", "text/event-stream", "*/*", "application/*", "text/*", "*/json",
            "APPLICATION/JSON", "Text/Event-Stream", "text/html", "application/json+x",
            "application/jsonx", "application", "/", "a/", "/b", "", " ", "\"a,b\"", "application/json/x",
            "applic ation/json", "*/event-stream", "text/event-stream ",
        ])
        .prop_map(str::to_owned),
        1 => "[!-~]{0,12}",
    ]
    .boxed()
}

fn media_param() -> BoxedStrategy<String> {
    prop_oneof![
        8 => select(vec![
            ";q=0", ";q=0.5", ";q=0.001", ";q=0.000", ";q=1", ";q=1.000", ";q=1.0", ";q=1.001", ";q=0.0001",
            ";q=2", ";q=-1", ";q=.5", ";q=0.", ";q=1.", ";Q=0", "; q = 0", " ; q=0 ", ";q=", ";q", ";=0",
            ";a=b;q=0", ";q=0;q=1", ";q=\"0\"", ";charset=\"x,y\"", ";x=\"\\\"\";q=0",
            ";x=\"unterminated", ";level=1", ";q=0,5", ";q=0x1", ";q=0.5 ",
        ])
        .prop_map(str::to_owned),
        1 => ";[!-~]{0,8}",
    ]
    .boxed()
}

fn accept_value() -> BoxedStrategy<String> {
    prop_oneof![
        6 => prop::collection::vec(
            (media_range(), prop::collection::vec(media_param(), 0..3)).prop_map(|(m, ps)| format!("{m}{}", ps.concat())),
            0..5,
        )
        .prop_flat_map(|els| select(vec![",", ", ", " , ", ",,"]).prop_map(move |sep| els.join(sep))),
        1 => generic_value(),
    ]
    .boxed()
}

fn content_type_value() -> BoxedStrategy<String> {
    prop_oneof![
        5 => select(vec![
            "application/json", "Application/JSON; charset=utf-8", " application/json ;x", "application/json;",
            "application/json-seq", "application/jsonp", "text/plain", "", ";", "application/json\t",
            "application/json, text/plain", "multipart/form-data; boundary=x", "application/*",
        ])
        .prop_map(str::to_owned),
        1 => generic_value(),
    ]
    .boxed()
}

fn session_value() -> BoxedStrategy<String> {
    prop_oneof![
        4 => "[!-~]{1,40}",
        1 => "[!-~]{250,260}",
        1 => "[!-~]{1,8} [!-~]{1,8}",
        1 => select(vec!["", "é", "\u{7f}", "abc\u{0}", "a\tb", "ＡＢＣ", "abc\u{85}"]).prop_map(str::to_owned),
        1 => generic_value(),
    ]
    .boxed()
}

fn version_value() -> BoxedStrategy<String> {
    prop_oneof![
        5 => select(vec![
            "2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28", "2024-11-05", "2025-06-18, 2025-06-18",
            "2025-06-18,2025-06-18", "", "2025-6-18", "2025-06-18\u{0}", "2026-07-28 ",
        ])
        .prop_map(str::to_owned),
        1 => generic_value(),
    ]
    .boxed()
}

fn acrm_value() -> BoxedStrategy<String> {
    prop_oneof![
        5 => select(vec![
            "GET", "POST", "DELETE", "OPTIONS", "PUT", "PATCH", "HEAD", "post", "Post", "", "GET, POST", "POST,",
        ])
        .prop_map(str::to_owned),
        1 => generic_value(),
    ]
    .boxed()
}

fn acrh_value() -> BoxedStrategy<String> {
    let one = prop_oneof![
        6 => (0..INTERESTING.len()).prop_flat_map(name_of),
        2 => select(vec![
            "content-type", "Accept", "AUTHORIZATION", "x-custom", "mcp-session-id", "", " ", "last-event-id",
            "Mcp-Method", "mcp-name", "x-requested-with", "content-type ",
        ])
        .prop_map(str::to_owned),
        1 => "[!-~]{0,10}",
    ];
    prop_oneof![
        6 => prop::collection::vec(one, 0..5)
            .prop_flat_map(|ns| select(vec![",", ", ", " , ", ",,", "\t,"]).prop_map(move |sep| ns.join(sep))),
        1 => generic_value(),
    ]
    .boxed()
}

fn header() -> BoxedStrategy<(String, String)> {
    prop_oneof![
        3 => (name_of(0), padded(origin_value())),
        3 => (name_of(1), padded(host_value())),
        3 => (name_of(2), padded(accept_value())),
        2 => (name_of(3), padded(content_type_value())),
        2 => (name_of(4), padded(session_value())),
        2 => (name_of(5), padded(version_value())),
        2 => (name_of(6), padded(acrm_value())),
        2 => (name_of(7), padded(acrh_value())),
        1 => (name_of(8), generic_value()),
        1 => (name_of(9), generic_value()),
        1 => (name_of(10), generic_value()),
        1 => ((0..INTERESTING.len()).prop_flat_map(name_of), generic_value()),
        1 => ("[!#$%&'*+.^_`|~0-9A-Za-z-]{1,16}", generic_value()),
        1 => ("(?s).{0,8}", generic_value()),
        1 => (select(vec!["origin ", " host", "accept\u{0}", "ORİGİN", "hoſt", "content_type", ""]).prop_map(str::to_owned), generic_value()),
    ]
    .boxed()
}

fn headers() -> impl Strategy<Value = Vec<(String, String)>> {
    (
        prop::collection::vec(header(), 0..10),
        prop::option::of((any::<prop::sample::Index>(), any::<bool>(), generic_value())),
    )
        .prop_map(|(mut hs, dup)| {
            // Sometimes duplicate one header (same value or another one) at
            // the end, with its name's case changed.
            if let (Some((idx, same, other)), false) = (dup, hs.is_empty()) {
                let (n, v) = hs[idx.index(hs.len())].clone();
                let v = if same { v } else { other };
                hs.push((n.to_ascii_uppercase(), v));
            }
            hs
        })
}

fn method() -> BoxedStrategy<String> {
    prop_oneof![
        8 => select(vec!["GET", "POST", "DELETE", "OPTIONS", "HEAD", "PUT"]).prop_flat_map(random_case),
        2 => select(vec!["PATCH", "patch", "CONNECT", "TRACE", "options ", " GET", "GET\u{0}", "ＧＥＴ", "optionſ"])
            .prop_map(str::to_owned),
        1 => "[!#$%&'*+.^_`|~0-9A-Za-z-]{1,10}",
        1 => "(?s).{0,8}",
        1 => Just(String::new()),
    ]
    .boxed()
}

fn segment() -> BoxedStrategy<String> {
    prop_oneof![
        10 => select(vec![
            "mcp", "sse", "message", "ws", "health", "servers", "gw", "v1", "srv-1", "a.b_c~d", ".", "..", "",
            "MCP", "Mcp", "%6Dcp", "%6dcp", "m%63p", "%2F", "%2f", "%25", "%252F", "%", "%G1", "%4", "%e9",
            "%7E", "%2E", "%2e%2E", ".%2e", "é", "ø", "\u{0}", "\t", " ", "%00", "~", ";", "?", "#", "\\",
            "mcp;x=1", "servers%2Fx", "%73ervers", "1", "-", "_",
        ])
        .prop_map(str::to_owned),
        2 => "[A-Za-z0-9._~-]{1,70}",
        1 => "[A-Za-z0-9._~%-]{60,66}",
        1 => "(?s).{0,6}",
        1 => "[%0-9a-fA-FgG]{1,6}",
    ]
    .boxed()
}

fn path() -> BoxedStrategy<String> {
    prop_oneof![
        12 => (
            select(vec!["/", "/", "/", "/", "//", "/./", "/../", "/gw/v1/", "/gw/", "/GW/v1/"]),
            prop::collection::vec(segment(), 0..7),
            select(vec!["", "", "", "/", "//", "/.", "/.."]),
        )
            .prop_map(|(lead, segs, trail)| format!("{lead}{}{trail}", segs.join("/"))),
        1 => select(vec!["", "*", "mcp", "http://localhost/mcp", "%2Fmcp", "\\mcp", " /mcp"]).prop_map(str::to_owned),
        1 => "(?s).{0,12}",
        1 => "/[ -~]{0,40}",
    ]
    .boxed()
}

fn hostile_head() -> impl Strategy<Value = RequestHead> {
    (
        method(),
        path(),
        prop_oneof![4 => Just(String::new()), 1 => "(?s).{0,10}"],
        headers(),
    )
        .prop_map(|(method, path, query, headers)| RequestHead {
            method,
            path,
            query,
            headers,
        })
}

/// Requests a real client or browser could send, so that allowed
/// preflights, server routes and accepted origins are reached often; the
/// header values still come from the hostile generators part of the time.
fn plausible_head() -> impl Strategy<Value = RequestHead> {
    let valid = |v: Vec<&'static str>, other: BoxedStrategy<String>| {
        prop_oneof![3 => select(v).prop_map(str::to_owned), 1 => other].boxed()
    };
    let opt = |name: usize, value: BoxedStrategy<String>| {
        prop::option::weighted(0.7, (name_of(name), value))
    };
    (
        select(vec![
            "GET", "POST", "DELETE", "OPTIONS", "OPTIONS", "options", "PUT",
        ])
        .prop_map(str::to_owned),
        select(vec![
            "/mcp",
            "/mcp/",
            "//mcp",
            "/sse",
            "/message",
            "/ws",
            "/health",
            "/servers/srv-1/mcp",
            "/servers/a.b_c~d/sse",
            "/servers/srv-1/message",
            "/gw/v1/mcp",
            "/gw/v1/servers/x/mcp",
            "/gw/mcp",
            "/gw/servers/x/ws",
            "/x/../mcp",
            "/%6Dcp",
        ])
        .prop_map(str::to_owned),
        (
            opt(
                1,
                valid(
                    vec!["localhost:8000", "127.0.0.1:9", "[::1]:80", "localhost"],
                    host_value(),
                ),
            ),
            opt(
                0,
                valid(
                    vec![
                        "http://localhost:3000",
                        "https://app.example.com",
                        "null",
                        "http://[::1]:1",
                    ],
                    origin_value(),
                ),
            ),
            opt(
                6,
                valid(vec!["POST", "GET", "DELETE", "OPTIONS"], acrm_value()),
            ),
            opt(
                7,
                valid(
                    vec![
                        "content-type",
                        "Content-Type, mcp-session-id",
                        "authorization,accept",
                        "",
                    ],
                    acrh_value(),
                ),
            ),
            opt(
                2,
                valid(
                    vec![
                        "application/json, text/event-stream",
                        "*/*",
                        "text/event-stream",
                    ],
                    accept_value(),
                ),
            ),
            opt(3, content_type_value()),
            opt(4, session_value()),
            opt(5, version_value()),
        ),
    )
        .prop_map(|(method, path, (h, o, m, rh, a, ct, s, v))| RequestHead {
            method,
            path,
            query: String::new(),
            headers: [h, o, m, rh, a, ct, s, v].into_iter().flatten().collect(),
        })
}

/// CORS preflights aimed at MCP paths (with or without the prefixes of the
/// test configs), so the 204/403 decision is exercised often.
fn preflight_head() -> impl Strategy<Value = RequestHead> {
    let valid = |v: Vec<&'static str>, other: BoxedStrategy<String>| {
        prop_oneof![4 => select(v).prop_map(str::to_owned), 1 => other].boxed()
    };
    (
        prop_oneof![4 => Just("OPTIONS".to_owned()), 1 => random_case("options")],
        select(vec![
            "/mcp",
            "/servers/srv-1/mcp",
            "/gw/v1/mcp",
            "/gw/v1/servers/x/mcp",
            "/gw/mcp",
            "/gw/servers/x/mcp",
            "/mcp/",
            "/sse",
        ])
        .prop_map(str::to_owned),
        (
            prop::option::weighted(
                0.9,
                (
                    name_of(1),
                    valid(vec!["localhost:8000", "127.0.0.1", "[::1]:1"], host_value()),
                ),
            ),
            (
                name_of(0),
                valid(
                    vec![
                        "http://localhost:3000",
                        "https://app.example.com",
                        "null",
                        "http://[::1]:1",
                    ],
                    origin_value(),
                ),
            ),
            (
                name_of(6),
                valid(vec!["POST", "GET", "DELETE", "OPTIONS"], acrm_value()),
            ),
            prop::option::weighted(
                0.6,
                (
                    name_of(7),
                    valid(
                        vec![
                            "content-type",
                            "Content-Type, mcp-session-id",
                            "AUTHORIZATION,accept",
                            "mcp-protocol-version , content-type,content-type",
                        ],
                        acrh_value(),
                    ),
                ),
            ),
            prop::collection::vec(header(), 0..3),
        ),
    )
        .prop_map(|(method, path, (h, o, m, rh, extra))| {
            let mut headers: Vec<(String, String)> =
                h.into_iter().chain([o, m]).chain(rh).collect();
            headers.extend(extra);
            RequestHead {
                method,
                path,
                query: String::new(),
                headers,
            }
        })
}

fn request_head() -> impl Strategy<Value = RequestHead> {
    prop_oneof![4 => hostile_head(), 2 => plausible_head(), 1 => preflight_head()]
}

/// Three configurations covering prefix/credentials/wildcards.
fn configs() -> Vec<(&'static str, Value)> {
    let base = load_base_config(&vectors_dir()).expect("tests/vectors/base-config.json");
    let mut a = base.clone();
    a["path_prefix"] = json!("/gw/v1");
    a["allow_credentials"] = json!(true);
    a["allowed_hosts"] = json!(["*"]);
    a["allowed_origins"] = json!(["https://app.example.com", "null", "http://localhost:*"]);
    a["allowed_headers"] = json!(["content-type", "mcp-session-id", "authorization"]);
    a["max_age"] = json!(5);
    let mut b = base.clone();
    b["allowed_origins"] = json!(["*"]);
    b["allowed_hosts"] = json!(["localhost:8000", "[::1]", "127.0.0.1:65535"]);
    b["supported_versions"] = json!(["2026-07-28"]);
    b["default_version"] = json!("2026-07-28");
    b["path_prefix"] = json!("/gw");
    vec![
        ("base", base),
        ("prefix+credentials", a),
        ("wildcard-origin", b),
    ]
}

fn fuzz_cases() -> u32 {
    std::env::var("MCPGW_FUZZ_CASES")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(300)
}

fn seed() -> (String, [u8; 32]) {
    let text = std::env::var("MCPGW_FUZZ_SEED").unwrap_or_else(|_| "mcpgw-edge".to_owned());
    // FNV-1a spread over 32 bytes: any text is a valid seed.
    let mut out = [0u8; 32];
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, chunk) in out.chunks_mut(8).enumerate() {
        for b in text.bytes().chain([i as u8]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        chunk.copy_from_slice(&h.to_le_bytes());
    }
    (text, out)
}

struct Instance {
    label: &'static str,
    host: EdgeHost,
    /// The config as the typed record, for the compact encoding's host half.
    cfg: native_host::Config,
}

/// What the generated heads led to, to show the property is not vacuous.
#[derive(Default)]
struct Stats {
    max_fuel: (u64, u64),
    outcomes: std::collections::BTreeMap<String, u32>,
}

impl Stats {
    fn record(&mut self, outcome: &Value) {
        let mut bump = |k: String| *self.outcomes.entry(k).or_default() += 1;
        if let Some(status) = outcome.pointer("/preflight/status") {
            bump(format!("preflight {status}"));
        } else if let Some(f) = outcome.get("forward") {
            let s = |k: &str| f[k].as_str().unwrap_or("null").to_owned();
            bump(format!("route {}", s("route")));
            if !f["server_id"].is_null() {
                bump("with server_id".into());
            }
            bump(format!("origin {}", s("origin_state")));
            bump(format!("host {}", s("host_state")));
            bump(format!("session {}", s("session_state")));
            bump(format!("protocol {}", s("protocol_state")));
            bump(format!("content-type {}", s("content_type")));
            bump(format!(
                "accept json={} sse={}",
                f["accept_json"], f["accept_sse"]
            ));
        }
    }
}

fn check(inst: &mut Instance, head: &RequestHead, stats: &mut Stats) -> Result<(), TestCaseError> {
    let label = inst.label;
    let host = &mut inst.host;
    let typed = match host.evaluate(head) {
        Ok(r) => result_to_json(&r),
        Err(e) => {
            let msg = format!("[{label}] typed evaluate trapped: {e}");
            host.rebuild().expect("rebuild after trap");
            return Err(TestCaseError::fail(msg));
        }
    };
    let typed_fuel = host.last_fuel_used();
    let encoded_text = encode_head(head);
    let encoded = match host.evaluate_encoded(&encoded_text) {
        Ok(s) => parse_reply(&s),
        Err(e) => {
            let msg = format!("[{label}] evaluate-encoded trapped: {e}");
            host.rebuild().expect("rebuild after trap");
            return Err(TestCaseError::fail(msg));
        }
    };
    stats.max_fuel.0 = stats.max_fuel.0.max(typed_fuel);
    stats.max_fuel.1 = stats.max_fuel.1.max(host.last_fuel_used());
    stats.record(&typed);
    prop_assert!(
        typed == encoded,
        "[{label}] typed and encoded outcomes differ\n  head:    {encoded_text}\n  typed:   {typed}\n  encoded: {encoded}"
    );
    // The compact encoding (section 16), this crate's host half included.
    let compact = native_host::compact::evaluate_with(
        |text| host.evaluate_compact(text).map_err(|e| e.to_string()),
        &inst.cfg,
        head,
    );
    if compact.is_err() {
        host.rebuild().expect("rebuild after a failed compact call");
    }
    match compact {
        Ok(Some(got)) => prop_assert!(
            got == encoded,
            "[{label}] compact and encoded outcomes differ\n  head:    {encoded_text}\n  compact: {got}\n  encoded: {encoded}"
        ),
        Ok(None) => {}
        Err(e) => prop_assert!(false, "[{label}] evaluate-compact failed: {e}\n  head: {encoded_text}"),
    }
    // And with the headers packed (values as received: the component trims them).
    let packed = native_host::compact::evaluate_packed_with(
        |text| host.evaluate_compact(text).map_err(|e| e.to_string()),
        &inst.cfg,
        head,
    );
    if packed.is_err() {
        host.rebuild().expect("rebuild after a failed compact call");
    }
    match packed {
        Ok(Some(got)) => prop_assert!(
            got == encoded,
            "[{label}] packed compact and encoded outcomes differ\n  head:    {encoded_text}\n  packed:  {got}\n  encoded: {encoded}"
        ),
        Ok(None) => {}
        Err(e) => prop_assert!(false, "[{label}] evaluate-compact (packed) failed: {e}\n  head: {encoded_text}"),
    }
    prop_assert!(
        typed.get("error").is_none(),
        "[{label}] a configured instance answered with an error\n  head: {encoded_text}\n  outcome: {typed}"
    );
    Ok(())
}

#[test]
fn typed_and_encoded_agree_and_never_trap() {
    let component = load_component_or_panic();
    let mut instances = Vec::new();
    for (label, cfg) in configs() {
        let mut host = component.instantiate().expect("instantiate");
        let typed = config_from_json(&cfg).expect("typed config");
        let r = host.configure(&typed).expect("configure trapped");
        assert!(
            r.is_ok(),
            "[{label}] config refused by configure: {r:?}\n{cfg}"
        );
        let r = host
            .configure_encoded(&cfg.to_string())
            .expect("configure-encoded trapped");
        assert_eq!(
            r, "",
            "[{label}] config refused by configure-encoded\n{cfg}"
        );
        instances.push(Instance {
            label,
            host,
            cfg: typed,
        });
    }
    let instances = RefCell::new(instances);
    let stats = RefCell::new(Stats::default());

    let cases = fuzz_cases();
    let (seed_text, seed) = seed();
    eprintln!("differential: {cases} heads x 3 configs, seed {seed_text:?}");
    let config = PtConfig {
        cases,
        failure_persistence: None,
        max_shrink_iters: 2048,
        ..PtConfig::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed));
    let result = runner.run(&request_head(), |head| {
        let mut insts = instances.borrow_mut();
        let mut stats = stats.borrow_mut();
        for inst in insts.iter_mut() {
            check(inst, &head, &mut stats)?;
        }
        Ok(())
    });
    let stats = stats.into_inner();
    eprintln!(
        "differential: max fuel per evaluate: typed {}, encoded {}",
        stats.max_fuel.0, stats.max_fuel.1
    );
    let summary: Vec<String> = stats
        .outcomes
        .iter()
        .map(|(k, n)| format!("{k}: {n}"))
        .collect();
    eprintln!(
        "differential: outcomes (incl. shrinking): {}",
        summary.join(", ")
    );
    if let Err(e) = result {
        panic!(
            "property failed (seed {seed_text:?}, rerun with MCPGW_FUZZ_SEED to reproduce): {e}"
        );
    }
}

/// The generators themselves produce the hostile material they promise
/// (guards against a strategy silently collapsing to easy inputs).
#[test]
fn generator_covers_hostile_inputs() {
    let (_, seed) = seed();
    let mut runner = TestRunner::new_with_rng(
        PtConfig::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed),
    );
    let strat = request_head();
    let (mut pct, mut dots, mut non_ascii, mut ctrl, mut dups, mut long, mut mixed_case) =
        (0, 0, 0, 0, 0, 0, 0);
    for _ in 0..2000 {
        let h = strat.new_tree(&mut runner).unwrap().current();
        pct += h.path.contains('%') as u32;
        dots += h.path.contains("/..") as u32;
        non_ascii += (!h.path.is_ascii() || h.headers.iter().any(|(_, v)| !v.is_ascii())) as u32;
        ctrl += h
            .headers
            .iter()
            .any(|(n, v)| n.chars().chain(v.chars()).any(|c| c.is_control()))
            as u32;
        let mut names: Vec<String> = h
            .headers
            .iter()
            .map(|(n, _)| n.to_ascii_lowercase())
            .collect();
        names.sort();
        dups += names.windows(2).any(|w| w[0] == w[1]) as u32;
        long += h.headers.iter().any(|(_, v)| v.len() > 1000) as u32;
        mixed_case += h
            .headers
            .iter()
            .any(|(n, _)| n.chars().any(|c| c.is_ascii_uppercase())) as u32;
    }
    for (what, n) in [
        ("paths with %", pct),
        ("paths with ..", dots),
        ("non-ASCII", non_ascii),
        ("control chars in headers", ctrl),
        ("duplicate headers", dups),
        ("long values", long),
        ("mixed-case names", mixed_case),
    ] {
        assert!(
            n >= 40,
            "generator produced only {n}/2000 heads with {what}"
        );
    }
}
