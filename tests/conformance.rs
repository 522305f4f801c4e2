//! Spin's own conformance suite, run against the host under test.
//!
//! The cases, their components and the WIT they are built from are vendored
//! unmodified from `fermyon/conformance-tests` in `tests/conformance` (see its
//! README). Each test here runs one case the way upstream's runner does:
//!
//! 1. The components are built once per test process, as upstream builds
//!    them: `cargo build --release --target wasm32-unknown-unknown`, which
//!    makes core modules carrying wit-bindgen's `component-type` section, not
//!    components. The host has to turn them into components, as Spin does.
//! 2. The services the case's `preconditions` name are started locally
//!    instead of in Docker or Python: `redis` is a private `redis-server`,
//!    `http-echo` and `tcp-echo` are small servers on this runtime.
//! 3. The case's `spin.toml` is written into a temporary folder with its
//!    templates filled in: `%{source=NAME}` becomes the path of the built
//!    `.wasm` of `components/NAME`, `%{port=N}` the port on this machine of
//!    the service that stands in for container port N (6379 for `redis`, 80
//!    for `http-echo`, 7 for `tcp-echo`, as upstream's services declare).
//!    In `test.json5`, upstream fills in `%{port=N}` in request header
//!    values, and so does this runner.
//! 4. The app is started with the harness and each invocation is sent and its
//!    response checked as upstream's `assert_response` checks it: the status,
//!    then the body (exactly; no body expected means an empty one), then the
//!    headers (names and values compared case-insensitively; every expected
//!    header must be present unless `optional`, with the given value if any,
//!    and no header may appear that the case does not list).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::harness::{AppConfig, RedisServer, repo_root};

/// The target upstream builds its components for.
const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// The vendored suite.
fn suite_dir() -> PathBuf {
    repo_root().join("tests/conformance")
}

#[tokio::test]
async fn conformance_request_shape() {
    run_case("request-shape").await;
}

#[tokio::test]
async fn conformance_variables() {
    run_case("variables").await;
}

#[tokio::test]
async fn conformance_outbound_redis() {
    run_case("outbound-redis").await;
}

#[tokio::test]
async fn conformance_outbound_redis_no_permission() {
    run_case("outbound-redis-no-permission").await;
}

#[tokio::test]
async fn conformance_outbound_redis_variable_permission() {
    run_case("outbound-redis-variable-permission").await;
}

#[tokio::test]
async fn conformance_outbound_wasi_http_v0_2_0() {
    run_case("outbound-wasi-http-v0.2.0").await;
}

#[tokio::test]
async fn conformance_outbound_wasi_http_v0_2_0_no_perms() {
    run_case("outbound-wasi-http-v0.2.0-no-perms").await;
}

#[tokio::test]
async fn conformance_tcp_sockets() {
    run_case("tcp-sockets").await;
}

#[tokio::test]
async fn conformance_tcp_sockets_ip_range() {
    run_case("tcp-sockets-ip-range").await;
}

#[tokio::test]
async fn conformance_tcp_sockets_ip_range_variable_permission() {
    run_case("tcp-sockets-ip-range-variable-permission").await;
}

#[tokio::test]
async fn conformance_tcp_sockets_no_ip_permission() {
    run_case("tcp-sockets-no-ip-permission").await;
}

#[tokio::test]
async fn conformance_tcp_sockets_no_port_permission() {
    run_case("tcp-sockets-no-port-permission").await;
}

