//! `GET /api/health`.

use crate::harness::{AppConfig, RedisServer, app_manifest};

#[tokio::test]
async fn healthy_when_redis_answers() {
    let redis = RedisServer::start();
    let app = AppConfig::new(app_manifest())
        .var("redis_address", redis.url())
        .start()
        .await;
    let reply = app.get("/api/health").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.json(),
        serde_json::json!({"status": "ok", "redis": "ok"})
    );
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
    let reply = app.get("/api/health").await;
    assert_eq!(reply.status, 503, "{}", reply.text());
    // The reason is logged, never sent: Redis's error text is internal.
    assert_eq!(
        reply.json(),
        serde_json::json!({"status": "degraded", "redis": "unavailable"})
    );
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
    let reply = app.post_json("/api/health", &serde_json::json!({})).await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("GET"));
    assert_eq!(reply.json()["error"]["code"], "method_not_allowed");
}

/// A Lua error is a bug, not an outage: 500 `internal`, no `retry-after`,
/// and the log names the script.
#[tokio::test]
async fn a_script_error_is_500_not_503() {
    use sha2::Digest;
    let redis = RedisServer::start();
    let sink = crate::harness::SmsSink::start().await;
    let app = crate::harness::loose_config(&redis, &sink).start().await;
    let token = crate::login::sign_in(&app, &sink, "13812345678").await;
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
    let reply = app.authed(reqwest::Method::GET, "/api/me", &token).await;
    assert_eq!(reply.status, 500, "{}", reply.text());
    assert_eq!(reply.json()["error"]["code"], "internal");
    assert!(reply.header("retry-after").is_none());
    let logs = app.logs_containing("script gate").await;
    assert!(logs.contains("script gate"), "{logs}");
}
