//! The public catalogue: vouchers (`GET /api/vouchers?shop_id=1`,
//! `GET /api/vouchers/:id`) and lottery goods (`GET /api/lottery`,
//! `GET /api/lottery/:goods_id`, `GET /api/lottery/:goods_id/periods/:n`).

use flashspin_core::ApiError;
use flashspin_core::catalog::parse_id;
use flashspin_core::gate::{Access, Passed};
use flashspin_core::lottery;
use flashspin_core::voucher::{self, VoucherId};
use flashspin_spin::gate::enter;
use flashspin_spin::http::{add_ratelimit_headers, json, serve};
use flashspin_spin::redis::SpinRedis;
use flashspin_spin::request::ApiRequest;
use serde_json::{Value, json};
use spin_sdk::http::{IncomingRequest, Response};
use spin_sdk::http_component;

/// Most items one listing returns.
const PAGE: usize = 50;

#[http_component]
async fn handle(req: IncomingRequest) -> Response {
    serve(req, run).await
}

async fn run(req: ApiRequest) -> Result<Response, ApiError> {
    req.expect_method("GET")?;
    let route = req
        .header("spin-component-route")
        .unwrap_or_default()
        .to_string();
    let (body, passed) = match route.as_str() {
        "/api/vouchers" => list_vouchers(&req)?,
        "/api/vouchers/:id" => {
            let id = VoucherId::parse(req.path_param("id").unwrap_or_default())?;
            let (mut redis, passed) = gate(&req)?;
            let found = voucher::get(&mut redis, id.0)?.ok_or(ApiError::NotFound)?;
            (
                json!({"voucher": found.to_json(passed.unix_secs as i64 * 1000)}),
                passed,
            )
        }
        "/api/lottery" => {
            let (mut redis, passed) = gate(&req)?;
            let goods: Vec<Value> = lottery::list(&mut redis, PAGE)?
                .iter()
                .map(|g| g.goods_json())
                .collect();
            (json!({"goods": goods}), passed)
        }
        "/api/lottery/:goods_id" => {
            let id = goods_id(&req)?;
            let (mut redis, passed) = gate(&req)?;
            let goods = lottery::read(&mut redis, id, 0)?.ok_or(ApiError::NotFound)?;
            (json!({"goods": goods.goods_json()}), passed)
        }
        _ => {
            let id = goods_id(&req)?;
            let n = req
                .path_param("n")
                .and_then(parse_id)
                .ok_or(ApiError::NotFound)?;
            let (mut redis, passed) = gate(&req)?;
            let period = lottery::read(&mut redis, id, n)?.ok_or(ApiError::NotFound)?;
            let winner = match &period.draw {
                Some(draw) => lottery::winner(&mut redis, draw.winner)?,
                None => None,
            };
            (
                json!({"period": period.period_json(winner.as_ref())}),
                passed,
            )
        }
    };
    let mut response = json(200, &body);
    add_ratelimit_headers(&mut response, &passed.verdict);
    Ok(response)
}

fn gate(req: &ApiRequest) -> Result<(SpinRedis, Passed), ApiError> {
    enter(req, "catalog", Access::Public)
}

fn goods_id(req: &ApiRequest) -> Result<u64, ApiError> {
    req.path_param("goods-id")
        .and_then(parse_id)
        .ok_or(ApiError::NotFound)
}

fn list_vouchers(req: &ApiRequest) -> Result<(Value, Passed), ApiError> {
    let shop = req
        .query_param("shop_id")
        .ok_or_else(|| ApiError::InvalidRequest("shop_id is required".into()))?;
    let shop = parse_id(&shop)
        .ok_or_else(|| ApiError::InvalidRequest("shop_id must be a decimal id".into()))?;
    let (mut redis, passed) = gate(req)?;
    let now_ms = passed.unix_secs as i64 * 1000;
    let vouchers: Vec<Value> = voucher::list_by_shop(&mut redis, shop, PAGE)?
        .iter()
        .map(|v| v.to_json(now_ms))
        .collect();
    Ok((json!({"vouchers": vouchers}), passed))
}
