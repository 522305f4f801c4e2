//! The signed-in user's own routes: `GET /api/me`, `GET /api/me/orders`,
//! `GET /api/me/lottery` and `POST /api/auth/logout`. The two lists come in
//! pages (`limit`, `cursor`), with bounded Redis work per page, and are
//! limited per user by `rate_limit_user_reads`.

use flashspin_core::ApiError;
use flashspin_core::catalog::parse_id;
use flashspin_core::gate::Access;
use flashspin_core::login::logout;
use flashspin_core::lottery::{self, PurchaseFilter, PurchasesCursor};
use flashspin_core::page::PageSize;
use flashspin_core::voucher::{self, OrdersCursor};
use flashspin_spin::gate::{enter, enter_for_reading};
use flashspin_spin::http::{
    add_ratelimit_headers, clear_session_cookie, json, no_content, serve, user_json,
};
use flashspin_spin::request::ApiRequest;
use serde_json::json;
use spin_sdk::http::{IncomingRequest, Response};
use spin_sdk::http_component;

fn invalid(message: &str) -> ApiError {
    ApiError::InvalidRequest(message.into())
}

#[http_component]
async fn handle(req: IncomingRequest) -> Response {
    serve(req, run).await
}

async fn run(req: ApiRequest) -> Result<Response, ApiError> {
    match req.header("spin-component-route").unwrap_or_default() {
        "/api/auth/logout" => {
            req.expect_method("POST")?;
            let (mut redis, passed) = enter(&req, "account", Access::User)?;
            let token = req.token().ok_or(ApiError::Unauthorized)?;
            logout(&mut redis, &token)?;
            let mut response = no_content();
            response.set_header("set-cookie", clear_session_cookie());
            add_ratelimit_headers(&mut response, &passed.verdict);
            Ok(response)
        }
        "/api/me/lottery" => {
            req.expect_method("GET")?;
            let goods = match req.query_param("goods_id") {
                Some(id) => {
                    Some(parse_id(&id).ok_or_else(|| invalid("goods_id must be a decimal id"))?)
                }
                None => None,
            };
            let period = match req.query_param("period") {
                Some(n) => {
                    Some(parse_id(&n).ok_or_else(|| invalid("period must be a positive integer"))?)
                }
                None => None,
            };
            let limit = PageSize::parse(req.query_param("limit").as_deref())?;
            let cursor = req
                .query_param("cursor")
                .map(|c| PurchasesCursor::parse(&c))
                .transpose()?;
            let (mut redis, passed) = enter_for_reading(&req, "account")?;
            let user = passed.user.as_ref().ok_or(ApiError::Unauthorized)?;
            let filter = PurchaseFilter { goods, period };
            let (purchases, next) =
                lottery::purchases_page(&mut redis, user.id, filter, cursor, limit.get())?;
            let purchases: Vec<_> = purchases.iter().map(|p| p.to_json()).collect();
            let mut body = json!({"purchases": purchases});
            if let Some(next) = next {
                body["next_cursor"] = next.to_string().into();
            }
            let mut response = json(200, &body);
            add_ratelimit_headers(&mut response, &passed.verdict);
            Ok(response)
        }
        "/api/me/orders" => {
            req.expect_method("GET")?;
            let limit = PageSize::parse(req.query_param("limit").as_deref())?;
            let cursor = req
                .query_param("cursor")
                .map(|c| OrdersCursor::parse(&c))
                .transpose()?;
            let (mut redis, passed) = enter_for_reading(&req, "account")?;
            let user = passed.user.as_ref().ok_or(ApiError::Unauthorized)?;
            let (orders, next) = voucher::orders_page(&mut redis, user.id, cursor, limit.get())?;
            let orders: Vec<_> = orders.iter().map(|o| o.to_json()).collect();
            let mut body = json!({"orders": orders});
            if let Some(next) = next {
                body["next_cursor"] = next.to_string().into();
            }
            let mut response = json(200, &body);
            add_ratelimit_headers(&mut response, &passed.verdict);
            Ok(response)
        }
        _ => {
            req.expect_method("GET")?;
            let (_redis, passed) = enter(&req, "account", Access::User)?;
            let user = passed.user.as_ref().ok_or(ApiError::Unauthorized)?;
            let mut response = json(
                200,
                &json!({"user": user_json(user.id, &user.phone, &user.nickname)}),
            );
            add_ratelimit_headers(&mut response, &passed.verdict);
            Ok(response)
        }
    }
}
