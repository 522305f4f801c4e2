//! The core's [`Variables`] over Spin's variables.

use flashspin_core::config::Variables;

/// Spin variables of the running component.
pub struct SpinVariables;

impl Variables for SpinVariables {
    fn get(&self, name: &str) -> Result<String, String> {
        use spin_sdk::variables::Error;
        // The variant's own text, without pulling formatting code into every
        // component.
        spin_sdk::variables::get(name).map_err(|e| match e {
            Error::InvalidName(m) | Error::Undefined(m) | Error::Provider(m) | Error::Other(m) => m,
        })
    }
}
