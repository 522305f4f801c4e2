//! `GET /api/health`: one Redis round trip; 200 when Redis answers, 503 when
//! it does not. The reason goes to the log only: Redis's error text can
//! name hosts and internals a client has no business seeing.

use flashspin_spin::http::json;
use flashspin_spin::redis::SpinRedis;
use serde_json::json;
use spin_sdk::http::{Method, Request, Response};
use spin_sdk::http_component;

#[http_component]
fn handle(req: Request) -> Response {
    if *req.method() != Method::Get {
        let mut response = json(
            405,
            &json!({"error": {"code": "method_not_allowed", "message": "use GET"}}),
        );
        response.set_header("allow", "GET");
        return response;
    }
    let checked =
        SpinRedis::connect().and_then(|mut redis| flashspin_core::health::check(&mut redis));
    match checked {
        Ok(()) => json(200, &json!({"status": "ok", "redis": "ok"})),
        Err(e) => {
            eprintln!("health: redis {e}");
            let mut response = json(503, &json!({"status": "degraded", "redis": "unavailable"}));
            response.set_header("retry-after", "1");
            response
        }
    }
}
