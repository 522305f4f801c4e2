//! The shop staff's work on orders after the sale: `POST
//! /api/admin/orders/:id/use` redeems a paid voucher order at the counter
//! (`paid` to `used`), its change going to the voucher's outbox when
//! `order_export` is set; `GET /api/admin/payments/attention` lists the
//! money events the shop must act on by hand (late, second or
//! wrong-amount payments, refunds of used orders). Both need the admin key
//! (see `Operator`). Its own component rather than routes of `admin`: a
//! different job, for different people, and `admin` is at its size budget.

use flashspin_core::ApiError;
use flashspin_core::ids::OrderId;
use flashspin_core::order::{self, Change, OrderExport};
use flashspin_core::order_export::{all_vouchers, parts_of};
use flashspin_core::page::PageSize;
use flashspin_core::payment;
use flashspin_core::ratelimit::Endpoint;
use flashspin_spin::request::ApiRequest;
use flashspin_spin::route::{Call, Operator, Reply, Route};
use flashspin_spin::variables::SpinVariables;
use serde_json::json;

struct UseOrder;

impl Route for UseOrder {
    const PATH: &'static str = "/api/admin/orders/:id/use";
    const METHOD: &'static str = "POST";
    const ENDPOINT: Endpoint = Endpoint::Admin;
    type Caller = Operator;
    /// A malformed id is judged after the key, like everything here.
    type Input = Option<OrderId>;

    fn parse(req: &ApiRequest) -> Result<Option<OrderId>, ApiError> {
        Ok(req.path_id("id").ok())
    }

    async fn run(call: &mut Call<'_, Operator>, id: Option<OrderId>) -> Result<Reply, ApiError> {
        let id = id.ok_or(ApiError::NotFound)?;
        let export = OrderExport::from_vars(&SpinVariables)?;
        let shards = call.shards()?;
        let redis = call.redis().await?;
        let located = order::locate(redis, shards, id)
            .await?
            .0
            .ok_or(ApiError::NotFound)?;
        let order = order::change(redis, located.part, id, Change::Use, None, export).await?;
        Ok(Reply::ok(json!({"order": order.to_json()})))
    }
}

/// `GET /api/admin/payments/attention`: how many money events need the
/// shop's hand, and the newest `?limit=` of them across all vouchers.
struct PaymentAttention;

impl Route for PaymentAttention {
    const PATH: &'static str = "/api/admin/payments/attention";
    const METHOD: &'static str = "GET";
    const ENDPOINT: Endpoint = Endpoint::Admin;
    type Caller = Operator;
    type Input = PageSize;

    fn parse(req: &ApiRequest) -> Result<PageSize, ApiError> {
        PageSize::parse(req.query_param("limit").as_deref())
    }

    async fn run(call: &mut Call<'_, Operator>, limit: PageSize) -> Result<Reply, ApiError> {
        let redis = call.redis().await?;
        let vouchers = all_vouchers(redis).await?;
        let parts = parts_of(redis, &vouchers).await?;
        let found = payment::attention(redis, &parts, limit).await?;
        let events: Vec<_> = found.events.iter().map(|e| e.to_json()).collect();
        Ok(Reply::ok(json!({"count": found.count, "events": events})))
    }
}

flashspin_spin::component!(UseOrder, PaymentAttention);
