//! The public catalogue: `GET /api/vouchers?shop_id=1` lists a shop's
//! vouchers, newest first; `GET /api/vouchers/:id` shows one.

use flashspin_core::ApiError;
use flashspin_core::gate::Access;
use flashspin_core::voucher::{self, VoucherId, parse_id};
use flashspin_spin::gate::enter;
use flashspin_spin::http::{add_ratelimit_headers, json, respond};
use flashspin_spin::request::ApiRequest;
use serde_json::json;
use spin_sdk::http::{IncomingRequest, Response};
use spin_sdk::http_component;

/// Most vouchers one listing returns.
const PAGE: usize = 50;

#[http_component]
async fn handle(req: IncomingRequest) -> Response {
    respond(run(req).await)
}

async fn run(req: IncomingRequest) -> Result<Response, ApiError> {
    let req = ApiRequest::read(req).await?;
    req.expect_method("GET")?;
    let body = match req.path_param("id") {
        Some(id) => {
            let id = VoucherId::parse(id)?;
            let (mut redis, passed) = enter(&req, "catalog", Access::Public)?;
            let found = voucher::get(&mut redis, id.0)?.ok_or(ApiError::NotFound)?;
            (
                json!({"voucher": found.to_json(passed.unix_secs as i64 * 1000)}),
                passed,
            )
        }
        None => {
            let shop = req
                .query_param("shop_id")
                .ok_or_else(|| ApiError::InvalidRequest("shop_id is required".into()))?;
            let shop = parse_id(&shop)
                .ok_or_else(|| ApiError::InvalidRequest("shop_id must be a decimal id".into()))?;
            let (mut redis, passed) = enter(&req, "catalog", Access::Public)?;
            let now_ms = passed.unix_secs as i64 * 1000;
            let vouchers: Vec<_> = voucher::list_by_shop(&mut redis, shop, PAGE)?
                .iter()
                .map(|v| v.to_json(now_ms))
                .collect();
            (json!({"vouchers": vouchers}), passed)
        }
    };
    let (body, passed) = body;
    let mut response = json(200, &body);
    add_ratelimit_headers(&mut response, &passed.verdict);
    Ok(response)
}
