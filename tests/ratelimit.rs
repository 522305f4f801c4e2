//! Rate limits over HTTP: per IP and global per endpoint, headers, refill,
//! independence of endpoints, and no limiter key left without a TTL.

use std::time::Duration;

use flashspin_testkit::api::{Answer, Me};

use crate::harness::{App, AppConfig, RedisServer, SmsSink, app_manifest};

/// Sends `n` requests to `GET /api/me` at once and returns them, each with
/// one `x-forwarded-for` header line per item of `forwarded_for`.
async fn burst(app: &App, token: &str, n: usize, forwarded_for: &[&str]) -> Vec<Answer<Me>> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let mut request = app.api.me(token);
            for line in forwarded_for {
                request = request.header("x-forwarded-for", line);
            }
            tokio::spawn(request.into_future())
        })
        .collect();
    let mut replies = Vec::with_capacity(n);
    for task in tasks {
        replies.push(task.await.unwrap());
    }
    replies
}

fn count(replies: &[Answer<Me>], status: u16) -> usize {
    replies.iter().filter(|r| r.status == status).count()
}

async fn signed_in_app(vars: &[(&str, &str)]) -> (RedisServer, SmsSink, App, String) {
    let redis = RedisServer::start();
    let sink = SmsSink::start().await;
    let mut config = AppConfig::new(app_manifest())
        .var("redis_address", redis.url())
        .var("sms_webhook_origin", sink.origin());
    for (name, value) in vars {
        config = config.var(name, *value);
    }
    let app = config.start().await;
    let token = app.api.sign_in(&sink, "13812345678").await.token;
    (redis, sink, app, token)
}

#[tokio::test]
async fn a_burst_gets_exactly_the_per_ip_quota() {
    let (redis, _sink, app, token) = signed_in_app(&[("rate_limit_ip", "7/60")]).await;
    for round in 0..2 {
        if round == 1 {
            // A fresh window: forget the limiter state.
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg("{gate}:rl:account:*")
                .query(&mut redis.conn())
                .unwrap();
            redis::cmd("DEL").arg(keys).exec(&mut redis.conn()).unwrap();
        }
        let replies = burst(&app, &token, 100, &[]).await;
        assert_eq!(count(&replies, 200), 7, "round {round}");
        assert_eq!(count(&replies, 429), 93, "round {round}");
        for reply in &replies {
            assert!(reply.header("ratelimit").is_some());
            let policy = reply.header("ratelimit-policy").unwrap();
            assert!(policy.contains("\"ip\";q=7;w=60"), "{policy}");
            if reply.status == 429 {
                assert_eq!(reply.error().code, "rate_limited");
                let retry: u64 = reply.header("retry-after").unwrap().parse().unwrap();
                assert!((1..=9).contains(&retry), "{retry}");
                assert!(
                    reply
                        .header("ratelimit")
                        .unwrap()
                        .starts_with("\"ip\";r=0;")
                );
            }
        }
    }
}

#[tokio::test]
async fn the_global_limit_counts_all_clients_together() {
    let (_redis, _sink, app, token) = signed_in_app(&[
        ("rate_limit_global", "5/60"),
        ("trust_forwarded_for", "true"),
    ])
    .await;
    let mut allowed = 0;
    for i in 0..10 {
        let ip = format!("10.0.0.{i}");
        allowed += count(&burst(&app, &token, 2, &[&ip]).await, 200);
    }
    assert_eq!(allowed, 5);
}

#[tokio::test]
async fn forwarded_for_counts_only_when_trusted() {
    let (_redis, _sink, app, token) = signed_in_app(&[("rate_limit_ip", "3/60")]).await;
    // Not trusted: every request is the same peer, whatever the header says.
    let mut allowed = 0;
    for i in 0..3 {
        allowed += count(
            &burst(&app, &token, 2, &[&format!("10.0.0.{i}")]).await,
            200,
        );
    }
    assert_eq!(allowed, 3);

    let (_redis, _sink, app, token) =
        signed_in_app(&[("rate_limit_ip", "3/60"), ("trust_forwarded_for", "true")]).await;
    let a = burst(&app, &token, 5, &["10.0.0.1"]).await;
    let b = burst(&app, &token, 5, &["spoofed, 10.0.0.2"]).await;
    assert_eq!((count(&a, 200), count(&b, 200)), (3, 3));
}

#[tokio::test]
async fn a_client_cannot_pick_its_own_forwarded_address() {
    // One trusted proxy. It saw the client as 10.9.9.9 and appended that
    // after whatever the client sent, in the same line or on a line of its
    // own; the client forges a new address for every burst.
    let (_redis, _sink, app, token) =
        signed_in_app(&[("rate_limit_ip", "3/60"), ("trust_forwarded_for", "true")]).await;
    let mut allowed = 0;
    for i in 0..4 {
        let forged = format!("10.0.0.{i}");
        let same_line = format!("{forged}, 10.9.9.9");
        allowed += count(&burst(&app, &token, 2, &[&same_line]).await, 200);
        allowed += count(&burst(&app, &token, 2, &[&forged, "10.9.9.9"]).await, 200);
    }
    assert_eq!(allowed, 3, "every request counts against 10.9.9.9");

    // A proxy that writes `ip:port` is not understood: the client is then
    // the peer (here 127.0.0.1), never an address the client wrote.
    let mut allowed = 0;
    for i in 0..4 {
        let forged = format!("10.1.0.{i}");
        for ours in ["10.9.9.8:5555", "[2001:db8::1]:5555"] {
            allowed += count(&burst(&app, &token, 1, &[&forged, ours]).await, 200);
        }
    }
    assert_eq!(allowed, 3, "every request counts against the peer");
}

