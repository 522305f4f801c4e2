//! The host itself, through the probe fixture (`tests/fixtures`): routing,
//! Spin's request headers, variables, outbound rules, Redis result mapping,
//! fresh instances, traps, and start-up and shutdown behaviour.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{
    ADMIN_KEY, App, AppConfig, RedisServer, SmsSink, app_manifest, fixture_manifest, is_real_spin,
    live_processes_in_group, round_trips,
};

async fn fixture_app(redis: &RedisServer) -> App {
    fixture_config(redis).start().await
}

fn fixture_config(redis: &RedisServer) -> AppConfig {
    AppConfig::new(fixture_manifest())
        .var("redis_address", redis.url())
        .var("fixture_secret", "s3cret")
}

async fn echo(app: &App, path: &str) -> Value {
    let reply = app.api.get(path).await;
    assert_eq!(reply.status, 200, "{path}: {}", reply.text());
    reply.body()
}

fn header<'a>(echo: &'a Value, name: &str) -> &'a str {
    echo["headers"][name]
        .as_str()
        .unwrap_or_else(|| panic!("no {name} header in {echo}"))
}

#[tokio::test]
async fn routes_follow_spin_precedence() {
    let redis = RedisServer::start();
    let app = fixture_app(&redis).await;
    for (path, route) in [
        ("/api/exact", "/api/exact"),
        ("/api/exact/more", "/api/..."),
        ("/api", "/api/..."),
        ("/api/other/thing", "/api/..."),
        ("/api/items/42", "/api/items/:item_id"),
        ("/api/items/42/parts/a/b", "/api/items/:item_id/parts/..."),
        ("/elsewhere", "/..."),
        ("/", "/..."),
    ] {
        let e = echo(&app, path).await;
        assert_eq!(header(&e, "spin-raw-component-route"), route, "{path}");
    }
}

#[tokio::test]
async fn requests_carry_spin_headers() {
    let redis = RedisServer::start();
    let app = fixture_app(&redis).await;

    let e = echo(&app, "/api/other/thing?action=echo&x=1").await;
    assert_eq!(header(&e, "spin-path-info"), "/other/thing");
    assert_eq!(header(&e, "spin-matched-route"), "/api/...");
    assert_eq!(header(&e, "spin-component-route"), "/api");
    assert_eq!(header(&e, "spin-base-path"), "/");
    let full = app.url("/api/other/thing?action=echo&x=1");
    assert_eq!(header(&e, "spin-full-url"), full);
    assert!(header(&e, "spin-client-addr").starts_with("127.0.0.1:"));
    // A WASI 0.2 guest sees an absolute URI and no `host` header.
    assert_eq!(e["uri"], full.as_str());
    assert!(e["headers"].get("host").is_none(), "{e}");

    let e = echo(&app, "/api/items/42/parts/a/b").await;
    assert_eq!(header(&e, "spin-path-match-item-id"), "42");
    assert_eq!(header(&e, "spin-path-info"), "/a/b");
    assert_eq!(
        header(&e, "spin-component-route"),
        "/api/items/:item_id/parts"
    );

    let e = echo(&app, "/api/exact").await;
    assert_eq!(header(&e, "spin-path-info"), "");
    assert_eq!(header(&e, "spin-component-route"), "/api/exact");

    let e = echo(&app, "/api").await;
    assert_eq!(header(&e, "spin-path-info"), "");
}

#[tokio::test]
async fn unknown_routes_are_404_with_an_empty_body() {
    let redis = RedisServer::start();
    let app = AppConfig::new(app_manifest())
        .var("redis_address", redis.url())
        .start()
        .await;
    let reply = app.api.get("/no/such/route").await;
    assert_eq!(reply.status, 404);
    assert!(reply.bytes.is_empty());
}

#[tokio::test]
async fn variables_resolve_from_templates_env_and_defaults() {
    let redis = RedisServer::start();
    let app = fixture_config(&redis).var("who", "tests").start().await;
    let var = |name: &'static str| {
        let app = &app;
        async move { echo(app, &format!("/api/x?action=var&name={name}")).await }
    };
    assert_eq!(var("greeting").await["value"], "hello tests");
    assert_eq!(var("secret").await["value"], "s3cret");
    // App variables are only visible through the component's own variables.
    assert!(
        var("who").await["error"]
            .as_str()
            .unwrap()
            .starts_with("Error::Undefined(")
    );
    assert!(
        var("Bad-Name").await["error"]
            .as_str()
            .unwrap()
            .starts_with("Error::InvalidName(")
    );
    let env = echo(&app, "/api/x?action=env&name=PROBE_ENV").await;
    assert_eq!(env["value"], "from-manifest");
}

