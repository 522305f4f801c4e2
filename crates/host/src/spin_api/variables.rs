//! `fermyon:spin/variables`: a component reads the variables it declares in
//! the manifest, already resolved at start-up. A read of one it does not
//! declare gets `undefined`, as on Spin, and is also logged: it is almost
//! always a manifest that forgot to hand the component a variable.

use super::fermyon::spin2_0_0::variables::{Error, Host};
use crate::state::RequestState;
use crate::variables::LookupError;

impl Host for RequestState {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<String, Error>> {
        Ok(self.component.variables.get(&name).map_err(|e| match e {
            LookupError::InvalidName(msg) => Error::InvalidName(msg),
            LookupError::Undefined(msg) => {
                eprintln!(
                    "[{}] read variable `{name}`, which the manifest does not give it",
                    self.component.id
                );
                Error::Undefined(msg)
            }
        }))
    }
}