/// Runs the case in `tests/conformance/tests/<name>`, panicking with
/// everything needed to see why when it fails.
async fn run_case(name: &str) {
    let case_dir = suite_dir().join("tests").join(name);
    let config_text = std::fs::read_to_string(case_dir.join("test.json5"))
        .unwrap_or_else(|e| panic!("case `{name}`: cannot read test.json5: {e}"));
    let config: TestConfig = json5::from_str(&config_text)
        .unwrap_or_else(|e| panic!("case `{name}`: test.json5 could not be parsed: {e}"));
    let wasm_dir = built_components();

    let dir = tempfile::tempdir().unwrap();
    let services = Services::start(&config.preconditions)
        .await
        .unwrap_or_else(|e| panic!("case `{name}`: {e}"));

    let template = std::fs::read_to_string(case_dir.join("spin.toml"))
        .unwrap_or_else(|e| panic!("case `{name}`: cannot read spin.toml: {e}"));
    let manifest_text = substitute(&template, |key, value| match key {
        "source" => component_wasm(wasm_dir, value),
        "port" => services.port(value),
        _ => Err(format!("unknown template key: {key}")),
    })
    .unwrap_or_else(|e| panic!("case `{name}`: spin.toml: {e}"));
    let manifest = dir.path().join("spin.toml");
    std::fs::write(&manifest, &manifest_text).unwrap();

    let app = AppConfig::new(manifest)
        .try_start()
        .await
        .unwrap_or_else(|logs| {
            panic!(
                "case `{name}`: the app did not start\n\n\
                 manifest:\n{manifest_text}\n\nhost log:\n{logs}"
            )
        });

    for (i, invocation) in config.invocations.into_iter().enumerate() {
        let mut request = invocation.request;
        for header in &mut request.headers {
            header.value = substitute(&header.value, |key, value| match key {
                "port" => services.port(value),
                _ => Err(format!("unknown template key: {key}")),
            })
            .unwrap_or_else(|e| panic!("case `{name}`: request header {}: {e}", header.name));
        }
        let actual = send(&app, &request).await;
        let outcome = match &actual {
            Ok(actual) => check(&invocation.response, actual),
            Err(e) => Err(e.clone()),
        };
        if let Err(reason) = outcome {
            let actual = match &actual {
                Ok(actual) => actual.to_string(),
                Err(_) => "(none)".to_string(),
            };
            panic!(
                "conformance case `{name}`, invocation {i}, failed: {reason}\n\n\
                 request:\n{request}\n\
                 expected response:\n{expected}\n\
                 actual response:\n{actual}\n\
                 manifest:\n{manifest_text}\n\n\
                 host log:\n{logs}",
                expected = invocation.response,
                logs = app.logs(),
            );
        }
    }
}

/// Sends `request` to the app, as upstream's runner does.
async fn send(app: &crate::harness::App, request: &Request) -> Result<Actual, String> {
    let url = reqwest::Url::parse(&app.base)
        .and_then(|base| base.join(&request.path))
        .map_err(|e| format!("could not construct the request URL: {e}"))?;
    let mut headers = reqwest::header::HeaderMap::new();
    for header in &request.headers {
        // A `Host` header given here is sent as it is, instead of the
        // address the client connects to.
        headers.append(
            reqwest::header::HeaderName::from_bytes(header.name.as_bytes())
                .map_err(|e| format!("bad header name {:?}: {e}", header.name))?,
            reqwest::header::HeaderValue::from_str(&header.value)
                .map_err(|e| format!("bad header value {:?}: {e}", header.value))?,
        );
    }
    let method = match request.method {
        Method::GET => reqwest::Method::GET,
        Method::POST => reqwest::Method::POST,
    };
    let mut builder = app
        .http
        .request(method, url)
        .headers(headers)
        .timeout(Duration::from_secs(60));
    if let Some(body) = &request.body {
        builder = builder.body(body.clone());
    }
    let response = builder
        .send()
        .await
        .map_err(|e| format!("the request failed: {e:?}"))?;
    let status = response.status().as_u16();
    // Upstream keeps one value per name.
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| {
            let v = v.to_str().unwrap_or("<non-utf8>");
            (k.as_str().to_string(), v.to_string())
        })
        .collect();
    let body = response
        .bytes()
        .await
        .map_err(|e| format!("reading the response body failed: {e:?}"))?
        .to_vec();
    Ok(Actual {
        status,
        headers,
        body,
    })
}

