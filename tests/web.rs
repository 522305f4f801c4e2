//! `GET /`, `GET /admin` and `GET /assets/...`: the web component's pages
//! and assets, their headers, and that they hold nothing the content
//! security policy would refuse (docs/WEB.md).

use std::collections::BTreeSet;

use reqwest::Method;

use crate::harness::{App, AppConfig, RedisServer, app_manifest};

const PAGES: [&str; 2] = ["/", "/admin"];

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

async fn start() -> (RedisServer, App) {
    let redis = RedisServer::start();
    let app = AppConfig::new(app_manifest())
        .var("redis_address", redis.url())
        .start()
        .await;
    (redis, app)
}

struct Fetched {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Fetched {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

async fn fetch(app: &App, method: Method, path: &str) -> Fetched {
    let res = app
        .http
        .request(method, app.url(path))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res.text().await.unwrap();
    Fetched {
        status,
        headers,
        body,
    }
}

fn expect_security_headers(path: &str, got: &Fetched) {
    assert_eq!(got.header("content-security-policy"), Some(CSP), "{path}");
    assert_eq!(
        got.header("x-content-type-options"),
        Some("nosniff"),
        "{path}"
    );
    assert_eq!(got.header("referrer-policy"), Some("no-referrer"), "{path}");
    assert!(got.header("cache-control").is_some(), "{path}");
}

fn content_type_of(path: &str) -> &'static str {
    if path.ends_with(".js") {
        "text/javascript; charset=utf-8"
    } else if path.ends_with(".css") {
        "text/css; charset=utf-8"
    } else {
        "text/html; charset=utf-8"
    }
}

/// `text` without its `<!-- -->` comments (the pages document their hooks
/// in one, which names attributes).
fn without_comments(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("<!--") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("-->").expect("an unclosed comment");
        rest = &rest[start + end + 3..];
    }
    out.push_str(rest);
    out
}

/// One HTML start tag: its lower-case name and its attributes.
struct Tag {
    name: String,
    attrs: Vec<(String, String)>,
    /// Byte offset just past the tag's `>`.
    end: usize,
}

/// Every start tag of `html` (comments removed first), read with a
/// parser just good enough for our own pages: quoted or bare values.
fn tags(html: &str) -> Vec<Tag> {
    let bytes = html.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(lt) = html[i..].find('<') {
        i += lt + 1;
        if i >= bytes.len() || !bytes[i].is_ascii_alphabetic() {
            continue;
        }
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'-') {
            i += 1;
        }
        let name = html[start..i].to_ascii_lowercase();
        let mut attrs = Vec::new();
        loop {
            while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            if i >= bytes.len() || bytes[i] == b'>' || bytes[i] == b'/' {
                break;
            }
            let start = i;
            while i < bytes.len() && !b" \t\r\n=>/".contains(&bytes[i]) {
                i += 1;
            }
            let attr = html[start..i].to_ascii_lowercase();
            let mut value = String::new();
            if i < bytes.len() && bytes[i] == b'=' {
                i += 1;
                if bytes[i] == b'"' || bytes[i] == b'\'' {
                    let quote = bytes[i] as char;
                    let close = html[i + 1..].find(quote).expect("an unclosed value");
                    value = html[i + 1..i + 1 + close].to_string();
                    i += close + 2;
                } else {
                    let start = i;
                    while i < bytes.len() && !b" \t\r\n>".contains(&bytes[i]) {
                        i += 1;
                    }
                    value = html[start..i].to_string();
                }
            }
            attrs.push((attr, value));
        }
        let close = html[i..].find('>').expect("an unclosed tag");
        i += close + 1;
        out.push(Tag {
            name,
            attrs,
            end: i,
        });
    }
    out
}

/// The `src` and `href` values of a page.
fn references(html: &str) -> Vec<String> {
    tags(&without_comments(html))
        .into_iter()
        .flat_map(|tag| tag.attrs)
        .filter(|(name, _)| name == "src" || name == "href")
        .map(|(_, value)| value)
        .collect()
}

/// The modules a script imports (`from "./x.js"`, `import("./x.js")`),
/// as absolute paths under `/assets/`.
fn imports(js: &str) -> Vec<String> {
    let mut out = Vec::new();
    for marker in ["from \"", "import(\""] {
        for (at, _) in js.match_indices(marker) {
            let rest = &js[at + marker.len()..];
            let target = &rest[..rest.find('"').unwrap()];
            let path = target
                .strip_prefix("./")
                .map(|name| format!("/assets/{name}"))
                .unwrap_or_else(|| target.to_string());
            out.push(path);
        }
    }
    out
}

/// Every asset the pages reach, through `src`/`href` and imports.
async fn reachable_assets(app: &App) -> BTreeSet<String> {
    let mut todo: Vec<String> = Vec::new();
    for page in PAGES {
        let html = fetch(app, Method::GET, page).await.body;
        todo.extend(references(&html));
    }
    let mut seen = BTreeSet::new();
    while let Some(path) = todo.pop() {
        assert!(
            path.starts_with("/assets/") && !path.contains("//"),
            "{path} is not one of the component's own assets"
        );
        if !seen.insert(path.clone()) {
            continue;
        }
        if path.ends_with(".js") {
            todo.extend(imports(&fetch(app, Method::GET, &path).await.body));
        }
    }
    seen
}

