//! JSON responses in the shape the API promises, including its error body
//! `{"error": {"code": "...", "message": "..."}}`.

use serde::Serialize;
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
