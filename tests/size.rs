//! The app's Wasm size budget.

use crate::harness::built_app_components;

/// The size budget of each component, in either build (see BENCHMARKS.md,
/// "Wasm size"): small modules load and instantiate fast at the edge. It
/// was 300 KB until the core went async (about 5% more code) and the WASI
/// 0.3 build came (spin-sdk 7's HTTP stack, about 25% more).
#[test]
fn every_component_is_under_400_kb() {
    const BUDGET: u64 = 400_000;
    let components = built_app_components();
    assert!(components.len() >= 9, "{components:?}");
    for (name, path) in components {
        let size = std::fs::metadata(&path).unwrap().len();
        assert!(size < BUDGET, "{name} is {size} bytes ({})", path.display());
    }
}
