//! The Spin side of Flashspin's seam: the only crate besides the components
//! that touches `spin_sdk`. It adapts Spin's outbound Redis to the core's
//! [`flashspin_core::redis::Redis`] trait and builds JSON responses.

pub mod http;
pub mod redis;