#[tokio::test]
async fn a_missing_required_variable_stops_start_up() {
    let redis = RedisServer::start();
    let result = AppConfig::new(fixture_manifest())
        .var("redis_address", redis.url())
        .try_start()
        .await;
    let log = result.err().expect("the app must not start");
    assert!(log.contains("fixture_secret"), "{log}");
}

/// A one-shot HTTP server standing in for an outside service.
async fn sink() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf).await;
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\nsink")
                .await;
        }
    });
    (port, task)
}

#[tokio::test]
async fn outbound_access_follows_allowed_outbound_hosts() {
    let redis = RedisServer::start();
    let (sink_port, _sink) = sink().await;
    let other_port = crate::harness::free_port();
    let app = fixture_config(&redis)
        .var("sink_origin", format!("http://127.0.0.1:{sink_port}"))
        .start()
        .await;

    let allowed = echo(
        &app,
        &format!("/api/x?action=http&url=http://127.0.0.1:{sink_port}/hi"),
    )
    .await;
    assert_eq!(allowed["status"], 200, "{allowed}");
    assert_eq!(allowed["body"], "sink");

    let denied = echo(
        &app,
        &format!("/api/x?action=http&url=http://127.0.0.1:{other_port}/hi"),
    )
    .await;
    assert!(
        denied["error"]
            .as_str()
            .unwrap()
            .contains("HttpRequestDenied"),
        "{denied}"
    );
    let denied = echo(
        &app,
        &format!("/locked/x?action=http&url=http://127.0.0.1:{sink_port}/hi"),
    )
    .await;
    assert!(
        denied["error"]
            .as_str()
            .unwrap()
            .contains("HttpRequestDenied"),
        "{denied}"
    );

    let ping = json!({"address": redis.url(), "command": "PING", "args": []});
    let reply = app.api.post_json("/api/x?action=redis", &ping).await.body();
    assert_eq!(reply["results"], json!([{"status": "PONG"}]));
    let reply = app
        .api
        .post_json("/locked/x?action=redis", &ping)
        .await
        .body();
    assert_eq!(reply["error"], "Error::InvalidAddress");
    // Same server, another spelling of the address that is not allowed.
    let other = json!({"address": format!("redis://localhost:{}", redis.port), "command": "PING", "args": []});
    let reply = app
        .api
        .post_json("/api/x?action=redis", &other)
        .await
        .body();
    assert_eq!(reply["error"], "Error::InvalidAddress");
}

#[tokio::test]
async fn a_redis_address_is_checked_as_the_client_reads_it() {
    if is_real_spin() {
        // Spin 4.0.2 checks the host after the first `@`, while its client
        // connects to the one before a `#` or `?` (docs/HOST.md).
        return;
    }
    let redis = RedisServer::start();
    // Stands in for a server the guest must not reach: counts connections
    // and drops each at once.
    let trap = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let trap_port = trap.local_addr().unwrap().port();
    let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = connections.clone();
    std::thread::spawn(move || {
        for stream in trap.incoming() {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(stream);
        }
    });
    let app = fixture_app(&redis).await;
    let port = redis.port;
    for address in [
        // A fragment or a query that hides an allowed host behind `@`.
        format!("redis://127.0.0.1:{trap_port}#@127.0.0.1:{port}"),
        format!("redis://127.0.0.1:{trap_port}?@127.0.0.1:{port}"),
        format!("redis://127.0.0.1:{trap_port}/#@127.0.0.1:{port}"),
        format!("redis://127.0.0.1:{trap_port}?x=@127.0.0.1:{port}"),
        // The other way round: the client would reach the allowed server,
        // but the address reads, as Spin reads it, as another host.
        format!("redis://127.0.0.1:{port}#@127.0.0.1:{trap_port}"),
    ] {
        let ping = json!({"address": address, "command": "PING", "args": []});
        let reply = app.api.post_json("/api/x?action=redis", &ping).await.body();
        assert_eq!(
            reply["error"], "Error::InvalidAddress",
            "{address}: {reply}"
        );
    }
    assert_eq!(
        connections.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a denied address was connected to"
    );
    // The allowed server, in spellings the client reads alike, still answers.
    for address in [
        redis.url(),
        format!("redis://127.0.0.1:{port}/0"),
        format!("redis://127.0.0.1:{port}/?protocol=resp2"),
    ] {
        let ping = json!({"address": address, "command": "PING", "args": []});
        let reply = app.api.post_json("/api/x?action=redis", &ping).await.body();
        assert_eq!(reply["results"], json!([{"status": "PONG"}]), "{address}");
    }
}

