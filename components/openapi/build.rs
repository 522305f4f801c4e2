//! Compiles in `openapi.json` without its indentation: the file is kept
//! pretty for people, the component serves the same document minified,
//! which halves its size. A document that is not JSON fails the build.

use std::path::PathBuf;

fn main() {
    let source =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("../../openapi.json");
    println!("cargo::rerun-if-changed={}", source.display());
    let text = std::fs::read_to_string(&source).expect("openapi.json is readable");
    let document: serde_json::Value =
        serde_json::from_str(&text).expect("openapi.json is valid JSON");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("openapi.min.json");
    std::fs::write(out, serde_json::to_vec(&document).unwrap()).unwrap();
}
