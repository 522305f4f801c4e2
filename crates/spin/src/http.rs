//! Responses in the shape the API promises: JSON bodies, the error body
//! `{"error": {"code", "message"}}` with the headers each error needs
//! (`allow`, `retry-after`, the RateLimit fields), and the RateLimit fields
//! on allowed responses too.

use flashspin_core::ApiError;
use flashspin_core::ratelimit::Verdict;
use serde::Serialize;
use serde_json::json;

const JSON: &str = "application/json; charset=utf-8";

/// A response as the routes build it, handed to the Spin SDK of the build
/// (WASI 0.2 or 0.3) only at the end, by [`component!`](crate::component).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// `status` with no body.
    pub fn empty(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Sets header `name`, replacing any value it had.
    pub fn set_header(&mut self, name: &str, value: impl Into<String>) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name.to_string(), value.into()));
    }
}

/// A response with `body` serialised as JSON.
pub fn json(status: u16, body: &impl Serialize) -> Response {
    let bytes = serde_json::to_vec(body).expect("response bodies always serialise");
    let mut response = Response::empty(status);
    response.set_header("content-type", JSON);
    response.body = bytes;
    response
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