#[tokio::test]
async fn the_client_is_trusted_proxy_count_entries_from_the_right() {
    // Two trusted proxies: the outer one appended the client (10.0.0.7),
    // the inner one the outer's address (10.9.9.9).
    let (_redis, _sink, app, token) = signed_in_app(&[
        ("rate_limit_ip", "3/60"),
        ("trust_forwarded_for", "true"),
        ("trusted_proxy_count", "2"),
    ])
    .await;
    let mut allowed = 0;
    for i in 0..4 {
        let line = format!("10.0.0.{i}, 10.0.0.7");
        allowed += count(&burst(&app, &token, 2, &[&line, "10.9.9.9"]).await, 200);
    }
    assert_eq!(allowed, 3, "every request counts against 10.0.0.7");

    // Fewer entries than proxies: the header did not come through both, so
    // the client is the peer.
    let mut allowed = 0;
    for i in 0..4 {
        allowed += count(
            &burst(&app, &token, 2, &[&format!("10.2.0.{i}")]).await,
            200,
        );
    }
    assert_eq!(allowed, 3, "every request counts against the peer");
}

#[tokio::test]
async fn forged_forwarded_addresses_do_not_escape_the_send_code_ip_cap() {
    let (_redis, sink, app, _token) = signed_in_app(&[
        ("code_hourly_limit_per_ip", "3"),
        ("trust_forwarded_for", "true"),
    ])
    .await;
    let sent_before = sink.messages().len();
    let mut accepted = 0;
    for i in 0..6 {
        let reply = app
            .api
            .send_code(&format!("1390000000{i}"))
            .header("x-forwarded-for", &format!("10.0.0.{i}"))
            .header("x-forwarded-for", "10.9.9.9")
            .await;
        if reply.status == 202 {
            accepted += 1;
        } else {
            assert_eq!(reply.status, 429, "{}", reply.text());
        }
    }
    assert_eq!(accepted, 3, "three codes per hour for 10.9.9.9");
    assert_eq!(sink.messages().len() - sent_before, 3);
}

#[tokio::test]
async fn the_limit_refills_on_time() {
    // Two per 4 s: one request refills every 2 s. The wide window leaves a
    // slow machine about 1.9 s of slack between the steps.
    let (_redis, _sink, app, token) = signed_in_app(&[("rate_limit_ip", "2/4")]).await;
    let first = burst(&app, &token, 3, &[]).await;
    assert_eq!(count(&first, 200), 2);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let again = app.api.me(&token).await;
    assert_eq!(again.status, 200, "one request refills every 2 s");
    assert_eq!(app.api.me(&token).await.status, 429);
    tokio::time::sleep(Duration::from_millis(4100)).await;
    assert_eq!(count(&burst(&app, &token, 3, &[]).await, 200), 2);
}

#[tokio::test]
async fn endpoints_are_limited_separately_and_every_limiter_key_expires() {
    let (redis, _sink, app, token) = signed_in_app(&[("rate_limit_ip", "2/60")]).await;
    assert_eq!(count(&burst(&app, &token, 4, &[]).await, 200), 2);
    let refresh = app.api.refresh(&token).await;
    assert_eq!(refresh.status, 200, "another endpoint has its own quota");
    assert_eq!(
        refresh.header("ratelimit").unwrap(),
        "\"ip\";r=1;t=30",
        "one of two used; full again in 30 s"
    );

    let limiter_keys: Vec<String> = redis::cmd("KEYS")
        .arg("{gate}:rl:*")
        .query(&mut redis.conn())
        .unwrap();
    assert!(limiter_keys.len() >= 4, "{limiter_keys:?}");
    let without_ttl = redis.keys_without_ttl();
    let limiters_without_ttl: Vec<_> = without_ttl.iter().filter(|k| k.contains(":rl:")).collect();
    assert!(limiters_without_ttl.is_empty(), "{limiters_without_ttl:?}");
}

#[tokio::test]
async fn unauthenticated_floods_are_limited_too() {
    let (_redis, _sink, app, _token) = signed_in_app(&[("rate_limit_ip", "3/60")]).await;
    let replies = burst(
        &app,
        "0000000000000000000000000000000000000000000000000000000000000000",
        10,
        &[],
    )
    .await;
    assert_eq!(count(&replies, 401), 3);
    assert_eq!(count(&replies, 429), 7);
}
