//! `GET /` (the shopper's page), `GET /admin` (the operator's page) and
//! `GET /assets/...` (their ES modules and style sheet). Every file is
//! compiled in: the component reads no variable, reaches no Redis and makes
//! no outbound call. The pages speak to the API like any other client
//! (docs/WEB.md).
//!
//! Every answer, errors included, carries the same security headers: a
//! content security policy that allows only this origin's scripts, styles
//! and API (no inline script or style anywhere), `nosniff`, no referrer and
//! no framing.

use flashspin_spin::http::Response;

/// Only this origin's files and API; nothing inline, no framing, no forms
/// posted anywhere (the pages send JSON with `fetch`).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

/// Pages are revalidated on every load, so a new build shows at once;
/// assets may be reused for a few minutes.
const PAGE_CACHE: &str = "no-cache";
const ASSET_CACHE: &str = "public, max-age=300";

/// A file the component serves.
struct File {
    body: &'static [u8],
    content_type: &'static str,
    cache: &'static str,
}

const fn page(body: &'static str) -> File {
    File {
        body: body.as_bytes(),
        content_type: HTML,
        cache: PAGE_CACHE,
    }
}

const fn asset(body: &'static str, content_type: &'static str) -> File {
    File {
        body: body.as_bytes(),
        content_type,
        cache: ASSET_CACHE,
    }
}

/// Every path the component answers, with its file.
const FILES: &[(&str, File)] = &[
    ("/", page(include_str!("../static/index.html"))),
    ("/admin", page(include_str!("../static/admin.html"))),
    (
        "/assets/app.css",
        asset(include_str!("../static/app.css"), CSS),
    ),
    (
        "/assets/api.js",
        asset(include_str!("../static/api.js"), JS),
    ),
    (
        "/assets/shop.js",
        asset(include_str!("../static/shop.js"), JS),
    ),
    (
        "/assets/admin.js",
        asset(include_str!("../static/admin.js"), JS),
    ),
    (
        "/assets/verify.js",
        asset(include_str!("../static/verify.js"), JS),
    ),
];

fn find(path: &str) -> Option<&'static File> {
    FILES.iter().find(|(p, _)| *p == path).map(|(_, f)| f)
}

fn respond(status: u16, content_type: &str, cache: &str, body: &[u8]) -> Response {
    let mut res = Response::empty(status);
    res.headers = vec![
        ("content-type".into(), content_type.into()),
        ("cache-control".into(), cache.into()),
        ("content-security-policy".into(), CSP.into()),
        ("x-content-type-options".into(), "nosniff".into()),
        ("referrer-policy".into(), "no-referrer".into()),
        ("x-frame-options".into(), "DENY".into()),
    ];
    res.body = body.to_vec();
    res
}

fn serve(method: &str, path: &str) -> Response {
    let head = match method {
        "GET" => false,
        "HEAD" => true,
        _ => {
            let mut res = respond(405, TEXT, "no-store", b"method not allowed: use GET\n");
            res.set_header("allow", "GET, HEAD");
            return res;
        }
    };
    let Some(file) = find(path) else {
        return respond(404, TEXT, "no-store", b"not found\n");
    };
    let body = if head { &[][..] } else { file.body };
    respond(200, file.content_type, file.cache, body)
}

flashspin_spin::static_component!(serve);
