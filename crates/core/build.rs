//! Copies the Lua scripts into `OUT_DIR` without their comments, blank lines
//! and indentation: every component embeds the scripts it runs, and the
//! headers that document them would otherwise cost kilobytes of Wasm in
//! each. The files in `src/scripts` stay the ones to read and edit.

use std::path::Path;

fn main() {
    let source = Path::new("src/scripts");
    let out = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("scripts");
    std::fs::create_dir_all(&out).expect("OUT_DIR is writable");
    println!("cargo:rerun-if-changed=src/scripts");
    for entry in std::fs::read_dir(source).expect("src/scripts exists") {
        let path = entry.expect("readable directory").path();
        if path.extension().is_none_or(|e| e != "lua") {
            continue;
        }
        println!("cargo:rerun-if-changed={}", path.display());
        let text = std::fs::read_to_string(&path).expect("scripts are UTF-8");
        let compact: String = text
            .lines()
            .map(str::trim)
            // Only whole-line comments go: `--` after code may sit in a string.
            .filter(|line| !line.is_empty() && !line.starts_with("--"))
            .flat_map(|line| [line, "\n"])
            .collect();
        std::fs::write(out.join(path.file_name().expect("a file")), compact)
            .expect("OUT_DIR is writable");
    }
}
