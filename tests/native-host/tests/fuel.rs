//! One source of truth for the edge's fuel: the native host gives the
//! component what the production host (host-python) gives it, base plus a
//! per-byte allowance for the head. The numbers live in the Python sources;
//! this test reads them there and fails when the Rust copies disagree.

use native_host::{fuel_for_head, workspace_root, DEFAULT_FUEL_BASE, FUEL_PER_HEAD_BYTE};

const SETTINGS: &str = "host-python/mcpgw/settings.py";
const WASM_CORE: &str = "host-python/mcpgw/edge/wasm_core.py";

fn read(relative: &str) -> String {
    let path = workspace_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The integer literal (`5_000_000`, an optional `# comment` after it) on the
/// one line of `relative` that starts with `prefix` once indentation is
/// trimmed.
fn python_int(relative: &str, prefix: &str) -> u64 {
    let text = read(relative);
    let values: Vec<&str> = text
        .lines()
        .filter_map(|line| line.trim_start().strip_prefix(prefix))
        .collect();
    let [value] = values.as_slice() else {
        panic!(
            "{relative}: expected exactly one line starting with `{prefix}`, found {}; \
             if the constant moved, update this test and tests/native-host/src/lib.rs",
            values.len()
        );
    };
    let literal = value.split('#').next().unwrap_or_default().trim();
    literal.replace('_', "").parse().unwrap_or_else(|e| {
        panic!("{relative}: `{prefix} {literal}` is not an integer literal ({e})")
    })
}

#[test]
fn base_fuel_is_productions_default() {
    let setting = python_int(SETTINGS, "edge_fuel: int =");
    let component_default = python_int(WASM_CORE, "DEFAULT_FUEL =");
    assert_eq!(
        setting, component_default,
        "{SETTINGS} edge_fuel and {WASM_CORE} DEFAULT_FUEL disagree"
    );
    assert_eq!(
        DEFAULT_FUEL_BASE, setting,
        "native-host DEFAULT_FUEL_BASE differs from MCPGW_EDGE_FUEL's default in {SETTINGS}"
    );
}

#[test]
fn per_byte_fuel_is_productions() {
    let per_byte = python_int(WASM_CORE, "FUEL_PER_BYTE =");
    assert_eq!(
        FUEL_PER_HEAD_BYTE, per_byte,
        "native-host FUEL_PER_HEAD_BYTE differs from FUEL_PER_BYTE in {WASM_CORE}"
    );
}

#[test]
fn formula_is_productions() {
    // Production: `fuel + FUEL_PER_BYTE * len(head)` before every
    // evaluate-encoded call (both call paths of wasm_core.py).
    let code: String = read(WASM_CORE)
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let formula = "self._fuel+FUEL_PER_BYTE*len(head)";
    assert!(
        code.matches(formula).count() >= 2,
        "{WASM_CORE} no longer sets `self._fuel + FUEL_PER_BYTE * len(head)` on both \
         evaluate-encoded paths: update native_host::fuel_for_head to its formula"
    );
    let base = DEFAULT_FUEL_BASE;
    assert_eq!(fuel_for_head(base, 0), base);
    assert_eq!(fuel_for_head(base, 1000), base + FUEL_PER_HEAD_BYTE * 1000);
    assert_eq!(fuel_for_head(u64::MAX, 1), u64::MAX);
}