/// Checks a response as upstream's `assertions::assert_response` does.
fn check(expected: &Response, actual: &Actual) -> Result<(), String> {
    let actual_body =
        String::from_utf8(actual.body.clone()).unwrap_or_else(|_| String::from("<invalid utf-8>"));
    if actual.status != expected.status {
        return Err(format!(
            "actual status {} != expected status {}",
            actual.status, expected.status
        ));
    }
    let expected_body = expected.body.as_deref().unwrap_or_default();
    if actual_body != expected_body {
        return Err(format!(
            "actual body != expected body\nactual: {actual_body}\nexpected: {expected_body}"
        ));
    }
    let mut actual_headers: HashMap<String, String> = actual
        .headers
        .iter()
        .map(|(k, v)| (k.to_lowercase(), v.to_lowercase()))
        .collect();
    for header in &expected.headers {
        let Some(actual_value) = actual_headers.remove(&header.name.to_lowercase()) else {
            if header.optional {
                continue;
            }
            return Err(format!(
                "expected header '{}' not found in response",
                header.name
            ));
        };
        if let Some(value) = &header.value {
            let value = value.to_lowercase();
            if actual_value != value {
                return Err(format!(
                    "header '{}' has unexpected value '{actual_value}' != '{value}'",
                    header.name
                ));
            }
        }
    }
    if !actual_headers.is_empty() {
        let unexpected: BTreeMap<_, _> = actual_headers.into_iter().collect();
        return Err(format!("unexpected headers: {unexpected:?}"));
    }
    Ok(())
}

