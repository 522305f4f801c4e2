//! The API's OpenAPI document (`openapi.json`, beside `spin.toml`) held to
//! the manifest, to the code and to the running app:
//!
//! - it lists exactly the routes of `spin.toml`, each with the methods its
//!   component answers, so neither can drift from the other;
//! - the app serves it at `GET /api/openapi.json`;
//! - Schemathesis fuzzes the running app from it (real Redis, real HTTP):
//!   positive and negative cases, then stateful chains along the
//!   document's links, with a shopper and an operator supplied by
//!   tests/fuzz/flashspin_hooks.py. No server error, no response outside
//!   the document, no undocumented status, at least 10,000 requests
//!   (with the default budget; FLASHSPIN_FUZZ_SEED and
//!   FLASHSPIN_FUZZ_EXAMPLES choose another seed and budget).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde_json::Value;

use crate::harness::{AppConfig, RedisServer, app_manifest, free_port, repo_root};

/// The Schemathesis release the run is pinned to.
const SCHEMATHESIS: &str = "4.32.5";

/// Requests one run must make at least, with the default budget.
const MIN_REQUESTS: u64 = 10_000;
/// Test cases per operation and phase unless FLASHSPIN_FUZZ_EXAMPLES says.
const EXAMPLES: u64 = 500;
/// The seed unless FLASHSPIN_FUZZ_SEED says: fixed, so that the run in
/// `cargo test` is the same each time.
const SEED: u64 = 17;

fn document_path() -> PathBuf {
    repo_root().join("openapi.json")
}

fn document() -> Value {
    let text = std::fs::read_to_string(document_path()).unwrap();
    serde_json::from_str(&text).expect("openapi.json is JSON")
}

/// A route pattern in a shape both notations share: `:id`, `{id}` and
/// Spin's trailing wildcard `...` all become `{}`.
fn shape(pattern: &str) -> String {
    pattern
        .split('/')
        .map(|segment| {
            let is_param = segment.starts_with(':')
                || (segment.starts_with('{') && segment.ends_with('}'))
                || segment == "...";
            if is_param { "{}" } else { segment }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The methods `component` answers on `route`: those of its `Route` impls
/// for that path, or GET for a component that serves files.
fn component_methods(component: &str, route: &str) -> BTreeSet<String> {
    let source =
        std::fs::read_to_string(repo_root().join(format!("components/{component}/src/lib.rs")))
            .unwrap();
    let path_line = format!("const PATH: &'static str = \"{route}\";");
    let mut methods = BTreeSet::new();
    let mut lines = source.lines();
    while let Some(line) = lines.next() {
        if line.trim() == path_line
            && let Some(method) = lines.next().and_then(|l| {
                l.trim()
                    .strip_prefix("const METHOD: &'static str = \"")?
                    .strip_suffix("\";")
                    .map(str::to_lowercase)
            })
        {
            methods.insert(method);
        }
    }
    if methods.is_empty() && !source.contains("impl Route for") {
        methods.insert("get".to_string());
    }
    methods
}

/// (shape, method) of every route in `spin.toml`, with the methods its
/// component answers.
fn manifest_operations() -> BTreeSet<(String, String)> {
    let manifest: toml::Table = std::fs::read_to_string(app_manifest())
        .unwrap()
        .parse()
        .unwrap();
    let mut operations = BTreeSet::new();
    for trigger in manifest["trigger"]["http"].as_array().unwrap() {
        let route = trigger["route"].as_str().unwrap();
        let component = trigger["component"].as_str().unwrap();
        let methods = component_methods(component, route);
        assert!(!methods.is_empty(), "{component} lists no route {route}");
        for method in methods {
            operations.insert((shape(route), method));
        }
    }
    operations
}

fn document_operations(doc: &Value) -> BTreeSet<(String, String)> {
    const METHODS: [&str; 8] = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];
    let mut operations = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            if item.get(method).is_some() {
                operations.insert((shape(path), method.to_string()));
            }
        }
    }
    operations
}

#[test]
fn the_document_lists_exactly_the_routes_of_the_manifest() {
    let doc = document();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1."),
        "{}",
        doc["openapi"]
    );
    let in_manifest = manifest_operations();
    let in_document = document_operations(&doc);
    let undocumented: Vec<_> = in_manifest.difference(&in_document).collect();
    let unrouted: Vec<_> = in_document.difference(&in_manifest).collect();
    assert!(
        undocumented.is_empty() && unrouted.is_empty(),
        "routes without a description: {undocumented:?}; described but not routed: {unrouted:?}"
    );
    // Every operation can be named by clients' generators.
    let mut ids = BTreeSet::new();
    for item in doc["paths"].as_object().unwrap().values() {
        for operation in item.as_object().unwrap().values() {
            if let Some(id) = operation.get("operationId") {
                assert!(ids.insert(id.as_str().unwrap()), "operationId {id} twice");
            }
        }
    }
    assert_eq!(
        ids.len(),
        in_document.len(),
        "an operation has no operationId"
    );
}