async fn execute(app: &App, redis: &RedisServer, command: &str, args: Value) -> Value {
    let body = json!({"address": redis.url(), "command": command, "args": args});
    app.api.post_json("/api/x?action=redis", &body).await.body()
}

#[tokio::test]
async fn redis_execute_maps_results_like_spin() {
    let redis = RedisServer::start();
    let app = fixture_app(&redis).await;
    let ok = |v: Value| json!({"results": v});

    assert_eq!(
        execute(&app, &redis, "SET", json!(["k", "v"])).await,
        ok(json!([{"status": "OK"}]))
    );
    assert_eq!(
        execute(&app, &redis, "GET", json!(["nope"])).await,
        ok(json!([{"nil": null}]))
    );
    assert_eq!(
        execute(&app, &redis, "INCRBY", json!(["n", 5])).await,
        ok(json!([{"int64": 5}]))
    );
    execute(&app, &redis, "RPUSH", json!(["l", "a", "b"])).await;
    assert_eq!(
        execute(&app, &redis, "LRANGE", json!(["l", 0, -1])).await,
        ok(json!([{"binary": "a"}, {"binary": "b"}]))
    );
    // Nested Lua tables come back flattened, in order.
    assert_eq!(
        execute(
            &app,
            &redis,
            "EVAL",
            json!(["return {1, {2, 'x', {'y'}}, 'z'}", 0])
        )
        .await,
        ok(json!([{"int64": 1}, {"int64": 2}, {"binary": "x"}, {"binary": "y"}, {"binary": "z"}]))
    );
    assert_eq!(
        execute(
            &app,
            &redis,
            "EVAL",
            json!(["return redis.status_reply('FINE')", 0])
        )
        .await,
        ok(json!([{"status": "FINE"}]))
    );

    let err = |v: Value| v["error"].as_str().unwrap_or_default().to_string();
    let lua_error = err(execute(
        &app,
        &redis,
        "EVAL",
        json!(["return redis.error_reply('boom')", 0]),
    )
    .await);
    assert!(
        lua_error.starts_with("Error::Other(") && lua_error.contains("boom"),
        "{lua_error}"
    );
    let unknown = err(execute(&app, &redis, "NOSUCHCOMMAND", json!([])).await);
    assert!(unknown.contains("ResponseError"), "{unknown}");
    let noscript = err(execute(
        &app,
        &redis,
        "EVALSHA",
        json!(["0000000000000000000000000000000000000000", 0]),
    )
    .await);
    assert!(noscript.contains("NoScriptError"), "{noscript}");
}

#[tokio::test]
async fn redis_typed_functions_work() {
    let redis = RedisServer::start();
    let app = fixture_app(&redis).await;
    let body = json!({"address": redis.url(), "key": "probe"});
    let r = app
        .api
        .post_json("/api/x?action=redis-ops", &body)
        .await
        .body();
    assert_eq!(r["set"], "Ok(())");
    assert_eq!(r["get"], "Ok(Some(\"value\"))");
    assert_eq!(r["get_missing"], "Ok(None)");
    assert_eq!(r["incr"], "Ok(1)");
    assert_eq!(r["incr_again"], "Ok(2)");
    assert!(
        r["incr_wrong_type"]
            .as_str()
            .unwrap()
            .starts_with("Err(Error::Other("),
        "{r}"
    );
    assert_eq!(r["sadd"], "Ok(2)");
    assert_eq!(r["smembers"], "Ok([\"a\", \"b\"])");
    assert_eq!(r["srem"], "Ok(1)");
    assert_eq!(r["publish"], "Ok(())");
    assert_eq!(r["del"], "Ok(2)");
}

