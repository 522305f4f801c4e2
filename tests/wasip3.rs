//! WASI 0.3 components (spin-sdk 7, `wasi:http/handler@0.3.0`), through the
//! probe-p3 and redis-probe-p3 fixtures (`tests/fixtures`), as Spin 4.1
//! runs them: an instance serves requests one after another up to its
//! reuse count and several at once, is dropped when idle, keeps what it
//! holds (a Redis connection) across its requests, and dies whole on a
//! panic, failing what it was running; the 0.3 Spin interfaces (Redis,
//! variables, PostgreSQL) and the Redis trigger's 0.3 export work, and the
//! allow-list holds for them. The same tests run on Spin 4.1 (`SPIN_BIN`);
//! on an older Spin, which cannot load these components, they are skipped.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use flashspin_testkit::PostgresServer;
use serde_json::{Value, json};

use crate::harness::{
    App, AppConfig, RedisServer, free_port, is_real_spin, repo_root, round_trips, runs_wasip3,
};

fn manifest() -> PathBuf {
    repo_root().join("tests/fixtures/p3.toml")
}

/// Whether the test must be skipped: the host cannot run WASI 0.3
/// components.
fn skipped() -> bool {
    let skip = !runs_wasip3();
    if skip {
        eprintln!("skipped: this Spin cannot run WASI 0.3 components (4.1 or newer can)");
    }
    skip
}

/// The fixture app's settings, or `None` when the test is [`skipped`].
fn config(redis: &RedisServer) -> Option<AppConfig> {
    if skipped() {
        return None;
    }
    Some(AppConfig::new(manifest()).var("redis_address", redis.url()))
}

/// One answer of the fixture: status and JSON body (null when empty).
struct Reply {
    status: u16,
    body: Value,
}

impl Reply {
    fn instance(&self) -> &str {
        self.body["instance"]
            .as_str()
            .unwrap_or_else(|| panic!("no instance in {} {}", self.status, self.body))
    }

    fn count(&self) -> u64 {
        self.body["count"].as_u64().unwrap()
    }
}

async fn get(app: &App, path: &str) -> Reply {
    let answer = app.api.get(path).send().await;
    let body = serde_json::from_slice(&answer.bytes).unwrap_or(Value::Null);
    Reply {
        status: answer.status,
        body,
    }
}

/// Starts `GET path` and lets it run.
fn start(app: &App, path: &str) -> tokio::task::JoinHandle<Reply> {
    let call = app.api.get(path);
    tokio::spawn(async move {
        let answer = call.send().await;
        Reply {
            status: answer.status,
            body: serde_json::from_slice(&answer.bytes).unwrap_or(Value::Null),
        }
    })
}

