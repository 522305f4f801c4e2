//! `fermyon:spin/variables@2.0.0` and, for WASI 0.3 components,
//! `spin:variables/variables@3.0.0`: a component reads the variables it
//! declares in the manifest, already resolved at start-up. A read of one it
//! does not declare gets `undefined`, as on Spin, and is also logged: it is
//! almost always a manifest that forgot to hand the component a variable.

use wasmtime::component::Accessor;

use super::SpinHost;
use super::fermyon::spin2_0_0::variables as v2;
use super::spin::variables::variables as v3;
use crate::state::RequestState;
use crate::variables::LookupError;

impl RequestState {
    fn variable(&self, name: &str) -> Result<String, LookupError> {
        self.component.variables.get(name).inspect_err(|e| {
            if let LookupError::Undefined(_) = e {
                eprintln!(
                    "[{}] read variable `{name}`, which the manifest does not give it",
                    self.component.id
                );
            }
        })
    }
}

impl v2::Host for RequestState {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<String, v2::Error>> {
        Ok(self.variable(&name).map_err(|e| match e {
            LookupError::InvalidName(msg) => v2::Error::InvalidName(msg),
            LookupError::Undefined(msg) => v2::Error::Undefined(msg),
        }))
    }
}

impl v3::Host for RequestState {}

impl v3::HostWithStore<RequestState> for SpinHost {
    async fn get(
        accessor: &Accessor<RequestState, Self>,
        name: String,
    ) -> wasmtime::Result<Result<String, v3::Error>> {
        let value = accessor.with(|mut access| access.get().variable(&name));
        Ok(value.map_err(|e| match e {
            LookupError::InvalidName(msg) => v3::Error::InvalidName(msg),
            LookupError::Undefined(msg) => v3::Error::Undefined(msg),
        }))
    }
}