#[tokio::test]
async fn redis_down_is_an_error_the_guest_sees() {
    let mut redis = RedisServer::start();
    let app = fixture_app(&redis).await;
    redis.stop();
    let reply = app
        .api
        .post_json(
            "/api/x?action=redis",
            &json!({"address": redis.url(), "command": "PING", "args": []}),
        )
        .await
        .body();
    let error = reply["error"].as_str().unwrap();
    assert!(
        error.starts_with("Error::Other(") && error.contains("refused"),
        "{error}"
    );
}

#[tokio::test]
async fn every_request_gets_a_fresh_instance() {
    let redis = RedisServer::start();
    let app = fixture_app(&redis).await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let call = app.api.get("/api/x?action=count");
        tasks.push(tokio::spawn(call.into_future()));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap().body()["count"], 1);
    }
}

#[tokio::test]
async fn a_trapping_component_fails_only_its_request() {
    let redis = RedisServer::start();
    let app = fixture_app(&redis).await;
    let reply = app.api.get("/api/x?action=trap").await;
    assert_eq!(reply.status, 500);
    let after = app.api.get("/api/x?action=echo").await;
    assert_eq!(after.status, 200);
    if !is_real_spin() {
        let logs = app.logs();
        assert!(logs.contains("the probe was asked to trap"), "{logs}");
        assert!(logs.contains("GET /api/x -> probe 500"), "{logs}");
        assert!(logs.contains("GET /api/x -> probe 200"), "{logs}");
    }
}

#[tokio::test]
async fn a_runaway_component_is_stopped() {
    if is_real_spin() {
        return; // Spin's own limits apply there.
    }
    let redis = RedisServer::start();
    let app = fixture_config(&redis)
        .env("FLASHSPIN_REQUEST_TIME_LIMIT_MS", "500")
        .start()
        .await;
    let started = std::time::Instant::now();
    let reply = app.api.get("/api/x?action=spin").await;
    assert_eq!(reply.status, 500);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(app.api.get("/api/x?action=echo").await.status, 200);
}

/// More stalled requests than the host has instance slots (512): each sends
/// its head, promises a body and sends nothing more. The host must go on
/// serving other requests, and answer or close the stalled ones at its
/// time limit.
#[tokio::test]
async fn stalled_request_bodies_do_not_hold_the_host() {
    if is_real_spin() {
        return; // Spin bounds none of these waits (docs/HOST.md, "Limits").
    }
    const STALLED: usize = 600;
    let limit = Duration::from_secs(3);
    let redis = RedisServer::start();
    let app = fixture_config(&redis)
        .env(
            "FLASHSPIN_REQUEST_TIME_LIMIT_MS",
            limit.as_millis().to_string(),
        )
        .start()
        .await;
    let addr = app.base.strip_prefix("http://").unwrap().to_string();
    let head =
        format!("POST /api/x?action=echo HTTP/1.1\r\nhost: {addr}\r\ncontent-length: 1000\r\n\r\n");
    let opened = Instant::now();
    let mut stalled = Vec::new();
    for _ in 0..STALLED {
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        stalled.push(stream);
    }
    // Lets the host read those heads before the next request comes.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let reply = tokio::time::timeout(Duration::from_secs(10), app.api.get("/api/x?action=echo"))
        .await
        .expect("a request must be served while others stall");
    assert_eq!(reply.status, 200);

    // Each stalled request is answered 408 and its connection closed.
    let ends = stalled.into_iter().map(|mut stream| async move {
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.map(|_| answer)
    });
    let ends = tokio::time::timeout(
        limit + Duration::from_secs(15),
        futures::future::join_all(ends),
    )
    .await
    .expect("stalled requests must end at the time limit");
    assert!(opened.elapsed() >= limit);
    // An error (a reset) is a closed connection too.
    for answer in ends.into_iter().flatten() {
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 408 "),
            "{answer}"
        );
    }
    let logs = app.logs();
    assert!(logs.contains("POST /api/x -> probe 408 "), "{logs}");
}

