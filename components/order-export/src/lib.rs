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
//!
//! Events PostgreSQL refuses for their data are parked (see
//! `order_export::export_voucher`); the operator lists them with
//! `GET /api/admin/orders/export/parked` and, once the cause is fixed,
//! moves them back and exports them with
//! `POST /api/admin/orders/export/parked/retry`.

use std::time::{Duration, Instant};

use flashspin_core::ApiError;
use flashspin_core::config::Variables;
use flashspin_core::database::DatabaseError;
use flashspin_core::ids::VoucherId;
use flashspin_core::order::OrderExport;
use flashspin_core::order_export::{self, ParkedCursor, Report, Retry, Runner};
use flashspin_core::page::PageSize;
use flashspin_core::part::VoucherPart;
use flashspin_core::ratelimit::Endpoint;
use flashspin_core::voucher;
use flashspin_spin::pg::{self, SpinPostgres};
use flashspin_spin::redis::SpinRedis;
use flashspin_spin::request::ApiRequest;
use flashspin_spin::route::{Call, Operator, Reply, Route};
use flashspin_spin::time;
use flashspin_spin::variables::SpinVariables;
use serde_json::{Value, json};

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
    let address = SpinVariables
        .get(pg::ADDRESS_VARIABLE)
        .map_err(|e| format!("variable {}: {e}", pg::ADDRESS_VARIABLE))?;
    Ok(Some(address).filter(|a| !a.is_empty()))
}

/// The exporter's PostgreSQL: every wait bounded (a connect, a lock, a
/// statement; `order_export::session_setup`), so that a locked table or a
/// silent server delays the export rather than stopping it for good.
fn database(address: &str) -> SpinPostgres {
    SpinPostgres::new(order_export::connection_string(address))
        .with_setup(order_export::session_setup())
}

/// A woken run's patience with an unreachable PostgreSQL: it tries again
/// every [`RETRY_PAUSE`] until [`RETRY_FOR`] has passed.
struct RetryUntil(Instant);

impl Retry for RetryUntil {
    async fn again(&mut self) -> bool {
        let more = Instant::now() < self.0;
        if more {
            time::sleep(RETRY_PAUSE).await;
        }
        more
    }
}

async fn on_message(message: Vec<u8>) -> Result<(), String> {
    let voucher = std::str::from_utf8(&message)
        .ok()
        .and_then(VoucherPart::parse_reference)
        .ok_or_else(|| format!("order-export: not a voucher: {message:?}"))?;
    let Some(address) = pg_address()? else {
        return Ok(());
    };
    time::sleep(GATHER).await;
    let mut redis = SpinRedis::connect()
        .await
        .map_err(|e| format!("order-export: Redis {e}"))?;
    let retry = RetryUntil(Instant::now() + RETRY_FOR);
    let mut db = database(&address);
    let report = order_export::export(&mut redis, &mut db, &[voucher], Runner::Woken, retry)
        .await
        .map_err(|e| format!("order-export: voucher {voucher}: {e}"))?;
    log_parked(&report);
    match report.failed.first() {
        Some((_, e)) => Err(format!("order-export: voucher {voucher}: PostgreSQL: {e}")),
        None => Ok(()),
    }
}

flashspin_spin::redis_component!(on_message);

/// Says in the log that events were parked, which needs someone to look.
fn log_parked(report: &Report) {
    if report.exported.parked > 0 {
        eprintln!(
            "order-export: parked {} event(s) PostgreSQL refused; GET /api/admin/orders/export/parked lists them",
            report.exported.parked
        );
    }
}

/// What a run over several vouchers did, as the admin routes answer it.
fn report_json(vouchers: usize, report: &Report) -> Value {
    let failed: Vec<Value> = report
        .failed
        .iter()
        .map(|(voucher, e)| {
            let (sqlstate, message) = match e {
                DatabaseError::Refused { code, message } => (code.clone(), message.clone()),
                other => (String::new(), other.to_string()),
            };
            json!({
                "voucher_id": voucher.to_string(),
                "error": {"sqlstate": sqlstate, "message": message},
            })
        })
        .collect();
    json!({
        "enabled": true,
        "vouchers": vouchers,
        "events": report.exported.events,
        "claimed": report.exported.claimed,
        "parked": report.exported.parked,
        "failed": failed,
    })
}

