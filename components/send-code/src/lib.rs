//! `POST /api/auth/code`: generates a login code for a phone and sends it by
//! SMS. The code never appears in the response.

use flashspin_core::ApiError;
use flashspin_core::config::{RateLimits, trusted_proxies};
use flashspin_core::login::{CodeSettings, send_code, withdraw_code};
use flashspin_core::phone::Phone;
use flashspin_spin::http::{add_ratelimit_headers, json, serve};
use flashspin_spin::redis::SpinRedis;
use flashspin_spin::request::ApiRequest;
use flashspin_spin::sms::SmsSender;
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
    body.finish()?;
    let phone = Phone::parse(&phone)?;

    let vars = SpinVariables;
    let settings = CodeSettings::from_vars(&vars)?;
    let limits = RateLimits::from_vars(&vars)?;
    let sms = SmsSender::from_vars(&vars)?;
    let ip = req.client_ip(trusted_proxies(&vars)?);

    let mut redis = SpinRedis::connect()?;
    let sent = send_code(&mut redis, &phone, ip.as_ref(), &settings, &limits)?;
    if let Err(reason) = sms.send(&phone, &sent.code, settings.ttl_secs) {
        eprintln!("sms to {} failed: {reason}", phone.masked());
        withdraw_code(&mut redis, &phone)?;
        return Err(ApiError::SmsFailed);
    }
    let mut response = json(
        202,
        &json!({"expires_in": settings.ttl_secs, "resend_after": settings.resend_secs}),
    );
    add_ratelimit_headers(&mut response, &sent.verdict);
    Ok(response)
}
