//! The Spin side of Flashspin's seam: the only crate besides the components
//! that touches `spin_sdk`. It adapts Spin's outbound Redis and variables to
//! the core's traits, reads requests and builds JSON responses.

pub mod http;
// The exporter (its one user) is built for WASI 0.2 only, so far.
#[cfg(not(feature = "wasip3"))]
pub mod pg;
pub mod redis;
pub mod request;
pub mod route;
pub mod sdk;
pub mod sms;
pub mod variables;
