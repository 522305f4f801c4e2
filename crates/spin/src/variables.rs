//! The core's [`Variables`] over Spin's variables. The core reads them
//! synchronously. On WASI 0.2 so does Spin. On WASI 0.3 Spin's `get` is
//! async, so the instance reads the variables the manifests give its
//! component once, before its first request (`prepare`), and answers from
//! that: a warm
//! instance sees the values of its start, at most 128 requests or a second
//! of idleness old (Spin 4.1's reuse limits).

use flashspin_core::config::Variables;

/// Spin variables of the running component.
pub struct SpinVariables;

#[cfg(not(feature = "wasip3"))]
mod imp {
    use super::*;

    /// Nothing to do: WASI 0.2 reads variables when asked.
    pub async fn prepare(_component: &str) {}

    impl Variables for SpinVariables {
        fn get(&self, name: &str) -> Result<String, String> {
            use spin_sdk::variables::Error;
            // The variant's own text, without pulling formatting code into
            // every component.
            spin_sdk::variables::get(name).map_err(|e| match e {
                Error::InvalidName(m)
                | Error::Undefined(m)
                | Error::Provider(m)
                | Error::Other(m) => m,
            })
        }
    }
}

#[cfg(feature = "wasip3")]
mod imp {
    use std::cell::RefCell;
    use std::collections::HashMap;

    use super::*;

    include!(concat!(env!("OUT_DIR"), "/variable_names.rs"));

    thread_local! {
        /// The component's variables, as the instance read them first.
        static READ: RefCell<Option<HashMap<&'static str, Result<String, String>>>> =
            const { RefCell::new(None) };
    }

    /// Reads the variables the manifests give `component` (its package
    /// name, which is its id in the manifests), once per instance.
    pub async fn prepare(component: &str) {
        if READ.with(|read| read.borrow().is_some()) {
            return;
        }
        let names = GIVEN
            .iter()
            .find(|(c, _)| *c == component)
            .map_or(&[][..], |(_, names)| *names);
        let mut values = HashMap::new();
        for &name in names {
            use spin_sdk_wasip3::variables::Error;
            let value = spin_sdk_wasip3::variables::get(name)
                .await
                .map_err(|e| match e {
                    Error::InvalidName(m)
                    | Error::Undefined(m)
                    | Error::Provider(m)
                    | Error::Other(m) => m,
                });
            values.insert(name, value);
        }
        READ.with(|read| *read.borrow_mut() = Some(values));
    }

    impl Variables for SpinVariables {
        fn get(&self, name: &str) -> Result<String, String> {
            READ.with(
                |read| match read.borrow().as_ref().and_then(|v| v.get(name)) {
                    Some(value) => value.clone(),
                    None => Err(format!("variable {name} is not given to this component")),
                },
            )
        }
    }
}

pub use imp::prepare;
