//! `POST /api/auth/login`: exchanges a phone and its login code for a
//! session token (in the body and as an HttpOnly cookie). The login script
//! applies the limits itself, so there is no separate gate.

use flashspin_core::ApiError;
use flashspin_core::config::RateLimits;
use flashspin_core::login::{CodeSettings, login};
use flashspin_core::phone::Phone;
use flashspin_core::ratelimit::Endpoint;
use flashspin_core::session::SessionSettings;
use flashspin_spin::http::{session_cookie, user_json};
use flashspin_spin::request::ApiRequest;
use flashspin_spin::route::{Call, Reply, Route, Ungated};
use flashspin_spin::variables::SpinVariables;
use serde_json::json;

struct Login;

impl Route for Login {
    const PATH: &'static str = "/api/auth/login";
    const METHOD: &'static str = "POST";
    const ENDPOINT: Endpoint = Endpoint::Login;
    type Caller = Ungated;
    type Input = (Phone, String);

    fn parse(req: &ApiRequest) -> Result<(Phone, String), ApiError> {
        let mut body = req.json()?;
        let phone = body.string("phone")?;
        let code = body.string("code")?;
        body.finish()?;
        Ok((Phone::parse(&phone)?, code))
    }

    async fn run(
        call: &mut Call<'_, Ungated>,
        (phone, code): (Phone, String),
    ) -> Result<Reply, ApiError> {
        let vars = SpinVariables;
        let settings = CodeSettings::from_vars(&vars)?;
        let session = SessionSettings::from_vars(&vars)?;
        let limits = RateLimits::from_vars(&vars)?;
        let ip = call.client_ip()?;
        let shards = call.shards()?;
        let signed_in = login(
            call.redis().await?,
            &phone,
            &code,
            ip.as_ref(),
            &settings,
            &session,
            &limits,
            shards,
        )
        .await?;
        let body = json!({
            "token": signed_in.token.as_str(),
            "expires_in": session.idle_secs,
            "user": user_json(signed_in.user_id, phone.as_str(), &signed_in.nickname),
        });
        Ok(Reply::ok(body)
            .header(
                "set-cookie",
                session_cookie(&signed_in.token, session.idle_secs),
            )
            .verdict(signed_in.verdict))
    }
}

flashspin_spin::component!(Login);
