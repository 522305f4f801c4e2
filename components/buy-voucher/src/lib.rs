//! `POST /api/vouchers/:id/orders`: the flash-sale purchase. Two Redis round
//! trips: the gate (session, limits, order number), then the purchase
//! script (expired orders back on sale, window, one active order per user,
//! stock, the order, unpaid until `order_pay_secs` from now, and its event
//! in the voucher's outbox when `order_export` is set). A purchase that
//! succeeded, or found the buyer's order, takes a third, to file the order
//! under its buyer: 201 means the order is filed (see `voucher::buy`).

use flashspin_core::ApiError;
use flashspin_core::config::read;
use flashspin_core::gate::Buyer;
use flashspin_core::ids::VoucherId;
use flashspin_core::order::OrderExport;
use flashspin_core::ratelimit::Endpoint;
use flashspin_core::voucher;
use flashspin_spin::request::ApiRequest;
use flashspin_spin::route::{Call, Reply, Route};
use flashspin_spin::variables::SpinVariables;
use serde_json::json;

struct BuyVoucher;

impl Route for BuyVoucher {
    const PATH: &'static str = "/api/vouchers/:id/orders";
    const METHOD: &'static str = "POST";
    const ENDPOINT: Endpoint = Endpoint::BuyVoucher;
    type Caller = Buyer;
    type Input = VoucherId;

    fn parse(req: &ApiRequest) -> Result<VoucherId, ApiError> {
        req.path_id("id")
    }

    async fn run(call: &mut Call<'_, Buyer>, voucher_id: VoucherId) -> Result<Reply, ApiError> {
        let pay_secs: u32 = read(&SpinVariables, "order_pay_secs")?;
        let export = OrderExport::from_vars(&SpinVariables)?;
        let (user_id, order_id) = (call.caller.user.id, call.caller.order_id);
        let redis = call.redis().await?;
        let order = voucher::buy(redis, voucher_id, user_id, order_id, pay_secs, export).await?;
        Ok(Reply::created(json!({"order": order.to_json()})))
    }
}

flashspin_spin::component!(BuyVoucher);
