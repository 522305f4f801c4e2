//! `POST /api/lottery/:goods_id/shares`: buys shares of a goods' open
//! period. Two Redis round trips: the gate (session, limits, purchase
//! number), then the purchase script, which also draws the period when this
//! purchase sells it out. A purchase that succeeded takes a third, to add
//! the goods to the user's list.

use flashspin_core::ApiError;
use flashspin_core::catalog::parse_id;
use flashspin_core::config::read;
use flashspin_core::ids::{IdKey, OrderId};
use flashspin_core::lottery::{self, IdempotencyKey};
use flashspin_spin::gate::enter_for_purchase;
use flashspin_spin::http::{add_ratelimit_headers, error, json, serve};
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
    let goods_id = req
        .path_param("goods-id")
        .and_then(parse_id)
        .ok_or(ApiError::NotFound)?;
    let mut body = req.json()?;
    let count = body.integer("count")?;
    body.finish()?;
    if count < 1 {
        return Err(ApiError::InvalidRequest("count must be at least 1".into()));
    }
    let idempotency_key = req
        .header("idempotency-key")
        .map(IdempotencyKey::parse)
        .transpose()?;

    let (mut redis, passed) = enter_for_purchase(&req, "buy-lottery-shares")?;
    let user = passed.user.as_ref().ok_or(ApiError::Unauthorized)?;
    let sequence = passed.sequence.ok_or(ApiError::Unauthorized)?;
    let key = IdKey::from_secret(&read::<String>(&SpinVariables, "id_secret")?);
    let purchase_id = OrderId::new(passed.unix_secs, sequence, &key)
        .map_err(|e| ApiError::Internal(format!("purchase id: {e:?}")))?;
    let outcome = lottery::buy(
        &mut redis,
        goods_id,
        user.id,
        count as u64,
        purchase_id,
        idempotency_key.as_ref(),
    );
    let mut response = match outcome {
        Ok(purchase) => {
            // The purchase stands even if listing it fails; the log says so.
            if let Err(e) = lottery::record_goods(&mut redis, user.id, goods_id) {
                eprintln!("goods {goods_id} not added to the user's list: {e}");
            }
            json(201, &json!({"purchase": purchase.to_json()}))
        }
        Err(e) => error(&e),
    };
    add_ratelimit_headers(&mut response, &passed.verdict);
    Ok(response)
}
