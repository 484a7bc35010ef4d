//! Reading a built component's top-level imports and exports (wasmparser;
//! no runtime needed).

use std::path::{Path, PathBuf};

use wasmparser::{Encoding, Parser, Payload};

/// The repository's root (this crate is plugins/sdk).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The component's top-level import and export names, sorted; panics when
/// the file is not a component.
pub fn interface(path: &Path) -> (Vec<String>, Vec<String>) {
    let bytes = std::fs::read(path)
        .unwrap_or_else(|e| panic!("{}: {e} (run `make plugins` first)", path.display()));
    let (mut imports, mut exports) = (Vec::new(), Vec::new());
    let mut depth = 0;
    for payload in Parser::new(0).parse_all(&bytes) {
        match payload.unwrap_or_else(|e| panic!("{}: {e}", path.display())) {
            Payload::Version { encoding, .. } => {
                assert!(
                    depth > 0 || encoding == Encoding::Component,
                    "{}: not a component",
                    path.display()
                );
                depth += 1;
            }
            Payload::End(_) => depth -= 1,
            Payload::ComponentImportSection(section) if depth == 1 => {
                for import in section {
                    imports.push(import.unwrap().name.name.to_owned());
                }
            }
            Payload::ComponentExportSection(section) if depth == 1 => {
                for export in section {
                    exports.push(export.unwrap().name.name.to_owned());
                }
            }
            _ => {}
        }
    }
    imports.sort();
    exports.sort();
    (imports, exports)
}
