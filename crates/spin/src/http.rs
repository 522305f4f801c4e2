//! Responses in the shape the API promises: JSON bodies, the error body
//! `{"error": {"code", "message"}}` with the headers each error needs
//! (`allow`, `retry-after`, the RateLimit fields), and the RateLimit fields
//! on allowed responses too.

use flashspin_core::ApiError;
use flashspin_core::ratelimit::Verdict;
use serde::Serialize;
use serde_json::json;
use spin_sdk::http::Response;

const JSON: &str = "application/json; charset=utf-8";

/// A response with `body` serialised as JSON.
pub fn json(status: u16, body: &impl Serialize) -> Response {
    let bytes = serde_json::to_vec(body).expect("response bodies always serialise");
    Response::builder()
        .status(status)
        .header("content-type", JSON)
        .body(bytes)
        .build()
}

/// The response for `error`. Server-side causes go to the component's log,
/// not to the client.
pub fn error(error: &ApiError) -> Response {
    if matches!(
        error,
        ApiError::Unavailable(_) | ApiError::DatabaseUnavailable(_) | ApiError::Internal(_)
    ) {
        eprintln!("{error}");
    }
    let mut body = json!({"error": {"code": error.code(), "message": error.message()}});
    if let ApiError::AlreadyPurchased(order) = error {
        body["order"] = order.clone();
    }
    let mut response = json(error.status(), &body);
    match error {
        ApiError::MethodNotAllowed(allow) => response.set_header("allow", *allow),
        ApiError::RateLimited(verdict) => {
            response.set_header("retry-after", verdict.retry_after_secs().to_string());
            add_ratelimit_headers(&mut response, verdict);
        }
        ApiError::Unavailable(_) => response.set_header("retry-after", "1"),
        ApiError::DatabaseUnavailable(_) => response.set_header("retry-after", "5"),
        _ => {}
    }
    response
}

/// Adds `ratelimit-policy` and `ratelimit` describing `verdict`.
pub fn add_ratelimit_headers(response: &mut Response, verdict: &Verdict) {
    if let Some(policy) = verdict.policy_header() {
        response.set_header("ratelimit-policy", policy);
    }
    if let Some(state) = verdict.ratelimit_header() {
        response.set_header("ratelimit", state);
    }
}

/// 404 for a route pattern a component does not serve.
pub fn not_found() -> Response {
    error(&ApiError::NotFound)
}

/// A user as responses show it: id as a string, phone masked.
pub fn user_json(
    id: flashspin_core::ids::UserId,
    phone: &str,
    nickname: &str,
) -> serde_json::Value {
    json!({"id": id.to_string(), "phone": flashspin_core::phone::mask(phone), "nickname": nickname})
}

/// `set-cookie` for a new session.
pub fn session_cookie(token: &flashspin_core::session::SessionToken, max_age_secs: u32) -> String {
    format!(
        "token={}; HttpOnly; Secure; SameSite=Lax; Path=/; Max-Age={max_age_secs}",
        token.as_str()
    )
}

/// `set-cookie` that removes the session cookie.
pub fn clear_session_cookie() -> String {
    "token=; HttpOnly; Secure; SameSite=Lax; Path=/; Max-Age=0".to_string()
}
