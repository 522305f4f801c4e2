//! `POST /api/vouchers/:id/orders`: the flash-sale purchase. Two Redis round
//! trips: the gate (session, limits, order number), then the purchase
//! script (window, one per user, stock, order). A purchase that succeeded
//! takes a third, to add the order to the user's list.

use flashspin_core::ApiError;
use flashspin_core::gate::Buyer;
use flashspin_core::ids::VoucherId;
use flashspin_core::ratelimit::Endpoint;
use flashspin_core::voucher;
use flashspin_spin::request::ApiRequest;
use flashspin_spin::route::{Call, Reply, Route};
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

    fn run(call: &mut Call<'_, Buyer>, voucher_id: VoucherId) -> Result<Reply, ApiError> {
        let (user_id, order_id) = (call.caller.user.id, call.caller.order_id);
        let redis = call.redis()?;
        let order = voucher::buy(redis, voucher_id, user_id, order_id)?;
        // The order stands even if listing it fails; the log says so.
        if let Err(e) = voucher::record_order(redis, &order) {
            eprintln!("order {} not added to the user's list: {e}", order.id);
        }
        Ok(Reply::created(json!({"order": order.to_json()})))
    }
}

flashspin_spin::component!(BuyVoucher);
