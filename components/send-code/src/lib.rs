//! `POST /api/auth/code`: generates a login code for a phone and sends it by
//! SMS. The code never appears in the response. The script that stores the
//! code applies the limits itself, so there is no separate gate.

use flashspin_core::ApiError;
use flashspin_core::config::RateLimits;
use flashspin_core::login::{CodeSettings, send_code, withdraw_code};
use flashspin_core::phone::Phone;
use flashspin_core::ratelimit::Endpoint;
use flashspin_spin::request::ApiRequest;
use flashspin_spin::route::{Call, Reply, Route, Ungated};
use flashspin_spin::sms::SmsSender;
use flashspin_spin::variables::SpinVariables;
use serde_json::json;

struct SendCode;

impl Route for SendCode {
    const PATH: &'static str = "/api/auth/code";
    const METHOD: &'static str = "POST";
    const ENDPOINT: Endpoint = Endpoint::SendCode;
    type Caller = Ungated;
    type Input = Phone;

    fn parse(req: &ApiRequest) -> Result<Phone, ApiError> {
        let mut body = req.json()?;
        let phone = body.string("phone")?;
        body.finish()?;
        Phone::parse(&phone)
    }

    async fn run(call: &mut Call<'_, Ungated>, phone: Phone) -> Result<Reply, ApiError> {
        let vars = SpinVariables;
        let settings = CodeSettings::from_vars(&vars)?;
        let limits = RateLimits::from_vars(&vars)?;
        let sms = SmsSender::from_vars(&vars)?;
        let ip = call.client_ip()?;
        let shards = call.shards()?;
        let redis = call.redis().await?;
        let sent = send_code(redis, &phone, ip.as_ref(), &settings, &limits, shards).await?;
        if let Err(reason) = sms.send(&phone, &sent.code, settings.ttl_secs).await {
            eprintln!("sms to {} failed: {reason}", phone.masked());
            withdraw_code(redis, &phone, shards).await?;
            return Err(ApiError::SmsFailed);
        }
        let body = json!({"expires_in": settings.ttl_secs, "resend_after": settings.resend_secs});
        Ok(Reply::new(202, body).verdict(sent.verdict))
    }
}

flashspin_spin::component!(SendCode);