#[tokio::test]
async fn pages_and_every_asset_they_reach_are_served_with_the_security_headers() {
    let (_redis, app) = start().await;
    let assets = reachable_assets(&app).await;
    for expected in ["/assets/app.css", "/assets/shop.js", "/assets/admin.js"] {
        assert!(assets.contains(expected), "{expected} not in {assets:?}");
    }
    // verify.js is loaded only when a draw is verified, still reachable.
    assert!(assets.contains("/assets/verify.js"), "{assets:?}");
    for path in PAGES.iter().map(|p| p.to_string()).chain(assets) {
        let got = fetch(&app, Method::GET, &path).await;
        assert_eq!(got.status, 200, "{path}");
        assert_eq!(
            got.header("content-type"),
            Some(content_type_of(&path)),
            "{path}"
        );
        expect_security_headers(&path, &got);
        assert!(!got.body.is_empty(), "{path}");
        let cache = got.header("cache-control").unwrap();
        if path.starts_with("/assets/") {
            assert!(cache.contains("max-age="), "{path}: {cache}");
        } else {
            assert_eq!(cache, "no-cache", "{path}");
        }
        // Nothing from elsewhere: no CDN, no other origin.
        assert!(
            !got.body.contains("http://") && !got.body.contains("https://"),
            "{path} names another origin"
        );

        let head = fetch(&app, Method::HEAD, &path).await;
        assert_eq!(head.status, 200, "HEAD {path}");
        assert_eq!(head.header("content-type"), Some(content_type_of(&path)));
        assert!(head.body.is_empty(), "HEAD {path}");
        expect_security_headers(&path, &head);
    }
}

#[tokio::test]
async fn pages_hold_nothing_inline_that_the_policy_would_refuse() {
    let (_redis, app) = start().await;
    for page in PAGES {
        let html = without_comments(&fetch(&app, Method::GET, page).await.body);
        let lower = html.to_ascii_lowercase();
        assert!(!lower.contains("<style"), "{page} has a <style> element");
        let tags = tags(&html);
        let scripts: Vec<&Tag> = tags.iter().filter(|t| t.name == "script").collect();
        assert!(!scripts.is_empty(), "{page} loads no script");
        for tag in &tags {
            for (name, value) in &tag.attrs {
                assert!(name != "style", "{page}: <{} style=\"{value}\">", tag.name);
                assert!(
                    !name.starts_with("on"),
                    "{page}: <{} {name}=\"{value}\">",
                    tag.name
                );
                assert!(
                    !value
                        .trim_start()
                        .to_ascii_lowercase()
                        .starts_with("javascript:"),
                    "{page}: <{} {name}=\"{value}\">",
                    tag.name
                );
            }
        }
        for script in scripts {
            assert!(
                script.attrs.iter().any(|(n, _)| n == "src"),
                "{page} has a <script> without src"
            );
            let body = &lower[script.end..];
            assert!(
                body.starts_with("</script>"),
                "{page} has an inline <script> body"
            );
        }
    }
    // The scripts do not write markup or styles either: text goes in as
    // text, looks come from the style sheet.
    for path in reachable_assets(&app).await {
        if !path.ends_with(".js") {
            continue;
        }
        let js = fetch(&app, Method::GET, &path).await.body;
        for banned in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            ".style.",
            "\"style\"",
        ] {
            assert!(!js.contains(banned), "{path} uses {banned}");
        }
    }
}

#[tokio::test]
async fn unknown_assets_are_404_other_methods_405_and_the_api_is_unchanged() {
    let (_redis, app) = start().await;
    for path in [
        "/assets/nope.js",
        "/assets/",
        "/assets/app.css/x",
        "/index.html",
    ] {
        let got = fetch(&app, Method::GET, path).await;
        assert_eq!(got.status, 404, "{path}");
    }
    let missing = fetch(&app, Method::GET, "/assets/nope.js").await;
    expect_security_headers("/assets/nope.js", &missing);

    for (method, path) in [
        (Method::POST, "/"),
        (Method::PUT, "/admin"),
        (Method::DELETE, "/assets/app.css"),
    ] {
        let got = fetch(&app, method.clone(), path).await;
        assert_eq!(got.status, 405, "{method} {path}");
        assert_eq!(got.header("allow"), Some("GET, HEAD"), "{method} {path}");
        expect_security_headers(path, &got);
    }

    // The API keeps its own components and its JSON.
    let health = app.api.health().await;
    assert_eq!(health.status, 200);
    assert_eq!(
        health.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert!(health.header("content-security-policy").is_none());
    let vouchers = app.api.vouchers("1").await;
    assert_eq!(vouchers.expect(200).vouchers, vec![]);
    let unknown = app.api.get("/api/nope").await;
    assert_eq!(unknown.status, 404);
}

#[test]
fn the_reference_readers_read_our_markup() {
    let html = "<!-- <a href=\"/x\"> --><link rel=\"stylesheet\" href=\"/assets/a.css\">\
        <script type=module src='/assets/b.js'></script><p hidden>t</p>";
    assert_eq!(references(html), ["/assets/a.css", "/assets/b.js"]);
    let js = "import { a } from \"./api.js\";\nawait import(\"./verify.js\");";
    assert_eq!(imports(js), ["/assets/api.js", "/assets/verify.js"]);
}
