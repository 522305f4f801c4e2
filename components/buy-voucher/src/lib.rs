//! `POST /api/vouchers/:id/orders`: the flash-sale purchase. Two Redis round
//! trips: the gate (session, limits, order number), then the purchase
//! script (window, one per user, stock, order). A purchase that succeeded
//! takes a third, to add the order to the user's list.

use flashspin_core::ApiError;
use flashspin_core::config::read;
use flashspin_core::ids::{IdKey, OrderId};
use flashspin_core::voucher::{self, VoucherId};
use flashspin_spin::gate::enter_for_purchase;
use flashspin_spin::http::{add_ratelimit_headers, json, serve};
use flashspin_spin::request::ApiRequest;
use flashspin_spin::variables::SpinVariables;
use serde_json::json;
use spin_sdk::http::{IncomingRequest, Response};
use spin_sdk::http_component;

#[http_component]
async fn handle(req: IncomingRequest) -> Response {
    serve(req, run).await
}

async fn run(req: ApiRequest) -> Result<Response, ApiError> {
    req.expect_method("POST")?;
    let id = VoucherId::parse(req.path_param("id").unwrap_or_default())?;
    let (mut redis, passed) = enter_for_purchase(&req, "buy-voucher")?;
    let user = passed.user.as_ref().ok_or(ApiError::Unauthorized)?;
    let sequence = passed.sequence.ok_or(ApiError::Unauthorized)?;
    let key = IdKey::from_secret(&read::<String>(&SpinVariables, "id_secret")?);
    let order_id = OrderId::new(passed.unix_secs, sequence, &key)
        .map_err(|e| ApiError::Internal(format!("order id: {e:?}")))?;
    let outcome = voucher::buy(&mut redis, id.0, user.id, order_id);
    let mut response = match outcome {
        Ok(order) => {
            // The order stands even if listing it fails; the log says so.
            if let Err(e) = voucher::record_order(&mut redis, &order) {
                eprintln!("order {} not added to the user's list: {e}", order.id);
            }
            json(201, &json!({"order": order.to_json()}))
        }
        Err(e) => flashspin_spin::http::error(&e),
    };
    add_ratelimit_headers(&mut response, &passed.verdict);
    Ok(response)
}