#[test]
fn the_shape_of_a_route_ignores_parameter_names_only() {
    assert_eq!(
        shape("/api/lottery/:goods_id/periods/:n"),
        shape("/api/lottery/{goods_id}/periods/{n}")
    );
    assert_eq!(shape("/assets/..."), shape("/assets/{file}"));
    assert_ne!(
        shape("/api/vouchers/:id"),
        shape("/api/vouchers/{id}/orders")
    );
}

#[test]
fn a_body_too_large_is_a_documented_refusal_the_fuzzer_accepts() {
    // The app refuses a body over 16 KiB with 413 before reading it, be
    // the body valid or not. So every operation that takes one declares
    // 413, and the fuzz run counts it as a refusal of invalid data: its
    // default list of refusals has no 413, and a large invalid body (seed
    // 90210) was reported as invalid data accepted.
    let doc = document();
    let mut with_body = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if operation.get("requestBody").is_none() {
                continue;
            }
            with_body += 1;
            let responses = &operation["responses"];
            assert!(responses.get("400").is_some(), "{method} {path}: no 400");
            assert_eq!(
                responses["413"]["$ref"], "#/components/responses/PayloadTooLarge",
                "{method} {path}: 413"
            );
        }
    }
    assert!(with_body >= 6, "{with_body} operations take a body");
    let too_large = &doc["components"]["responses"]["PayloadTooLarge"];
    let schema = &too_large["content"]["application/json"]["schema"];
    assert_eq!(
        schema["properties"]["error"]["properties"]["code"]["const"],
        "payload_too_large"
    );

    let settings: toml::Table =
        std::fs::read_to_string(repo_root().join("tests/fuzz/schemathesis.toml"))
            .unwrap()
            .parse()
            .unwrap();
    let refusals: BTreeSet<&str> = settings["checks"]
        .get("negative_data_rejection")
        .and_then(|check| check.get("expected-statuses"))
        .and_then(|statuses| statuses.as_array())
        .map(|statuses| statuses.iter().filter_map(|s| s.as_str()).collect())
        .unwrap_or_default();
    for status in ["400", "401", "404", "409", "413", "429"] {
        assert!(
            refusals.contains(status),
            "the fuzz settings' negative_data_rejection does not take {status}: {refusals:?}"
        );
    }
}

