//! The signed-in user's own routes: `GET /api/me`, `GET /api/me/orders`,
//! `GET /api/me/lottery` and `POST /api/auth/logout`.

use flashspin_core::ApiError;
use flashspin_core::catalog::parse_id;
use flashspin_core::gate::Access;
use flashspin_core::login::logout;
use flashspin_core::lottery;
use flashspin_core::voucher;
use flashspin_spin::gate::enter;
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
            let (mut redis, passed) = enter(&req, "account", Access::User)?;
            let user = passed.user.as_ref().ok_or(ApiError::Unauthorized)?;
            let goods_ids = match goods {
                Some(id) => vec![id],
                None => lottery::goods_of(&mut redis, user.id)?,
            };
            let mut purchases = Vec::new();
            for id in goods_ids {
                purchases.extend(lottery::purchases_of(&mut redis, id, user.id, period)?);
            }
            purchases.sort_by_key(|p| std::cmp::Reverse(p.create_ms));
            let purchases: Vec<_> = purchases.iter().map(|p| p.to_json()).collect();
            let mut response = json(200, &json!({"purchases": purchases}));
            add_ratelimit_headers(&mut response, &passed.verdict);
            Ok(response)
        }
        "/api/me/orders" => {
            req.expect_method("GET")?;
            let (mut redis, passed) = enter(&req, "account", Access::User)?;
            let user = passed.user.as_ref().ok_or(ApiError::Unauthorized)?;
            let orders: Vec<_> = voucher::orders_of(&mut redis, user.id)?
                .iter()
                .map(|o| o.to_json())
                .collect();
            let mut response = json(200, &json!({"orders": orders}));
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
