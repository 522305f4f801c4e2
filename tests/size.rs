//! The app's Wasm size budget.

use crate::harness::built_app_components;

/// The size budget of each component (see BENCHMARKS.md): small modules
/// load and instantiate fast at the edge.
#[test]
fn every_component_is_under_300_kb() {
    const BUDGET: u64 = 300_000;
    let components = built_app_components();
    assert!(components.len() >= 9, "{components:?}");
    for (name, path) in components {
        let size = std::fs::metadata(&path).unwrap().len();
        assert!(size < BUDGET, "{name} is {size} bytes ({})", path.display());
    }
}