#[tokio::test]
async fn the_app_serves_the_document() {
    let redis = RedisServer::start();
    let app = AppConfig::new(app_manifest())
        .var("redis_address", redis.url())
        .start()
        .await;
    let res = app
        .http
        .get(app.url("/api/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    // The same document, minified.
    let served: Value = res.json().await.unwrap();
    assert_eq!(served, document());

    let res = app
        .http
        .post(app.url("/api/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
    assert_eq!(res.headers()["allow"], "GET");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed");
}

/// The `st` program of a private venv with the pinned Schemathesis, made
/// (from PyPI) on first use.
fn schemathesis() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("schemathesis");
    let st = dir.join("venv/bin/st");
    let installed = Command::new(&st)
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(SCHEMATHESIS));
    if !installed {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let venv = dir.join("venv");
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 runs (Debian: apt-get install python3-venv)");
        assert!(made.success(), "python3 -m venv failed");
        let pip = Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .arg(format!("schemathesis=={SCHEMATHESIS}"))
            .status()
            .unwrap();
        assert!(pip.success(), "pip could not install schemathesis");
    }
    st
}

/// The run's settings, from the environment where given:
/// FLASHSPIN_FUZZ_SEED (default [`SEED`]; a failure reproduces from its
/// seed and budget) and FLASHSPIN_FUZZ_EXAMPLES (test cases per operation
/// and phase, default [`EXAMPLES`]).
fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name}={v}")))
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_fault_in_ten_thousand_requests() {
    const ADMIN_KEY: &str = "fuzz-admin-key";
    const WEBHOOK_SECRET: &str = "fuzz-webhook-secret";
    let st = schemathesis();
    let seed = setting("FLASHSPIN_FUZZ_SEED", SEED);
    let examples = setting("FLASHSPIN_FUZZ_EXAMPLES", EXAMPLES);
    // A smaller budget (CI's second run, with the day's seed) makes
    // proportionally fewer requests.
    let min_requests = MIN_REQUESTS * examples.min(EXAMPLES) / EXAMPLES;

    let redis = RedisServer::start();
    let sms_port = free_port();
    // Limits loose enough that the fuzzer meets the routes rather than
    // 429s; the limits themselves are tested in ratelimit.rs and login.rs.
    let app = AppConfig::new(app_manifest())
        .var("redis_address", redis.url())
        .var("sms_webhook_origin", format!("http://127.0.0.1:{sms_port}"))
        .var("admin_key", ADMIN_KEY)
        .var("payment_webhook_secret", WEBHOOK_SECRET)
        .var("rate_limit_user", "100000/1")
        .var("rate_limit_user_reads", "100000/1")
        .var("rate_limit_ip", "100000/1")
        .var("rate_limit_global", "100000/1")
        .var("code_hourly_limit_per_ip", "1000000")
        .start()
        .await;

    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("schemathesis/last-run");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let fuzz = repo_root().join("tests/fuzz");
    let report = out.join("report.json");
    let tally = out.join("tally.json");
    let log = out.join("output.txt");

    let started = Instant::now();
    let run = Command::new(&st)
        .arg("--no-color")
        .arg("--config-file")
        .arg(fuzz.join("schemathesis.toml"))
        .arg("run")
        // The file, which `the_app_serves_the_document` shows is what the
        // app serves: loaded from the app's URL, Schemathesis would leave
        // that one route out.
        .arg(document_path())
        .arg("--url")
        .arg(&app.base)
        // One worker: Python 3.11's parser is not thread-safe, and
        // Schemathesis parses as it generates.
        .args(["--workers", "1"])
        .arg(format!("--seed={seed}"))
        .arg(format!("--max-examples={examples}"))
        .args(["--report", "json"])
        .arg("--report-json-path")
        .arg(&report)
        .env("SCHEMATHESIS_HOOKS", "flashspin_hooks")
        .env("PYTHONPATH", &fuzz)
        .env("FLASHSPIN_BASE_URL", &app.base)
        .env("FLASHSPIN_SMS_PORT", sms_port.to_string())
        .env("FLASHSPIN_ADMIN_KEY", ADMIN_KEY)
        .env("FLASHSPIN_WEBHOOK_SECRET", WEBHOOK_SECRET)
        .env("FLASHSPIN_FUZZ_TALLY", &tally)
        .current_dir(&out)
        .output()
        .expect("schemathesis runs");
    let elapsed = started.elapsed();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    std::fs::write(&log, &printed).unwrap();

    let report: Value = serde_json::from_slice(
        &std::fs::read(&report).unwrap_or_else(|e| panic!("no report ({e}):\n{printed}")),
    )
    .unwrap();
    let tally: Value = serde_json::from_slice(&std::fs::read(&tally).unwrap()).unwrap();
    let requests = tally["requests"].as_u64().unwrap();
    let generated = report["test_cases"]["generated"].as_u64().unwrap();
    let summary = format!(
        "schemathesis {SCHEMATHESIS}: {requests} requests ({generated} test cases) in {:.1} s, \
         seed {seed}, {examples} examples per operation; failures: {}; errors: {}\n",
        elapsed.as_secs_f64(),
        report["failures"],
        report["errors"],
    );
    std::fs::write(out.join("summary.txt"), &summary).unwrap();
    print!("{summary}");

    assert!(
        run.status.success()
            && report["failures"].as_array().unwrap().is_empty()
            && report["errors"].as_array().unwrap().is_empty(),
        "{summary}{printed}"
    );
    assert!(requests >= min_requests, "{summary}");

    // The hooks got the fuzzer past the doors, not only to the refusals:
    // an operator created, a shopper bought and read, and signed webhooks
    // got past the signature check (to the order: 200 or 404).
    let reached: BTreeMap<&str, &[&str]> = BTreeMap::from([
        ("POST /api/admin/vouchers", &["201"][..]),
        ("POST /api/admin/lottery", &["201"]),
        ("POST /api/vouchers/{id}/orders", &["201"]),
        ("POST /api/lottery/{goods_id}/shares", &["201"]),
        ("POST /api/payments/webhook", &["200", "404"]),
        ("GET /api/me", &["200"]),
        ("GET /api/me/orders", &["200"]),
    ]);
    for (operation, statuses) in reached {
        let answers = &tally["operations"][operation];
        let seen: u64 = statuses.iter().filter_map(|s| answers[s].as_u64()).sum();
        assert!(
            seen > 0,
            "{operation} never answered {statuses:?}: {answers}"
        );
    }
}
