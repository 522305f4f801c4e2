//! Black-box tests: the components compiled to Wasm, served by a real host,
//! against a real `redis-server`, over real HTTP. See `harness` for how an
//! app is started and how to run the suite against a real Spin.

mod harness;

mod browser;
mod cluster;
mod conformance;
mod export;
mod health;
mod host;
mod login;
mod lottery;
mod manifest;
mod openapi;
mod orders;
mod postgres;
mod ratelimit;
mod redis_trigger;
mod size;
mod vouchers;
mod wasip3;
mod web;
