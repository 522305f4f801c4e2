//! `order-export`: moves order events from Redis to the shop's PostgreSQL
//! (see `flashspin_core::order_export`), when `pg_address` is set. Two ways
//! in, one job:
//!
//! - the Redis trigger: a script that changes an order publishes its
//!   voucher's id on `flashspin:order-export` unless the exporter was
//!   woken for that voucher already; each message exports that voucher's
//!   pending events;
//! - `POST /api/admin/orders/export` (admin key): exports every voucher's,
//!   for operators who run it from cron, and after the exporter was down
//!   (messages published while nobody listens are lost; the events are not).
//!   It first expires the orders that are due, which otherwise happens only
//!   when a request touches their voucher, so that a cron also brings
//!   expiries to PostgreSQL.

use std::time::{Duration, Instant};

use flashspin_core::ApiError;
use flashspin_core::ids::VoucherId;
use flashspin_core::order::OrderExport;
use flashspin_core::order_export::{self, Runner};
use flashspin_core::ratelimit::Endpoint;
use flashspin_core::voucher;
use flashspin_spin::pg::{self, SpinPostgres};
use flashspin_spin::redis::SpinRedis;
use flashspin_spin::request::ApiRequest;
use flashspin_spin::route::{Call, Operator, Reply, Route};
use serde_json::json;

/// How long a woken exporter keeps trying while PostgreSQL is out of
/// reach, and how long it waits between tries. Bounded: messages queue
/// behind a run (Spin handles one at a time), and the events are safe in
/// Redis for the next run anyway.
const RETRY_FOR: Duration = Duration::from_secs(5);
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// How long a woken exporter lets changes gather before it reads them.
/// Under load, each run then writes a batch of hundreds instead of a
/// handful, which is what keeps the export from slowing the sale (the
/// run's fixed cost, Redis's included, is paid once per batch); a lone
/// change waits this much longer to arrive (BENCHMARKS.md).
const GATHER: Duration = Duration::from_millis(100);

/// The PostgreSQL URL, or `None` when orders stay in Redis only.
fn pg_address() -> Result<Option<String>, String> {
    let address = spin_sdk::variables::get(pg::ADDRESS_VARIABLE)
        .map_err(|e| format!("variable {}: {e}", pg::ADDRESS_VARIABLE))?;
    Ok(Some(address).filter(|a| !a.is_empty()))
}

#[spin_sdk::redis_component]
fn on_message(message: Vec<u8>) -> Result<(), String> {
    let voucher = std::str::from_utf8(&message)
        .ok()
        .and_then(VoucherId::parse)
        .ok_or_else(|| format!("order-export: not a voucher id: {message:?}"))?;
    let Some(address) = pg_address()? else {
        return Ok(());
    };
    std::thread::sleep(GATHER);
    let mut redis = SpinRedis::connect().map_err(|e| format!("order-export: Redis {e}"))?;
    let deadline = Instant::now() + RETRY_FOR;
    let try_again = || {
        let more = Instant::now() < deadline;
        if more {
            std::thread::sleep(RETRY_PAUSE);
        }
        more
    };
    let mut db = SpinPostgres::new(address);
    order_export::export(&mut redis, &mut db, &[voucher], Runner::Woken, try_again)
        .map(drop)
        .map_err(|e| format!("order-export: voucher {voucher}: {e}"))
}

/// `POST /api/admin/orders/export`: exports every voucher's pending events
/// now, and says how many there were.
struct ExportAll;

impl Route for ExportAll {
    const PATH: &'static str = "/api/admin/orders/export";
    const METHOD: &'static str = "POST";
    const ENDPOINT: Endpoint = Endpoint::Admin;
    type Caller = Operator;
    type Input = ();

    fn parse(_: &ApiRequest) -> Result<(), ApiError> {
        Ok(())
    }

    fn run(call: &mut Call<'_, Operator>, (): ()) -> Result<Reply, ApiError> {
        let Some(address) = pg_address().map_err(ApiError::Internal)? else {
            return Ok(Reply::ok(
                json!({"enabled": false, "vouchers": 0, "events": 0}),
            ));
        };
        let redis = call.redis()?;
        let vouchers = order_export::all_vouchers(redis)?;
        for &voucher in &vouchers {
            voucher::get(redis, voucher, OrderExport::On)?;
        }
        let mut db = SpinPostgres::new(address);
        let exported = order_export::export(redis, &mut db, &vouchers, Runner::Operator, || false)?;
        Ok(Reply::ok(json!({
            "enabled": true,
            "vouchers": vouchers.len(),
            "events": exported.events,
            "claimed": exported.claimed,
        })))
    }
}

flashspin_spin::component!(ExportAll);
