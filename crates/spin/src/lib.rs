//! The Spin side of Flashspin's seam: the only crate besides the components
//! that touches `spin_sdk`. It adapts Spin's outbound Redis and variables to
//! the core's traits, reads requests and builds JSON responses.

pub mod http;
pub mod parts;
pub mod pg;
pub mod redis;
pub mod request;
pub mod route;
pub mod sdk;
pub mod sms;
pub mod time;
pub mod variables;
