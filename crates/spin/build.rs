//! Lists the variables the app's manifests give their components, for the
//! WASI 0.3 build: there, reading a variable is async while the core reads
//! them synchronously, so an instance fetches every one it may need before
//! its first request runs (`variables::prepare`).

use std::path::Path;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut names = std::collections::BTreeSet::new();
    for manifest in ["spin.toml", "export.toml"] {
        let path = root.join(manifest);
        println!("cargo:rerun-if-changed={}", path.display());
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let mut in_variables = false;
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                in_variables = line.starts_with("[component.") && line.ends_with(".variables]");
                continue;
            }
            if in_variables && let Some((name, _)) = line.split_once('=') {
                let name = name.trim();
                if !name.is_empty() && !name.starts_with('#') {
                    names.insert(name.to_string());
                }
            }
        }
    }
    let list: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    let out =
        Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("variable_names.rs");
    std::fs::write(
        out,
        format!(
            "/// Every variable a component of the app's manifests is given.\npub const NAMES: &[&str] = &[{}];\n",
            list.join(", ")
        ),
    )
    .expect("OUT_DIR is writable");
}
