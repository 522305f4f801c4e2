//! `GET /api/health`.

use flashspin_testkit::api::Health;

use crate::harness::{AppConfig, RedisServer, app_manifest};

fn health(status: &str, redis: &str) -> Health {
    Health {
        status: status.into(),
        redis: redis.into(),
    }
}

#[tokio::test]
async fn healthy_when_redis_answers() {
    let redis = RedisServer::start();
    let app = AppConfig::new(app_manifest())
        .var("redis_address", redis.url())
        .start()
        .await;
    let reply = app.api.health().await;
    assert_eq!(reply.expect(200), health("ok", "ok"));
    assert_eq!(
        reply.header("content-type"),
        Some("application/json; charset=utf-8")
    );
}

#[tokio::test]
async fn degraded_when_redis_is_down() {
    let mut redis = RedisServer::start();
    let app = AppConfig::new(app_manifest())
        .var("redis_address", redis.url())
        .start()
        .await;
    redis.stop();
    let reply = app.api.health().await;
    // The reason is logged, never sent: Redis's error text is internal.
    assert_eq!(reply.expect(503), health("degraded", "unavailable"));
    assert!(reply.header("retry-after").is_some());
    let logs = app.logs_containing("health: redis").await;
    assert!(logs.contains("refused"), "{logs}");
}

#[tokio::test]
async fn other_methods_are_not_allowed() {
    let redis = RedisServer::start();
    let app = AppConfig::new(app_manifest())
        .var("redis_address", redis.url())
        .start()
        .await;
    let reply = app
        .api
        .post_json("/api/health", &serde_json::json!({}))
        .await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("GET"));
    assert_eq!(reply.error().code, "method_not_allowed");
}

/// A Lua error is a bug, not an outage: 500 `internal`, no `retry-after`,
/// and the log names the script.
#[tokio::test]
async fn a_script_error_is_500_not_503() {
    use sha2::Digest;
    let redis = RedisServer::start();
    let sink = crate::harness::SmsSink::start().await;
    let app = crate::harness::loose_config(&redis, &sink).start().await;
    let token = app.api.sign_in(&sink, "13812345678").await.token;
    // Corrupt the session: the gate script's HMGET on a string fails.
    let key = format!(
        "{{gate}}:sess:{}",
        hex::encode(sha2::Sha256::digest(token.as_bytes()))
    );
    redis::cmd("SET")
        .arg(&key)
        .arg("not a hash")
        .exec(&mut redis.conn())
        .unwrap();
    let reply = app.api.me(&token).await;
    assert_eq!(reply.status, 500, "{}", reply.text());
    assert_eq!(reply.error().code, "internal");
    assert!(reply.header("retry-after").is_none());
    let logs = app.logs_containing("script gate").await;
    assert!(logs.contains("script gate"), "{logs}");
}