/// Replaces each `%{KEY=VALUE}` in `text` with what `replace` gives for the
/// trimmed key and value, as upstream's `replace_template` does (a template
/// does not span lines).
fn substitute(
    text: &str,
    mut replace: impl FnMut(&str, &str) -> Result<String, String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("%{") {
        let inner = &rest[start + 2..];
        let Some(end) = inner
            .find(['}', '\n'])
            .filter(|&end| inner[end..].starts_with('}'))
        else {
            out.push_str(&rest[..start + 2]);
            rest = inner;
            continue;
        };
        let template = &inner[..end];
        let (key, value) = template.split_once('=').ok_or_else(|| {
            format!("invalid template '{template}' (template should be in the form $KEY=$VALUE)")
        })?;
        out.push_str(&rest[..start]);
        out.push_str(&replace(key.trim(), value.trim())?);
        rest = &inner[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The `.wasm` built from `components/<component>`: cargo names it after the
/// package, which is not always the folder's name.
fn component_wasm(wasm_dir: &Path, component: &str) -> Result<String, String> {
    let cargo_toml = suite_dir()
        .join("components")
        .join(component)
        .join("Cargo.toml");
    let text = std::fs::read_to_string(&cargo_toml)
        .map_err(|e| format!("no such component '{component}': {e}"))?;
    let doc: toml::Table = text
        .parse()
        .map_err(|e| format!("{}: {e}", cargo_toml.display()))?;
    let package = doc
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .ok_or_else(|| format!("{} names no package", cargo_toml.display()))?;
    let wasm = wasm_dir.join(format!("{}.wasm", package.replace('-', "_")));
    if !wasm.is_file() {
        return Err(format!("component '{component}' was not built"));
    }
    let path = wasm.to_str().ok_or("the build folder is not UTF-8")?;
    // A TOML basic string: the path goes in between quotes.
    Ok(path.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Builds the vendored components once per test process and returns the
/// folder holding the `.wasm` files.
fn built_components() -> &'static Path {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match BUILT.get_or_init(build_components) {
        Ok(dir) => dir,
        Err(e) => panic!("{e}"),
    }
}

fn build_components() -> Result<PathBuf, String> {
    let missing_target = || {
        format!(
            "building the conformance components needs the {WASM_TARGET} Rust target: \
             run `rustup target add {WASM_TARGET}`"
        )
    };
    if let Ok(out) = Command::new("rustc").args(["--print", "sysroot"]).output()
        && out.status.success()
    {
        let sysroot = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if !sysroot.join("lib/rustlib").join(WASM_TARGET).is_dir() {
            return Err(missing_target());
        }
    }
    let target_dir = repo_root().join("target/conformance");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["build", "--release", "--locked", "--target", WASM_TARGET])
        .arg("--manifest-path")
        .arg(suite_dir().join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .output()
        .map_err(|e| format!("cannot run cargo to build the conformance components: {e}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let hint = if stderr.contains("target may not be installed") {
            format!("\n{}", missing_target())
        } else {
            String::new()
        };
        return Err(format!(
            "building the conformance components failed ({}):\n{stderr}{hint}",
            out.status
        ));
    }
    Ok(target_dir.join(WASM_TARGET).join("release"))
}

/// The services a case needs, each standing in for a container port.
struct Services {
    _redis: Option<RedisServer>,
    /// Container port to port on this machine.
    ports: HashMap<u16, u16>,
    tasks: Vec<JoinHandle<()>>,
}

impl Services {
    async fn start(preconditions: &[Precondition]) -> Result<Self, String> {
        let mut services = Services {
            _redis: None,
            ports: HashMap::new(),
            tasks: Vec::new(),
        };
        for precondition in preconditions {
            let (container_port, port) = match precondition {
                Precondition::Redis => {
                    let redis = RedisServer::start();
                    let port = redis.port;
                    services._redis = Some(redis);
                    (6379, port)
                }
                Precondition::HttpEcho => {
                    let (port, task) = http_echo().await;
                    services.tasks.push(task);
                    (80, port)
                }
                Precondition::TcpEcho => {
                    let (port, task) = tcp_echo().await;
                    services.tasks.push(task);
                    (7, port)
                }
                Precondition::KeyValueStore { label } => {
                    return Err(format!(
                        "precondition key-value-store (label {label}) is not supported here"
                    ));
                }
                other => return Err(format!("precondition {other:?} is not supported here")),
            };
            if services.ports.insert(container_port, port).is_some() {
                return Err(format!(
                    "two services expose port {container_port} to the host"
                ));
            }
        }
        Ok(services)
    }

    /// The port on this machine standing in for `container_port`.
    fn port(&self, container_port: &str) -> Result<String, String> {
        let container_port: u16 = container_port
            .parse()
            .map_err(|e| format!("failed to parse '{container_port}' as port: {e}"))?;
        self.ports
            .get(&container_port)
            .map(u16::to_string)
            .ok_or_else(|| format!("no port {container_port} exposed by any service"))
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Upstream's `http-echo`: answers every request with 200, `text/plain` and
/// the request's body.
async fn http_echo() -> (u16, JoinHandle<()>) {
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = service_fn(|request: hyper::Request<hyper::body::Incoming>| async {
                    let body = request.into_body().collect().await?.to_bytes();
                    let mut response = hyper::Response::new(Full::<Bytes>::new(body));
                    response.headers_mut().insert(
                        hyper::header::CONTENT_TYPE,
                        hyper::header::HeaderValue::from_static("text/plain"),
                    );
                    Ok::<_, hyper::Error>(response)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (port, task)
}

/// Upstream's `tcp-echo`: sends back whatever it receives.
async fn tcp_echo() -> (u16, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let (mut rx, mut tx) = stream.split();
                let _ = tokio::io::copy(&mut rx, &mut tx).await;
            });
        }
    });
    (port, task)
}

/// A case's `test.json5`, as upstream's `config::TestConfig` reads it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestConfig {
    invocations: Vec<Invocation>,
    #[serde(default)]
    preconditions: Vec<Precondition>,
}

/// An HTTP invocation, the only kind upstream has.
#[derive(Debug, Deserialize)]
struct Invocation {
    request: Request,
    response: Response,
}

#[derive(Debug, Deserialize)]
struct Request {
    #[serde(default)]
    method: Method,
    path: String,
    #[serde(default)]
    headers: Vec<RequestHeader>,
    #[serde(default)]
    body: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RequestHeader {
    name: String,
    value: String,
}

#[derive(Debug, Default, Deserialize)]
#[allow(clippy::upper_case_acronyms, reason = "upstream's spelling")]
enum Method {
    #[default]
    GET,
    POST,
}

#[derive(Debug, Deserialize)]
struct Response {
    #[serde(default = "default_status")]
    status: u16,
    headers: Vec<ResponseHeader>,
    body: Option<String>,
}

fn default_status() -> u16 {
    200
}

#[derive(Debug, Deserialize)]
struct ResponseHeader {
    name: String,
    value: Option<String>,
    #[serde(default)]
    optional: bool,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
enum Precondition {
    KeyValueStore { label: String },
    HttpEcho,
    TcpEcho,
    Sqlite,
    Redis,
    Mqtt,
    Postgres,
}

/// A response as the runner saw it.
struct Actual {
    status: u16,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "  {:?} {}", self.method, self.path)?;
        for header in &self.headers {
            writeln!(f, "  {}: {}", header.name, header.value)?;
        }
        if let Some(body) = &self.body {
            writeln!(f, "  body: {body:?}")?;
        }
        Ok(())
    }
}

impl std::fmt::Display for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "  status {}", self.status)?;
        for header in &self.headers {
            let mut line = format!("  {}", header.name);
            if let Some(value) = &header.value {
                write!(line, ": {value}")?;
            }
            if header.optional {
                line.push_str(" (optional)");
            }
            writeln!(f, "{line}")?;
        }
        writeln!(f, "  body: {:?}", self.body.as_deref().unwrap_or_default())
    }
}

