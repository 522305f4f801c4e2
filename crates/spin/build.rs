//! Lists the variables the app's manifests give each component, for the
//! WASI 0.3 build: there, reading a variable is async while the core reads
//! them synchronously, so an instance fetches its component's before its
//! first request runs (`variables::prepare`).

use std::path::Path;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut given: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    for manifest in ["spin.toml", "export.toml"] {
        let path = root.join(manifest);
        println!("cargo:rerun-if-changed={}", path.display());
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let mut component: Option<String> = None;
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                component = line
                    .strip_prefix("[component.")
                    .and_then(|rest| rest.strip_suffix(".variables]"))
                    .map(str::to_string);
                continue;
            }
            if let (Some(component), Some((name, _))) = (&component, line.split_once('=')) {
                let name = name.trim();
                if !name.is_empty() && !name.starts_with('#') {
                    given
                        .entry(component.clone())
                        .or_default()
                        .insert(name.to_string());
                }
            }
        }
    }
    let list: Vec<String> = given
        .iter()
        .map(|(component, names)| {
            let names: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
            format!("({component:?}, &[{}])", names.join(", "))
        })
        .collect();
    let out =
        Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("variable_names.rs");
    std::fs::write(
        out,
        format!(
            "/// The variables each component of the app's manifests is given.\npub const GIVEN: &[(&str, &[&str])] = &[{}];\n",
            list.join(", ")
        ),
    )
    .expect("OUT_DIR is writable");
}