/// `?voucher_id=`: one voucher rather than all of them.
fn voucher_filter(req: &ApiRequest) -> Result<Option<VoucherId>, ApiError> {
    req.query_param("voucher_id")
        .map(|v| {
            VoucherId::parse(&v).ok_or_else(|| ApiError::invalid("voucher_id must be a decimal id"))
        })
        .transpose()
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

    async fn run(call: &mut Call<'_, Operator>, (): ()) -> Result<Reply, ApiError> {
        let Some(address) = pg_address().map_err(ApiError::Internal)? else {
            return Ok(Reply::ok(
                json!({"enabled": false, "vouchers": 0, "events": 0}),
            ));
        };
        let redis = call.redis().await?;
        let vouchers = order_export::all_vouchers(redis).await?;
        for &voucher in &vouchers {
            voucher::get(redis, voucher, OrderExport::On).await?;
        }
        let parts = order_export::parts_of(redis, &vouchers).await?;
        let mut db = database(&address);
        let report =
            order_export::export(redis, &mut db, &parts, Runner::Operator, || false).await?;
        log_parked(&report);
        Ok(Reply::ok(report_json(vouchers.len(), &report)))
    }
}

/// `GET /api/admin/orders/export/parked`: the parked events, of one voucher
/// (`?voucher_id=`) or all, a page at a time (`?limit=`, `?cursor=`).
struct Parked;

impl Route for Parked {
    const PATH: &'static str = "/api/admin/orders/export/parked";
    const METHOD: &'static str = "GET";
    const ENDPOINT: Endpoint = Endpoint::Admin;
    type Caller = Operator;
    type Input = (Option<VoucherId>, PageSize, Option<ParkedCursor>);

    fn parse(req: &ApiRequest) -> Result<Self::Input, ApiError> {
        let only = voucher_filter(req)?;
        let limit = PageSize::parse(req.query_param("limit").as_deref())?;
        let from = req
            .query_param("cursor")
            .map(|c| ParkedCursor::parse(&c))
            .transpose()?;
        Ok((only, limit, from))
    }

    async fn run(
        call: &mut Call<'_, Operator>,
        (only, limit, from): Self::Input,
    ) -> Result<Reply, ApiError> {
        let (events, next) =
            order_export::parked_page(call.redis().await?, only, from, limit.get()).await?;
        let events: Vec<Value> = events.iter().map(|e| e.to_json()).collect();
        let mut body = json!({"parked": events});
        if let Some(next) = next {
            body["next_cursor"] = next.to_string().into();
        }
        Ok(Reply::ok(body))
    }
}

/// `POST /api/admin/orders/export/parked/retry`: moves the parked events of
/// one voucher (`?voucher_id=`) or all back into their outboxes and
/// exports those vouchers now; what PostgreSQL still refuses is parked
/// again.
struct RetryParked;

impl Route for RetryParked {
    const PATH: &'static str = "/api/admin/orders/export/parked/retry";
    const METHOD: &'static str = "POST";
    const ENDPOINT: Endpoint = Endpoint::Admin;
    type Caller = Operator;
    type Input = Option<VoucherId>;

    fn parse(req: &ApiRequest) -> Result<Option<VoucherId>, ApiError> {
        voucher_filter(req)
    }

    async fn run(
        call: &mut Call<'_, Operator>,
        only: Option<VoucherId>,
    ) -> Result<Reply, ApiError> {
        let Some(address) = pg_address().map_err(ApiError::Internal)? else {
            return Ok(Reply::ok(
                json!({"enabled": false, "vouchers": 0, "moved": 0, "events": 0}),
            ));
        };
        let redis = call.redis().await?;
        let vouchers = match only {
            Some(voucher) => vec![voucher],
            None => order_export::all_vouchers(redis).await?,
        };
        let (mut moved, mut retried) = (0, Vec::new());
        for voucher in order_export::parts_of(redis, &vouchers).await? {
            let n = order_export::unpark(redis, voucher).await?;
            if n > 0 {
                moved += n;
                retried.push(voucher);
            }
        }
        let mut db = database(&address);
        let report =
            order_export::export(redis, &mut db, &retried, Runner::Operator, || false).await?;
        log_parked(&report);
        let mut body = report_json(vouchers.len(), &report);
        body["moved"] = moved.into();
        Ok(Reply::ok(body))
    }
}

flashspin_spin::component!(ExportAll, Parked, RetryParked);
