//! The built plugins (`make plugins`) import exactly what they use: nothing,
//! or a granted interface; only the WASI probe imports WASI.

mod common;

const EXPORTS: [&str; 2] = ["mcpgw:plugin/plugin@1.0.0", "mcpgw:plugin/types@1.0.0"];

#[test]
fn plugins_import_only_what_they_call() {
    let dist = common::repo().join("plugins/dist");
    for (file, want) in [
        ("tool-guard.wasm", &[][..]),
        ("redact.wasm", &[]),
        ("args-guard.wasm", &[]),
        ("noop.wasm", &[]),
        ("rate-limit.wasm", &["mcpgw:plugin/clock@1.0.0"]),
        ("test/loop.wasm", &[]),
        ("test/alloc-bomb.wasm", &[]),
        ("test/panic.wasm", &[]),
        ("test/garbage.wasm", &[]),
        ("test/huge-output.wasm", &[]),
        ("test/clock-ungranted.wasm", &["mcpgw:plugin/clock@1.0.0"]),
        ("test/chatty.wasm", &["mcpgw:plugin/log@1.0.0"]),
    ] {
        let (imports, exports) = common::interface(&dist.join(file));
        assert_eq!(imports, want, "{file} imports");
        assert_eq!(exports, EXPORTS, "{file} exports");
    }
}

#[test]
fn the_wasi_probe_imports_wasi() {
    let (imports, exports) =
        common::interface(&common::repo().join("plugins/dist/test/wasi-probe.wasm"));
    for wasi in [
        "wasi:filesystem/",
        "wasi:cli/environment@",
        "wasi:clocks/wall-clock@",
    ] {
        assert!(
            imports.iter().any(|i| i.starts_with(wasi)),
            "no {wasi} in {imports:?}"
        );
    }
    assert_eq!(exports, EXPORTS);
}
