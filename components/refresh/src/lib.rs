//! `POST /api/auth/refresh`: slides the session's expiry (the gate does that
//! for every request with a token), reports it, and renews the cookie so a
//! browser keeps it as long as the session lives.

use flashspin_core::ApiError;
use flashspin_core::gate::Access;
use flashspin_core::session::SessionSettings;
use flashspin_spin::gate::enter;
use flashspin_spin::http::{add_ratelimit_headers, json, serve, session_cookie, user_json};
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
    let (_redis, passed) = enter(&req, "refresh", Access::User)?;
    let user = passed.user.as_ref().ok_or(ApiError::Unauthorized)?;
    let session = SessionSettings::from_vars(&SpinVariables)?;
    let mut response = json(
        200,
        &json!({
            "expires_in": session.idle_secs,
            "user": user_json(user.id, &user.phone, &user.nickname),
        }),
    );
    if let Some(token) = req.token() {
        response.set_header("set-cookie", session_cookie(&token, session.idle_secs));
    }
    add_ratelimit_headers(&mut response, &passed.verdict);
    Ok(response)
}
