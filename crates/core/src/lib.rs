//! Flashspin's core: the business rules every component shares. It knows
//! nothing about Spin or HTTP transport: components parse requests into the
//! types defined here, call in, and map the outcome to a response. All Redis
//! traffic goes through the [`redis::Redis`] seam.

pub mod health;
pub mod redis;