impl std::fmt::Display for Actual {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "  status {}", self.status)?;
        let headers: BTreeMap<_, _> = self.headers.iter().collect();
        for (name, value) in headers {
            writeln!(f, "  {name}: {value}")?;
        }
        writeln!(f, "  body: {:?}", String::from_utf8_lossy(&self.body))
    }
}

/// The runner's own parts, against the rules upstream's runner follows.
mod runner {
    use super::*;

    fn ports(text: &str) -> Result<String, String> {
        substitute(text, |key, value| match key {
            "port" => Ok(format!("<{value}>")),
            _ => Err(format!("unknown template key: {key}")),
        })
    }

    #[test]
    fn templates_are_filled_in_like_upstream() {
        assert_eq!(
            ports("redis://localhost:%{port=6379}").unwrap(),
            "redis://localhost:<6379>"
        );
        assert_eq!(ports("a%{ port = 7 }b%{port=80}").unwrap(), "a<7>b<80>");
        assert_eq!(ports("no templates").unwrap(), "no templates");
        // Like upstream's regex, a template does not span lines.
        assert_eq!(ports("%{port\n=7}").unwrap(), "%{port\n=7}");
        assert_eq!(ports("50%{").unwrap(), "50%{");
        assert!(ports("%{source=x}").unwrap_err().contains("unknown"));
        assert!(ports("%{port}").unwrap_err().contains("invalid template"));
    }

    fn expected(status: u16, headers: &[(&str, Option<&str>, bool)], body: &str) -> Response {
        Response {
            status,
            headers: headers
                .iter()
                .map(|&(name, value, optional)| ResponseHeader {
                    name: name.to_string(),
                    value: value.map(str::to_string),
                    optional,
                })
                .collect(),
            body: (!body.is_empty()).then(|| body.to_string()),
        }
    }

    fn actual(status: u16, headers: &[(&str, &str)], body: &str) -> Actual {
        Actual {
            status,
            headers: headers
                .iter()
                .map(|&(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn responses_are_checked_like_upstream() {
        let want = expected(
            200,
            &[
                ("Content-Length", Some("0"), false),
                ("Date", None, true),
                ("Content-Type", Some("TEXT/plain"), true),
            ],
            "",
        );
        assert_eq!(
            check(&want, &actual(200, &[("content-length", "0")], "")),
            Ok(())
        );
        let with_optional = actual(
            200,
            &[
                ("content-length", "0"),
                ("date", "x"),
                ("content-type", "text/PLAIN"),
            ],
            "",
        );
        assert_eq!(check(&want, &with_optional), Ok(()));
        // Wrong status, body, missing or wrong header, header not listed.
        assert!(check(&want, &actual(500, &[("content-length", "0")], "")).is_err());
        assert!(check(&want, &actual(200, &[("content-length", "0")], "x")).is_err());
        assert!(check(&want, &actual(200, &[], "")).is_err());
        assert!(check(&want, &actual(200, &[("content-length", "1")], "")).is_err());
        let extra = actual(200, &[("content-length", "0"), ("x-extra", "1")], "");
        assert!(
            check(&want, &extra)
                .unwrap_err()
                .contains("unexpected headers")
        );
    }

    #[test]
    fn every_vendored_case_parses() {
        for entry in std::fs::read_dir(suite_dir().join("tests")).unwrap() {
            let path = entry.unwrap().path().join("test.json5");
            let text = std::fs::read_to_string(&path).unwrap();
            if let Err(e) = json5::from_str::<TestConfig>(&text) {
                panic!("{}: {e}", path.display());
            }
        }
    }
}
