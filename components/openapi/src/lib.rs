//! `GET /api/openapi.json`: the API's OpenAPI 3.1 description. The
//! document is `openapi.json` at the repository's root, beside `spin.toml`,
//! compiled in (minified, by build.rs); a change to a route and to its
//! description land together, and the e2e tests hold each to the other
//! (tests/openapi.rs).
//!
//! The component reads no variable and reaches nothing; its one error is
//! written here in the API's error shape, without the core's error types.

use flashspin_spin::http::Response;

const DOCUMENT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/openapi.min.json"));

const JSON: &str = "application/json; charset=utf-8";

const METHOD_NOT_ALLOWED: &str = r#"{"error":{"code":"method_not_allowed","message":"use GET"}}"#;

fn serve(method: &str, _path: &str) -> Response {
    if method != "GET" {
        let mut res = Response::empty(405);
        res.headers = vec![
            ("content-type".into(), JSON.into()),
            ("allow".into(), "GET".into()),
        ];
        res.body = METHOD_NOT_ALLOWED.as_bytes().to_vec();
        return res;
    }
    // Revalidated on every use, so a client never holds a stale contract.
    let mut res = Response::empty(200);
    res.headers = vec![
        ("content-type".into(), JSON.into()),
        ("cache-control".into(), "no-cache".into()),
        ("access-control-allow-origin".into(), "*".into()),
    ];
    res.body = DOCUMENT.to_vec();
    res
}

flashspin_spin::static_component!(serve);
