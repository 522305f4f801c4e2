//! Admin routes, for shop operators: `POST /api/admin/vouchers` creates a
//! flash sale, `POST /api/admin/lottery` a lottery goods with period 1 open.
//! Both need `Authorization: Bearer <admin_key>`.

use flashspin_core::ApiError;
use flashspin_core::admin::authorize;
use flashspin_core::config::read;
use flashspin_core::gate::Access;
use flashspin_core::lottery::{self, NewGoods};
use flashspin_core::voucher::{self, NewVoucher};
use flashspin_spin::gate::enter;
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
    // Limits first, so guessing the key is slowed down like anything else.
    let (mut redis, passed) = enter(&req, "admin", Access::Public)?;
    let admin_key: String = read(&SpinVariables, "admin_key")?;
    authorize(&admin_key, req.header("authorization"))?;
    let body = match req.header("spin-component-route").unwrap_or_default() {
        "/api/admin/lottery" => {
            let new = NewGoods::parse(&req.body)?;
            let id = lottery::create(&mut redis, &new)?;
            let goods = lottery::read(&mut redis, id, 0)?.ok_or(ApiError::NotFound)?;
            json!({"goods": goods.goods_json()})
        }
        _ => {
            let new = NewVoucher::parse(&req.body)?;
            let created = voucher::create(&mut redis, new)?;
            json!({"voucher": created.to_json(passed.unix_secs as i64 * 1000)})
        }
    };
    let mut response = json(201, &body);
    add_ratelimit_headers(&mut response, &passed.verdict);
    Ok(response)
}