/// Guests that keep the CPU busy, more of them than the host has worker
/// threads: other requests must still be served while they run.
#[tokio::test]
async fn cpu_bound_guests_do_not_stop_other_requests() {
    if is_real_spin() {
        return; // Spin lets a running guest keep its thread.
    }
    let redis = RedisServer::start();
    let app = fixture_app(&redis).await;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut spinning = Vec::new();
    for _ in 0..2 * threads + 1 {
        let request = app.api.get("/api/x?action=spin&ms=20000");
        spinning.push(tokio::spawn(request.into_future()));
    }
    // Until the guests that run have taken every thread the host has.
    let deadline = Instant::now() + Duration::from_secs(15);
    while app.logs().matches("[probe] spinning").count() < threads && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let reply = tokio::time::timeout(Duration::from_secs(8), app.api.get("/api/x?action=echo"))
        .await
        .expect("a request must be served while guests keep the CPU busy");
    assert_eq!(reply.status, 200);
    for request in spinning {
        request.abort();
    }
}

#[tokio::test]
async fn embedded_redis_is_the_default() {
    if is_real_spin() {
        return; // Spin has no embedded Redis; it needs redis_address.
    }
    let mut app = AppConfig::new(app_manifest())
        .unset("code_secret")
        .unset("id_secret")
        .start()
        .await;
    let reply = app.api.health().await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let logs = app.logs();
    // A throwaway Redis gets throwaway secrets, and says so.
    for name in ["code_secret", "id_secret"] {
        assert!(
            logs.contains(&format!("Generated a random `{name}` for this session")),
            "{logs}"
        );
    }
    assert!(
        logs.contains("Started embedded Redis at redis://127.0.0.1:"),
        "{logs}"
    );
    assert!(logs.contains("Serving http://127.0.0.1:"), "{logs}");
    assert!(logs.contains("health: http://127.0.0.1:"), "{logs}");

    // Ctrl-C stops the app and its Redis cleanly.
    let redis_url = logs
        .lines()
        .find_map(|l| l.strip_prefix("Started embedded Redis at "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    app.interrupt();
    let status = app
        .wait_exit(Duration::from_secs(10))
        .expect("the app must stop on SIGINT");
    assert!(status.success(), "{status}");
    let client = redis::Client::open(redis_url).unwrap();
    assert!(
        client.get_connection().is_err(),
        "the embedded Redis must stop with the app"
    );
}

#[tokio::test]
async fn the_embedded_redis_keeps_its_data_in_the_folder_it_is_given() {
    if is_real_spin() {
        return; // Spin has no embedded Redis.
    }
    let dir = tempfile::tempdir().unwrap();
    let sink = SmsSink::start().await;
    let config = || {
        AppConfig::new(app_manifest())
            .unset("code_secret")
            .unset("id_secret")
            .var("sms_webhook_origin", sink.origin())
            .var("admin_key", ADMIN_KEY)
            .env("FLASHSPIN_REDIS_DIR", dir.path().display().to_string())
            .env("FLASHSPIN_REDIS_FSYNC", "always")
    };
    let mut app = config().start().await;
    let logs = app.logs();
    assert!(logs.contains("(data kept in "), "{logs}");
    assert!(logs.contains("fsync always"), "{logs}");
    let voucher = json!({
        "shop_id": "1", "title": "kept", "pay_value": 100, "actual_value": 200, "stock": 5,
        "begin_time": "2026-01-01T00:00:00Z", "end_time": "2093-01-01T00:00:00Z",
    });
    let voucher = app
        .api
        .create_voucher(ADMIN_KEY, &voucher)
        .await
        .expect(201);
    let session = app.api.sign_in(&sink, "13800000001").await;
    let bought = app.api.buy_voucher(&session.token, &voucher.voucher.id);
    let order = bought.await.expect(201).order;
    app.interrupt();
    app.wait_exit(Duration::from_secs(10))
        .expect("stops on SIGINT");

    // The next start finds the order, the session and the secrets they were
    // made with.
    let app = config().start().await;
    assert!(!app.logs().contains("Generated a random"), "{}", app.logs());
    let found = app.api.order(&session.token, &order.id).await.expect(200);
    assert_eq!(found.order, order);
    let remaining = app.api.voucher(&voucher.voucher.id).await.expect(200);
    assert_eq!(remaining.voucher.remaining, 4);
    assert!(dir.path().join("flashspin-secrets").is_file());
}

#[tokio::test]
async fn the_embedded_redis_is_for_the_app_alone() {
    use std::os::unix::fs::PermissionsExt;
    if is_real_spin() {
        return; // Spin has no embedded Redis.
    }
    let dir = tempfile::tempdir().unwrap();
    // A folder the host creates, as `--redis-dir` names one that is new.
    let data = dir.path().join("data");
    let app = AppConfig::new(app_manifest())
        .unset("code_secret")
        .unset("id_secret")
        .env("FLASHSPIN_REDIS_DIR", data.display().to_string())
        .start()
        .await;
    // The app itself gets in.
    let reply = app.api.health().await;
    assert_eq!(reply.status, 200, "{}", reply.text());

    // Anyone else on the machine is refused.
    let logs = app.logs();
    let url = logs
        .lines()
        .find_map(|l| l.strip_prefix("Started embedded Redis at "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    let refused = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .and_then(|mut stranger| redis::cmd("PING").query::<String>(&mut stranger))
        .unwrap_err();
    assert_eq!(refused.code(), Some("NOAUTH"), "{refused}");
    assert!(
        logs.contains("Generated a random `redis_password` for this session"),
        "{logs}"
    );

    // The password is kept with the other generated secrets, and no
    // command line shows it.
    let secrets = std::fs::read_to_string(data.join("flashspin-secrets")).unwrap();
    let password = secrets
        .lines()
        .find_map(|l| l.strip_prefix("redis_password="))
        .expect("the password is kept with the secrets");
    let authenticated = format!("redis://:{password}@{}", url.trim_start_matches("redis://"));
    let mut owner = redis::Client::open(authenticated)
        .unwrap()
        .get_connection()
        .unwrap();
    assert_eq!(
        redis::cmd("PING").query::<String>(&mut owner).unwrap(),
        "PONG"
    );
    for pid in live_processes_in_group(app.process_group()) {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&cmdline).contains(password),
            "process {pid} shows the password"
        );
    }

    // The data and everything in it are the owner's alone.
    let mode = |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode();
    assert_eq!(mode(&data) & 0o777, 0o700, "the data folder");
    let mut pending = vec![data.clone()];
    let mut files = 0;
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            assert_eq!(
                mode(&path) & 0o077,
                0,
                "{} is open to others",
                path.display()
            );
            if path.is_dir() {
                pending.push(path);
            } else {
                files += 1;
            }
        }
    }
    assert!(files >= 2, "the append-only files and the secrets");
}

