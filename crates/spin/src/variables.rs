//! The core's [`Variables`] over Spin's variables.

use flashspin_core::config::Variables;

/// Spin variables of the running component.
pub struct SpinVariables;

impl Variables for SpinVariables {
    fn get(&self, name: &str) -> Option<String> {
        spin_sdk::variables::get(name).ok()
    }
}
