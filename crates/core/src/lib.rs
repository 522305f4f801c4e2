//! Flashspin's core: the business rules every component shares. It knows
//! nothing about Spin or HTTP transport: components parse requests into the
//! types defined here, call in, and map the outcome to a response. All Redis
//! traffic goes through the [`redis::Redis`] seam.

pub mod admin;
pub mod body;
pub mod catalog;
pub mod client_ip;
pub mod config;
pub mod error;
pub mod gate;
pub mod health;
pub mod ids;
pub mod keys;
pub mod login;
pub mod lottery;
pub mod page;
pub mod phone;
pub mod ratelimit;
pub mod redis;
pub mod script;
pub mod session;
pub mod sha1;
pub mod time;
pub mod voucher;

pub use error::ApiError;
