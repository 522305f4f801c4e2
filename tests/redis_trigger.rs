//! The Redis trigger (`[[trigger.redis]]`), against a real `redis-server`:
//! every component subscribed to a channel runs once per message, in its
//! own instance; a failing or trapping handler loses its message and
//! nothing else; the HTTP routes of the same app keep serving; and a Redis
//! that goes away stops the app, as on Spin. Where this host bounds what
//! Spin does not (docs/HOST.md, Limits): a handler that runs past the
//! message time limit is stopped and the next message handled, and
//! messages beyond the queue limit are dropped, a copy of one already
//! waiting merged with it.

use std::time::{Duration, Instant};

use crate::harness::{AppConfig, RedisServer, export_manifest, is_real_spin, repo_root};

fn manifest() -> std::path::PathBuf {
    repo_root().join("tests/fixtures/redis-trigger.toml")
}

fn publish(redis: &RedisServer, channel: &str, message: &str) -> i64 {
    redis::cmd("PUBLISH")
        .arg(channel)
        .arg(message)
        .query(&mut redis.conn())
        .unwrap()
}

/// What the fixture recorded, once `count` entries are there (or 5 s).
fn seen(redis: &RedisServer, count: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let seen: Vec<String> = redis::cmd("LRANGE")
            .arg("seen")
            .arg(0)
            .arg(-1)
            .query(&mut redis.conn())
            .unwrap();
        if seen.len() >= count || Instant::now() > deadline {
            let mut seen = seen;
            seen.sort();
            return seen;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn each_message_runs_every_component_of_its_channel() {
    let redis = RedisServer::start();
    // Spin logs a failed handler at `info`, which it prints only when asked.
    let app = AppConfig::new(manifest())
        .var("redis_address", redis.url())
        .env("RUST_LOG", "spin_trigger_redis=info")
        .start()
        .await;
    let logs = app.logs_containing("/other: [first]").await;
    assert!(logs.contains("/events: [first,second]"), "{logs}");

    assert_eq!(publish(&redis, "events", "hello"), 1, "one subscriber");
    assert_eq!(seen(&redis, 2), ["first:hello", "second:hello"]);
    publish(&redis, "other", "x");
    publish(&redis, "nobody", "y");
    assert_eq!(seen(&redis, 3), ["first:hello", "first:x", "second:hello"]);

    // A handler that fails or traps loses its message, nothing else.
    publish(&redis, "events", "fail");
    publish(&redis, "events", "trap");
    publish(&redis, "events", "after");
    assert_eq!(seen(&redis, 5).len(), 5, "{:?}", seen(&redis, 5));
    let logs = app.logs_containing("Component second handler failed").await;
    assert!(
        logs.contains("Component first handler failed: Redis handler returned an error"),
        "{logs}"
    );
    // The app's HTTP side is unaffected.
    let reply = app.api.get("/anything?action=count").await;
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn a_redis_that_goes_away_stops_the_app() {
    if is_real_spin() {
        return; // Spin's `up` runs the trigger in a process of its own.
    }
    let mut redis = RedisServer::start();
    let mut app = AppConfig::new(manifest())
        .var("redis_address", redis.url())
        .start()
        .await;
    app.logs_containing("/other: [first]").await;
    redis.stop();
    let status = app
        .wait_exit(Duration::from_secs(10))
        .expect("the app stops when its trigger's Redis goes away");
    assert!(!status.success());
    let logs = app.logs();
    assert!(
        logs.contains("A trigger exited unexpectedly. Terminating."),
        "{logs}"
    );
    assert!(logs.contains("disconnected from 127.0.0.1:"), "{logs}");
}

#[tokio::test]
async fn a_trigger_without_an_address_is_refused_at_start() {
    let text = std::fs::read_to_string(manifest()).unwrap().replace(
        "[application.trigger.redis]\naddress = \"{{ redis_address }}\"\n",
        "",
    );
    // Beside the fixture, whose component paths are relative to it.
    let path = repo_root().join("tests/fixtures/no-address.toml");
    std::fs::write(&path, text).unwrap();
    let redis = RedisServer::start();
    let outcome = AppConfig::new(path.clone())
        .var("redis_address", redis.url())
        .without_build()
        .try_start()
        .await;
    let _ = std::fs::remove_file(&path);
    if is_real_spin() {
        // Spin starts it and serves HTTP, but its Redis trigger subscribes
        // to nothing and says nothing: messages are silently never handled.
        // flashspin refuses the app instead (docs/HOST.md).
        let app = outcome.expect("Spin starts the app");
        tokio::time::sleep(Duration::from_secs(2)).await;
        let logs = app.logs();
        assert!(!logs.contains("Active Channels"), "{logs}");
        assert_eq!(publish(&redis, "events", "lost"), 0, "no subscriber");
        return;
    }
    let log = outcome.err().expect("the app must not start");
    assert!(log.contains("has no address"), "{log}");
}

#[tokio::test]
async fn listen_is_refused_for_an_app_without_http_triggers() {
    // The order exporter is such an app.
    let redis = RedisServer::start();
    let outcome = AppConfig::new(export_manifest())
        .var("redis_address", redis.url())
        .arg("--listen")
        .arg("127.0.0.1:0")
        .try_start()
        .await;
    let log = outcome.err().expect("the app must not start");
    assert!(log.contains("unexpected argument '--listen'"), "{log}");
}

/// The `seen` list as it is now, in order.
fn seen_now(redis: &RedisServer) -> Vec<String> {
    redis::cmd("LRANGE")
        .arg("seen")
        .arg(0)
        .arg(-1)
        .query(&mut redis.conn())
        .unwrap()
}

#[tokio::test]
async fn a_handler_past_the_time_limit_is_stopped_and_the_next_message_runs() {
    if is_real_spin() {
        return; // Spin waits for a handler however long it takes.
    }
    let redis = RedisServer::start();
    let app = AppConfig::new(manifest())
        .var("redis_address", redis.url())
        .env("FLASHSPIN_MESSAGE_TIME_LIMIT_MS", "500")
        .start()
        .await;
    app.logs_containing("/other: [first]").await;

    // A handler asleep for ever, then one computing for ever: each is
    // stopped at the limit, and the messages after them run.
    let started = Instant::now();
    for message in ["hang", "after-hang", "spin", "after-spin"] {
        publish(&redis, "other", message);
    }
    assert_eq!(seen(&redis, 2), ["first:after-hang", "first:after-spin"]);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1000) && took < Duration::from_secs(4),
        "{took:?}"
    );
    let logs = app.logs_containing("still running after").await;
    assert_eq!(
        logs.matches("Component first handler stopped: still running after 500ms")
            .count(),
        2,
        "{logs}"
    );
    // The HTTP side never waited for them.
    let reply = app.api.get("/anything?action=count").await;
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn messages_beyond_the_queue_limit_are_dropped_or_merged() {
    if is_real_spin() {
        return; // Spin keeps every message in memory.
    }
    let redis = RedisServer::start();
    let app = AppConfig::new(manifest())
        .var("redis_address", redis.url())
        .env("FLASHSPIN_MESSAGE_QUEUE_LIMIT", "3")
        .start()
        .await;
    app.logs_containing("/other: [first]").await;

    // While a handler sleeps, three messages wait; a copy of one of them
    // is merged with it and a fourth message is dropped.
    publish(&redis, "other", "sleep:1500");
    let deadline = Instant::now() + Duration::from_secs(5);
    while seen_now(&redis).is_empty() {
        assert!(Instant::now() < deadline, "the handler never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    for message in ["a", "b", "c", "a", "d"] {
        publish(&redis, "other", message);
    }
    let logs = app.logs_containing("dropped").await;
    assert!(logs.contains("queue full"), "{logs}");
    // The three that waited run, once each; nothing else does.
    assert_eq!(
        seen(&redis, 4),
        ["first:a", "first:b", "first:c", "first:sleep:1500"]
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(seen_now(&redis).len(), 4, "{:?}", seen_now(&redis));
    // Once they are handled, the queue takes messages again.
    publish(&redis, "other", "e");
    assert_eq!(seen(&redis, 5).len(), 5);
    let logs = app.logs();
    assert!(
        logs.contains("dropped 2 message(s), 1 of them the same as one waiting"),
        "{logs}"
    );
}
