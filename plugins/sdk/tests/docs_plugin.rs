//! docs/plugins.md's "Write your first plugin" works: its `Cargo.toml` and
//! `src/lib.rs` (the blocks after `<!-- docs-test: ... -->`), with the SDK
//! path pointed at this checkout, build into a component that exports the
//! plugin interface and imports nothing.

mod common;

use std::path::Path;
use std::process::Command;

/// The fenced block right after `<!-- docs-test: <name> -->`.
fn block(doc: &str, name: &str) -> String {
    let marker = format!("<!-- docs-test: {name} -->");
    let after = doc
        .split_once(&marker)
        .unwrap_or_else(|| panic!("no {marker} in docs/plugins.md"))
        .1;
    let body = after
        .trim_start()
        .split_once('\n')
        .expect("a fenced block after the marker")
        .1;
    body.split_once("\n```")
        .expect("the block's closing fence")
        .0
        .to_owned()
        + "\n"
}

#[test]
fn the_docs_plugin_builds_into_a_plugin_component() {
    let repo = common::repo();
    let doc = std::fs::read_to_string(repo.join("docs/plugins.md")).unwrap();
    let manifest = block(&doc, "Cargo.toml");
    let source = block(&doc, "src/lib.rs");
    let sdk_line = "mcpgw-plugin-sdk = { path = \"../mcpgw/plugins/sdk\" }";
    assert!(
        manifest.contains(sdk_line),
        "the docs' Cargo.toml names the SDK as {sdk_line}"
    );
    let sdk = repo.join("plugins/sdk");
    let manifest = manifest.replace(sdk_line, &format!("mcpgw-plugin-sdk = {{ path = {:?} }}", sdk.display()))
        // Its own workspace, not a member of this one.
        + "\n[workspace]\n";

    let dir = std::env::temp_dir().join(format!("mcpgw-docs-plugin-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(dir.join("Cargo.toml"), manifest).unwrap();
    std::fs::write(dir.join("src/lib.rs"), source).unwrap();
    // The workspace's lock file: the same dependency versions, resolved offline.
    std::fs::copy(repo.join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    let target = repo.join("target/docs-plugin"); // kept between runs: a rebuild is quick

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let run = |args: &[&str]| {
        let status = Command::new(&cargo)
            .args(args)
            .current_dir(&dir)
            .env("CARGO_TARGET_DIR", &target)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "cargo {args:?} in {} failed",
            dir.display()
        );
    };
    // Its own unit test natively, then the component.
    run(&["test", "--offline", "--quiet"]);
    run(&[
        "build",
        "--offline",
        "--release",
        "--target",
        "wasm32-wasip2",
    ]);
    let wasm = target.join("wasm32-wasip2/release/forbidden_words.wasm");
    let (imports, exports) = common::interface(Path::new(&wasm));
    assert_eq!(
        imports,
        Vec::<String>::new(),
        "the docs' plugin imports nothing"
    );
    assert_eq!(
        exports,
        ["mcpgw:plugin/plugin@1.0.0", "mcpgw:plugin/types@1.0.0"]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