#[tokio::test]
async fn stopping_the_host_stops_what_it_started() {
    // On flashspin with no redis_address the group holds the host and its
    // embedded redis-server; under Spin, `spin up` and `spin trigger http`.
    // SIGTERM goes to the host alone: the rest must stop because it stops.
    let redis = RedisServer::start();
    let mut config = AppConfig::new(app_manifest());
    if is_real_spin() {
        config = config.var("redis_address", redis.url());
    }
    let app = config.start().await;
    assert_eq!(app.api.health().await.status, 200);
    let group = app.process_group();
    let running = live_processes_in_group(group);
    if !is_real_spin() {
        assert!(running.len() >= 2, "host and embedded Redis: {running:?}");
    }
    app.terminate_host();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut left = live_processes_in_group(group);
    while !left.is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        left = live_processes_in_group(group);
    }
    assert!(left.is_empty(), "still running after SIGTERM: {left:?}");
}

#[tokio::test]
async fn the_harness_stops_every_process_an_app_started() {
    let redis = RedisServer::start();
    let mut app = fixture_app(&redis).await;
    let group = app.process_group();
    assert!(!live_processes_in_group(group).is_empty());
    app.stop();
    assert!(live_processes_in_group(group).is_empty());
}

#[tokio::test]
async fn the_request_log_counts_redis_round_trips() {
    let redis = RedisServer::start();
    let app = fixture_config(&redis).start().await;
    for n in 1..=3 {
        let reply = app.api.get(&format!("/api/x?action=pings&n={n}")).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.body()["pings"], n);
    }
    if !is_real_spin() {
        // The count comes from flashspin's request log.
        assert_eq!(round_trips(&app.logs(), "probe"), [1, 2, 3]);
    }
}