/// Waits until `n` clients of `redis` are blocked in `BLPOP`.
async fn blocked_in_blpop(redis: &RedisServer, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let clients: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query(&mut redis.conn())
            .unwrap();
        let blocked = clients.lines().filter(|l| l.contains("cmd=blpop")).count();
        if blocked >= n {
            assert_eq!(blocked, n, "{clients}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{blocked} of {n} blocked:\n{clients}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `(instance, count)` of each answer, in order.
fn served(replies: &[Reply]) -> Vec<(String, u64)> {
    replies
        .iter()
        .map(|r| {
            assert_eq!(r.status, 200, "{}", r.body);
            (r.instance().to_string(), r.count())
        })
        .collect()
}

#[tokio::test]
async fn an_instance_serves_up_to_its_reuse_count_then_a_fresh_one_takes_over() {
    let redis = RedisServer::start();
    let Some(config) = config(&redis) else { return };
    let app = config
        .arg("--max-instance-reuse-count")
        .arg("3")
        .start()
        .await;
    let mut replies = Vec::new();
    for _ in 0..7 {
        replies.push(get(&app, "/count").await);
    }
    let served = served(&replies);
    let counts: Vec<u64> = served.iter().map(|(_, count)| *count).collect();
    assert_eq!(counts, [1, 2, 3, 1, 2, 3, 1]);
    let instances: Vec<&str> = served.iter().map(|(id, _)| id.as_str()).collect();
    assert!(instances[..3].iter().all(|id| *id == instances[0]));
    assert!(instances[3..6].iter().all(|id| *id == instances[3]));
    let distinct: BTreeSet<&str> = [instances[0], instances[3], instances[6]].into();
    assert_eq!(distinct.len(), 3, "{instances:?}");
}

#[tokio::test]
async fn by_default_an_instance_serves_128_requests() {
    let redis = RedisServer::start();
    let Some(config) = config(&redis) else { return };
    let app = config.start().await;
    let mut replies = Vec::new();
    for _ in 0..130 {
        replies.push(get(&app, "/count").await);
    }
    let served = served(&replies);
    let expected: Vec<u64> = (1..=128).chain(1..=2).collect();
    let counts: Vec<u64> = served.iter().map(|(_, count)| *count).collect();
    assert_eq!(counts, expected);
    assert!(served[..128].iter().all(|(id, _)| *id == served[0].0));
    assert_ne!(served[128].0, served[0].0);
}

#[tokio::test]
async fn an_idle_instance_is_dropped_after_a_second() {
    let redis = RedisServer::start();
    let Some(config) = config(&redis) else { return };
    let app = config.start().await;
    let first = get(&app, "/count").await;
    let second = get(&app, "/count").await;
    assert_eq!((first.count(), second.count()), (1, 2));
    assert_eq!(first.instance(), second.instance());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = get(&app, "/count").await;
    assert_eq!(after.count(), 1, "an instance idle for 2 s is not reused");
    assert_ne!(after.instance(), first.instance());
}

#[tokio::test]
async fn one_instance_serves_requests_side_by_side() {
    let redis = RedisServer::start();
    let Some(config) = config(&redis) else { return };
    let app = config.start().await;
    // Each request blocks in BLPOP until the test pushes; the next one is
    // sent only once Redis sees the previous one waiting, so an instance
    // that served one request at a time could not have started them all.
    const N: usize = 4;
    let mut running = Vec::new();
    for i in 0..N {
        running.push(start(&app, "/blpop?key=jobs&timeout=20"));
        blocked_in_blpop(&redis, i + 1).await;
    }
    let pushed: i64 = redis::cmd("RPUSH")
        .arg("jobs")
        .arg(&["a", "b", "c", "d"])
        .query(&mut redis.conn())
        .unwrap();
    assert_eq!(pushed, N as i64);
    let mut replies = Vec::new();
    for request in running {
        replies.push(request.await.unwrap());
    }
    let served = served(&replies);
    let instances: BTreeSet<&str> = served.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(
        instances.len(),
        1,
        "all {N} waited in one instance: {served:?}"
    );
    let counts: BTreeSet<u64> = served.iter().map(|(_, count)| *count).collect();
    assert_eq!(counts.len(), N);
    let popped: BTreeSet<&str> = replies
        .iter()
        .map(|r| r.body["popped"].as_str().unwrap())
        .collect();
    assert_eq!(popped, ["a", "b", "c", "d"].into());
}

#[tokio::test]
async fn a_panic_fails_every_request_of_its_instance_and_the_next_gets_a_fresh_one() {
    let redis = RedisServer::start();
    let Some(config) = config(&redis) else { return };
    let app = config.start().await;
    let before = get(&app, "/count").await;
    let waiting = start(&app, "/blpop?key=never&timeout=20");
    blocked_in_blpop(&redis, 1).await;

    let panicked = get(&app, "/panic").await;
    assert_eq!(panicked.status, 500);
    let waiting = waiting.await.unwrap();
    assert_eq!(
        waiting.status, 500,
        "the request the instance was running fails with it: {}",
        waiting.body
    );

    let after = get(&app, "/count").await;
    assert_eq!(after.status, 200);
    assert_eq!(after.count(), 1);
    assert_ne!(after.instance(), before.instance());
    if !is_real_spin() {
        let logs = app
            .logs_containing("instance failed and was discarded")
            .await;
        assert!(logs.contains("the probe was asked to panic"), "{logs}");
        assert!(
            logs.contains("[probe-p3] instance failed and was discarded"),
            "{logs}"
        );
    }
}

#[tokio::test]
async fn a_redis_connection_lives_across_the_requests_of_an_instance() {
    let redis = RedisServer::start();
    let Some(config) = config(&redis) else { return };
    let app = config.start().await;
    let mut replies = Vec::new();
    for _ in 0..20 {
        replies.push(get(&app, "/ping").await);
    }
    let served = served(&replies);
    assert!(
        served.iter().all(|(id, _)| *id == served[0].0),
        "{served:?}"
    );
    for reply in &replies {
        assert_eq!(reply.body["pong"], "PONG");
        assert_eq!(reply.body["opened"], 1, "one connection: {}", reply.body);
    }
    let clients: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query(&mut redis.conn())
        .unwrap();
    let app_clients = clients.lines().filter(|l| l.contains("cmd=ping")).count();
    assert_eq!(app_clients, 1, "{clients}");
    if !is_real_spin() {
        // Each request's own round trip, on the shared connection.
        let logs = app.logs_containing("GET /ping").await;
        let trips = round_trips(&logs, "probe-p3");
        assert_eq!(trips, vec![1; 20], "{logs}");
    }
}

#[tokio::test]
async fn spin_redis_3_follows_allowed_outbound_hosts() {
    let redis = RedisServer::start();
    let Some(config) = config(&redis) else { return };
    let app = config.start().await;
    let open = |address: String| {
        let address: String = address
            .bytes()
            .map(|b| match b {
                b':' | b'/' | b'#' | b'@' | b'?' => format!("%{b:02X}"),
                _ => (b as char).to_string(),
            })
            .collect();
        format!("/open?address={address}")
    };
    let allowed = get(&app, &open(redis.url())).await;
    assert_eq!(allowed.body["pong"], "PONG", "{}", allowed.body);

    let elsewhere = format!("redis://127.0.0.1:{}", free_port());
    let denied = get(&app, &open(elsewhere.clone())).await;
    assert_eq!(denied.body["error"], "invalid-address", "{}", denied.body);

    if !is_real_spin() {
        // Spin checks this address as written and connects elsewhere.
        let authority = redis.url().trim_start_matches("redis://").to_string();
        let hidden = format!("{elsewhere}#@{authority}");
        let refused = get(&app, &open(hidden)).await;
        assert_eq!(refused.body["error"], "invalid-address", "{}", refused.body);
        let logs = app.logs_containing("denied").await;
        assert!(
            logs.contains(&format!(
                "[probe-p3] redis access to {elsewhere} denied: not in the component's allowed_outbound_hosts"
            )),
            "{logs}"
        );
    }
}

#[tokio::test]
async fn variables_are_read_through_spin_variables_3() {
    let redis = RedisServer::start();
    let Some(config) = config(&redis) else { return };
    let app = config.var("greeting", "bonjour").start().await;
    let greeting = get(&app, "/var?name=greeting").await;
    assert_eq!(greeting.body["value"], "bonjour");
    let missing = get(&app, "/var?name=nope").await;
    let error = missing.body["error"].as_str().unwrap();
    assert!(error.starts_with("Error::Undefined("), "{error}");
    let invalid = get(&app, "/var?name=Bad-Name").await;
    let error = invalid.body["error"].as_str().unwrap();
    assert!(error.starts_with("Error::InvalidName("), "{error}");
}

#[tokio::test]
async fn a_request_past_its_timeout_fails_and_the_app_serves_on() {
    let redis = RedisServer::start();
    let Some(config) = config(&redis) else { return };
    let app = config.arg("--request-timeout").arg("500ms").start().await;
    let started = Instant::now();
    let late = get(&app, "/sleep?ms=5000").await;
    assert_eq!(late.status, 500);
    assert!(started.elapsed() < Duration::from_secs(4));
    let next = get(&app, "/count").await;
    assert_eq!(next.status, 200);
}

#[tokio::test]
async fn the_host_request_time_limit_bounds_a_wasi_0_3_guest() {
    if is_real_spin() {
        return; // Spin bounds a request only with --request-timeout.
    }
    let redis = RedisServer::start();
    let Some(config) = config(&redis) else { return };
    let app = config
        .env("FLASHSPIN_REQUEST_TIME_LIMIT_MS", "700")
        .start()
        .await;
    let late = get(&app, "/sleep?ms=5000").await;
    assert_eq!(late.status, 500);
    let logs = app
        .logs_containing("no response within its time limit")
        .await;
    assert!(
        logs.contains("[probe-p3] component stopped: no response within its time limit"),
        "{logs}"
    );
    let next = get(&app, "/count").await;
    assert_eq!(next.status, 200);
}

#[tokio::test]
async fn a_computing_instance_is_given_no_more_requests() {
    let redis = RedisServer::start();
    let Some(config) = config(&redis) else { return };
    let app = config.start().await;
    let first = get(&app, "/count").await;
    let spinning = start(&app, "/spin?ms=3000");
    // The instance takes on another request only while all it runs waits.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let meanwhile = get(&app, "/count").await;
    if is_real_spin() && meanwhile.instance() == first.instance() {
        // Spin 4.1 may hand the request to the instance that computes,
        // whose thread it never gets back before the computation ends: it
        // waits for it, then is served there.
        assert!(spinning.is_finished());
        assert_eq!(spinning.await.unwrap().count(), 2);
        assert_eq!(meanwhile.count(), 3);
        return;
    }
    assert!(!spinning.is_finished(), "answered while the other computed");
    assert_eq!(meanwhile.count(), 1, "{}", meanwhile.body);
    assert_ne!(meanwhile.instance(), first.instance());
    let spun = spinning.await.unwrap();
    assert_eq!((spun.instance(), spun.count()), (first.instance(), 2));
}

#[tokio::test]
async fn a_wasi_0_3_guest_that_computes_for_ever_is_stopped() {
    if is_real_spin() {
        return; // Spin never stops a guest that computes.
    }
    let redis = RedisServer::start();
    let Some(config) = config(&redis) else { return };
    let app = config
        .env("FLASHSPIN_REQUEST_TIME_LIMIT_MS", "1000")
        .start()
        .await;
    let spinning = start(&app, "/spin");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(get(&app, "/count").await.status, 200);
    assert_eq!(spinning.await.unwrap().status, 500);
    let logs = app.logs_containing("was discarded").await;
    assert!(logs.contains("guest timed out"), "{logs}");
    assert_eq!(get(&app, "/count").await.status, 200);
}

#[tokio::test]
async fn postgres_4_2_async_functions_reach_an_allowed_server_only() {
    let redis = RedisServer::start();
    let Some(config) = config(&redis) else { return };
    let pg = PostgresServer::start();
    let app = config
        .var("pg_host", format!("127.0.0.1:{}", pg.port))
        .start()
        .await;
    let body = json!({
        "address": pg.url(),
        "execute": [
            "CREATE TABLE p3 (id int4 PRIMARY KEY, name text)",
            "INSERT INTO p3 VALUES (1, 'one'), (2, NULL)",
        ],
        "query": "SELECT id, name FROM p3 ORDER BY id",
    });
    let answer = app.api.post_json("/pg", &body).send().await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let result: Value = answer.body();
    assert_eq!(result["executed"], json!([0, 2]), "{result}");
    assert_eq!(result["columns"], json!(["id", "name"]), "{result}");
    assert_eq!(result["rows"], json!([[1, "one"], [2, null]]), "{result}");

    let elsewhere = json!({
        "address": format!("postgres://postgres@127.0.0.1:{}/postgres", free_port()),
        "query": "SELECT 1",
    });
    let answer = app.api.post_json("/pg", &elsewhere).send().await;
    let result: Value = answer.body();
    let error = result["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("ConnectionFailed") && error.contains("not permitted"),
        "{result}"
    );
}

#[tokio::test]
async fn a_wasi_0_3_redis_handler_runs_once_per_message() {
    if skipped() {
        return;
    }
    let redis = RedisServer::start();
    let app = AppConfig::new(repo_root().join("tests/fixtures/redis-trigger-p3.toml"))
        .var("redis_address", redis.url())
        .start()
        .await;
    // Spin's Redis trigger runs beside its HTTP one and may subscribe later.
    let logs = app.logs_containing("/events: [subscriber]").await;
    assert!(logs.contains("/events: [subscriber]"), "{logs}");
    for message in ["hello", "fail", "trap", "after"] {
        let subscribers: i64 = redis::cmd("PUBLISH")
            .arg("events")
            .arg(message)
            .query(&mut redis.conn())
            .unwrap();
        assert_eq!(subscribers, 1);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let seen = loop {
        let seen: Vec<String> = redis::cmd("LRANGE")
            .arg("seen")
            .arg(0)
            .arg(-1)
            .query(&mut redis.conn())
            .unwrap();
        if seen.len() >= 2 || Instant::now() > deadline {
            break seen;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(seen, ["p3:hello", "p3:after"]);
    if !is_real_spin() {
        // Spin 4.1 logs this at a level it does not print by default.
        let logs = app
            .logs_containing("Component subscriber handler failed")
            .await;
        assert!(
            logs.contains("Component subscriber handler failed: Redis handler returned an error"),
            "{logs}"
        );
    }
    // The app's HTTP side is unaffected.
    assert_eq!(get(&app, "/ping").await.body["pong"], "PONG");
}
