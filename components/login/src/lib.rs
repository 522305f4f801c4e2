//! `POST /api/auth/login`: exchanges a phone and its login code for a
//! session token (in the body and as an HttpOnly cookie).

use flashspin_core::ApiError;
use flashspin_core::config::{RateLimits, trusted_proxies};
use flashspin_core::login::{CodeSettings, login};
use flashspin_core::phone::Phone;
use flashspin_core::session::SessionSettings;
use flashspin_spin::http::{add_ratelimit_headers, json, serve, session_cookie, user_json};
use flashspin_spin::redis::SpinRedis;
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
    let mut body = req.json()?;
    let phone = body.string("phone")?;
    let code = body.string("code")?;
    body.finish()?;
    let phone = Phone::parse(&phone)?;

    let vars = SpinVariables;
    let settings = CodeSettings::from_vars(&vars)?;
    let session = SessionSettings::from_vars(&vars)?;
    let limits = RateLimits::from_vars(&vars)?;
    let ip = req.client_ip(trusted_proxies(&vars)?);

    let mut redis = SpinRedis::connect()?;
    let signed_in = login(
        &mut redis,
        &phone,
        &code,
        ip.as_ref(),
        &settings,
        &session,
        &limits,
    )?;
    let mut response = json(
        200,
        &json!({
            "token": signed_in.token.as_str(),
            "expires_in": session.idle_secs,
            "user": user_json(signed_in.user_id, phone.as_str(), &signed_in.nickname),
        }),
    );
    response.set_header(
        "set-cookie",
        session_cookie(&signed_in.token, session.idle_secs),
    );
    add_ratelimit_headers(&mut response, &signed_in.verdict);
    Ok(response)
}
