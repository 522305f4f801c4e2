//! `fermyon:spin/variables`: a component reads the variables it declares in
//! the manifest, already resolved at start-up.

use super::fermyon::spin::variables::{Error, Host};
use crate::state::RequestState;
use crate::variables::LookupError;

impl Host for RequestState {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<String, Error>> {
        Ok(self.component.variables.get(&name).map_err(|e| match e {
            LookupError::InvalidName(msg) => Error::InvalidName(msg),
            LookupError::Undefined(msg) => Error::Undefined(msg),
        }))
    }
}
