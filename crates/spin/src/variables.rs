//! The core's [`Variables`] over Spin's variables.

use flashspin_core::config::Variables;

/// Spin variables of the running component.
pub struct SpinVariables;

impl Variables for SpinVariables {
    fn get(&self, name: &str) -> Result<String, String> {
        spin_sdk::variables::get(name).map_err(|e| e.to_string())
    }
}
