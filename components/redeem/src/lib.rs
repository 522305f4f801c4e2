//! `POST /api/admin/orders/:id/use`: shop staff redeem a paid voucher order
//! at the counter (`paid` to `used`). Needs the admin key (see `Operator`).
//! The change goes to the voucher's outbox when `order_export` is set.
//! Its own component rather than a route of `admin`: a different job, for
//! different people, and `admin` is at its size budget.

use flashspin_core::ApiError;
use flashspin_core::ids::OrderId;
use flashspin_core::order::{self, Change, OrderExport};
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

    fn run(call: &mut Call<'_, Operator>, id: Option<OrderId>) -> Result<Reply, ApiError> {
        let id = id.ok_or(ApiError::NotFound)?;
        let export = OrderExport::from_vars(&SpinVariables)?;
        let redis = call.redis()?;
        let located = order::locate(redis, id)?.0.ok_or(ApiError::NotFound)?;
        let order = order::change(redis, located.voucher_id, id, Change::Use, None, export)?;
        Ok(Reply::ok(json!({"order": order.to_json()})))
    }
}

flashspin_spin::component!(UseOrder);
