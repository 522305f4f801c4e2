//! `GET /api/health`: one Redis round trip; 200 when Redis answers, 503 when
//! it does not. The reason goes to the log only: Redis's error text can
//! name hosts and internals a client has no business seeing.

use flashspin_core::ApiError;
use flashspin_core::ratelimit::Endpoint;
use flashspin_spin::request::ApiRequest;
use flashspin_spin::route::{Call, Reply, Route, Ungated};
use serde_json::json;

struct Health;

impl Route for Health {
    const PATH: &'static str = "/api/health";
    const METHOD: &'static str = "GET";
    const ENDPOINT: Endpoint = Endpoint::Health;
    type Caller = Ungated;
    type Input = ();

    fn parse(_: &ApiRequest) -> Result<(), ApiError> {
        Ok(())
    }

    async fn run(call: &mut Call<'_, Ungated>, (): ()) -> Result<Reply, ApiError> {
        let checked = match call.redis().await {
            Ok(redis) => flashspin_core::health::check(redis)
                .await
                .map_err(ApiError::from),
            Err(e) => Err(e),
        };
        match checked {
            Ok(()) => Ok(Reply::ok(json!({"status": "ok", "redis": "ok"}))),
            Err(e) => {
                eprintln!("health: redis {e}");
                let body = json!({"status": "degraded", "redis": "unavailable"});
                Ok(Reply::new(503, body).header("retry-after", "1".into()))
            }
        }
    }
}

flashspin_spin::component!(Health);
