//! `GET /api/openapi.json`: the API's OpenAPI 3.1 description. The
//! document is `openapi.json` at the repository's root, beside `spin.toml`,
//! compiled in (minified, by build.rs); a change to a route and to its
//! description land together, and the e2e tests hold each to the other
//! (tests/openapi.rs).
//!
//! The component reads no variable and reaches nothing. It depends on the
//! SDK alone, so its errors are written here in the API's error shape.

use spin_sdk::http::{IncomingRequest, Method, Response};

const DOCUMENT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/openapi.min.json"));

const JSON: &str = "application/json; charset=utf-8";

const METHOD_NOT_ALLOWED: &str = r#"{"error":{"code":"method_not_allowed","message":"use GET"}}"#;

#[spin_sdk::http_component]
fn handle(req: IncomingRequest) -> Response {
    if !matches!(req.method(), Method::Get) {
        return Response::builder()
            .status(405)
            .header("content-type", JSON)
            .header("allow", "GET")
            .body(METHOD_NOT_ALLOWED)
            .build();
    }
    // Revalidated on every use, so a client never holds a stale contract.
    Response::builder()
        .status(200)
        .header("content-type", JSON)
        .header("cache-control", "no-cache")
        .header("access-control-allow-origin", "*")
        .body(DOCUMENT.to_vec())
        .build()
}
