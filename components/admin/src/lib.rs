//! Admin routes: `POST /api/admin/vouchers` creates a flash sale. Needs
//! `Authorization: Bearer <admin_key>`.

use flashspin_core::ApiError;
use flashspin_core::admin::authorize;
use flashspin_core::config::read;
use flashspin_core::gate::Access;
use flashspin_core::voucher::{self, NewVoucher};
use flashspin_spin::gate::enter;
use flashspin_spin::http::{add_ratelimit_headers, json, respond};
use flashspin_spin::request::ApiRequest;
use flashspin_spin::variables::SpinVariables;
use serde_json::json;
use spin_sdk::http::{IncomingRequest, Response};
use spin_sdk::http_component;

#[http_component]
async fn handle(req: IncomingRequest) -> Response {
    respond(run(req).await)
}

async fn run(req: IncomingRequest) -> Result<Response, ApiError> {
    let req = ApiRequest::read(req).await?;
    req.expect_method("POST")?;
    let admin_key: String = read(&SpinVariables, "admin_key", "")?;
    authorize(&admin_key, req.header("authorization"))?;
    let new = NewVoucher::parse(&req.body)?;
    let (mut redis, passed) = enter(&req, "admin", Access::Public)?;
    let created = voucher::create(&mut redis, new)?;
    let now_ms = passed.unix_secs as i64 * 1000;
    let mut response = json(201, &json!({"voucher": created.to_json(now_ms)}));
    add_ratelimit_headers(&mut response, &passed.verdict);
    Ok(response)
}
