//! `POST /api/auth/refresh`: slides the session's expiry (the gate does that
//! for every request with a token), reports it, and renews the cookie so a
//! browser keeps it as long as the session lives.

use flashspin_core::ApiError;
use flashspin_core::gate::SignedIn;
use flashspin_core::ratelimit::Endpoint;
use flashspin_core::session::{SessionSettings, SessionToken};
use flashspin_spin::http::{session_cookie, user_json};
use flashspin_spin::request::ApiRequest;
use flashspin_spin::route::{Call, Reply, Route};
use flashspin_spin::variables::SpinVariables;
use serde_json::json;

struct Refresh;

impl Route for Refresh {
    const PATH: &'static str = "/api/auth/refresh";
    const METHOD: &'static str = "POST";
    const ENDPOINT: Endpoint = Endpoint::Refresh;
    type Caller = SignedIn;
    type Input = SessionToken;

    fn parse(req: &ApiRequest) -> Result<SessionToken, ApiError> {
        req.token().ok_or(ApiError::Unauthorized)
    }

    async fn run(call: &mut Call<'_, SignedIn>, token: SessionToken) -> Result<Reply, ApiError> {
        let session = SessionSettings::from_vars(&SpinVariables)?;
        let user = &call.caller.0;
        let body = json!({
            "expires_in": session.idle_secs,
            "user": user_json(user.id, &user.phone, &user.nickname),
        });
        Ok(Reply::ok(body).header("set-cookie", session_cookie(&token, session.idle_secs)))
    }
}

flashspin_spin::component!(Refresh);
