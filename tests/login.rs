//! Phone login over HTTP: send-code, login, refresh, /api/me, logout, with a
//! local sink standing in for the SMS gateway.

use flashspin_core::shard::Shards;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flashspin_core::session::SessionToken;
use flashspin_testkit::api::{Answer, Call, CodeSent, Session};
use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{App, AppConfig, RedisServer, SinkMode, SmsSink, app_manifest};

const PHONE: &str = "13812345678";

fn config(redis: &RedisServer, sink: &SmsSink) -> AppConfig {
    AppConfig::new(app_manifest())
        .var("redis_address", redis.url())
        .var("sms_webhook_origin", sink.origin())
        .var("code_secret", "test-code-secret")
}

async fn send_code(app: &App, phone: &str) -> Answer<CodeSent> {
    app.api.send_code(phone).await
}

async fn login(app: &App, phone: &str, code: &str) -> Answer<Session> {
    app.api.login(phone, code).await
}

/// A login from `ip`, as a trusted proxy would report it (the app must run
/// with `trust_forwarded_for`).
async fn login_from(app: &App, ip: &str, phone: &str, code: &str) -> Answer<Session> {
    app.api
        .login(phone, code)
        .header("x-forwarded-for", ip)
        .await
}

#[tokio::test]
async fn the_happy_path() {
    let redis = RedisServer::start();
    let sink = SmsSink::start().await;
    let app = config(&redis, &sink).start().await;

    let sent = send_code(&app, &format!("+86{PHONE}")).await;
    assert_eq!(
        sent.expect(202),
        CodeSent {
            expires_in: 300,
            resend_after: 60
        }
    );
    let messages = sink.messages();
    assert_eq!(messages.len(), 1);
    let code = messages[0].code.clone();
    assert_eq!(messages[0].phone, PHONE);
    assert!(code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()));
    assert!(messages[0].text.contains(&code));
    assert!(!sent.text().contains(&code));

    let reply = login(&app, PHONE, &code).await;
    let body = reply.expect(200);
    let token = body.token.clone();
    assert_eq!(body.expires_in, 1800);
    assert_eq!(body.user.phone, "138****5678");
    let user_id = body.user.id.clone();
    assert!(user_id.parse::<u64>().is_ok());
    assert!(!body.user.nickname.is_empty());
    let cookie = reply.header("set-cookie").unwrap();
    assert_eq!(
        cookie,
        format!("token={token}; HttpOnly; Secure; SameSite=Lax; Path=/; Max-Age=1800")
    );
    assert!(
        !app.logs().contains(&code),
        "codes never reach the logs when a gateway is set"
    );

    // Bearer and cookie both work.
    let me = app.api.me(&token).await;
    assert_eq!(me.expect(200).user, body.user);
    let by_cookie = app
        .api
        .request(Method::GET, "/api/me")
        .header("cookie", &format!("token={token}"))
        .await;
    assert_eq!(by_cookie.status, 200);

    let refreshed = app.api.refresh(&token).await;
    assert_eq!(refreshed.status, 200);
    assert_eq!(
        refreshed.header("set-cookie"),
        Some(cookie),
        "the cookie is renewed"
    );
    assert_eq!(refreshed.body().expires_in, 1800);
    assert_eq!(refreshed.body().user.id, user_id);

    // The same phone later is the same user.
    let second = sign_in_again(&app, &sink, &redis).await;
    assert_eq!(second.user.id, user_id);
}

/// Signs PHONE in a second time (clearing the resend gap first).
async fn sign_in_again(app: &App, sink: &SmsSink, redis: &RedisServer) -> Session {
    redis::cmd("DEL")
        .arg(format!("{{gate}}:code-gap:{PHONE}"))
        .exec(&mut redis.conn())
        .unwrap();
    app.api.sign_in(sink, PHONE).await
}

/// A well-formed code that is not `code`.
fn another_code(code: &str) -> &'static str {
    if code == "000000" { "111111" } else { "000000" }
}

#[tokio::test]
async fn wrong_reused_never_sent_and_expired_codes_are_refused() {
    let redis = RedisServer::start();
    let sink = SmsSink::start().await;
    let app = config(&redis, &sink)
        .var("code_ttl_secs", "30")
        .start()
        .await;

    let never = login(&app, PHONE, "123456").await;
    assert_eq!(
        (never.status, never.error_code()),
        (401, "invalid_code".into())
    );

    assert_eq!(send_code(&app, PHONE).await.status, 202);
    let code = sink.last_code(PHONE).unwrap();
    let wrong = another_code(&code);
    let reply = login(&app, PHONE, wrong).await;
    assert_eq!(
        (reply.status, reply.error_code()),
        (401, "invalid_code".into())
    );
    let malformed = login(&app, PHONE, "12ab").await;
    assert_eq!(malformed.status, 401);

    assert_eq!(login(&app, PHONE, &code).await.status, 200);
    let reused = login(&app, PHONE, &code).await;
    assert_eq!(
        (reused.status, reused.error_code()),
        (401, "invalid_code".into())
    );

    let other = "13900001111";
    assert_eq!(send_code(&app, other).await.status, 202);
    let code = sink.last_code(other).unwrap();
    // The code lives as long as configured; expire it now rather than wait.
    let code_key = format!("{{gate}}:code:{other}");
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&code_key)
        .query(&mut redis.conn())
        .unwrap();
    assert!(ttl > 20_000 && ttl <= 30_000, "{ttl} ms");
    redis::cmd("PEXPIRE")
        .arg(&code_key)
        .arg(1)
        .exec(&mut redis.conn())
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let expired = login(&app, other, &code).await;
    assert_eq!(
        (expired.status, expired.error_code()),
        (401, "invalid_code".into())
    );
}

#[tokio::test]
async fn too_many_wrong_codes_from_one_address_refuse_it_until_a_new_code() {
    let redis = RedisServer::start();
    let sink = SmsSink::start().await;
    let app = config(&redis, &sink)
        .var("code_resend_secs", "1")
        .start()
        .await;

    assert_eq!(send_code(&app, PHONE).await.status, 202);
    let code = sink.last_code(PHONE).unwrap();
    let wrong = another_code(&code);
    for attempt in 1..=4 {
        let reply = login(&app, PHONE, wrong).await;
        assert_eq!(reply.status, 401, "attempt {attempt}");
    }
    let fifth = login(&app, PHONE, wrong).await;
    assert_eq!(
        (fifth.status, fifth.error_code()),
        (429, "rate_limited".into())
    );
    assert!(fifth.header("retry-after").is_some());
    let right_too_late = login(&app, PHONE, &code).await;
    assert_eq!(right_too_late.status, 429);

    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(send_code(&app, PHONE).await.status, 202);
    let fresh = sink.last_code(PHONE).unwrap();
    assert_eq!(login(&app, PHONE, &fresh).await.status, 200);
}

#[tokio::test]
async fn wrong_codes_from_one_address_do_not_lock_out_the_owner() {
    let redis = RedisServer::start();
    let sink = SmsSink::start().await;
    let app = config(&redis, &sink)
        .var("trust_forwarded_for", "true")
        .start()
        .await;
    assert_eq!(send_code(&app, PHONE).await.status, 202);
    let code = sink.last_code(PHONE).unwrap();
    let wrong = another_code(&code);

    let attacker = "10.6.6.6";
    for attempt in 1..=4 {
        let reply = login_from(&app, attacker, PHONE, wrong).await;
        assert_eq!(reply.status, 401, "attempt {attempt}");
    }
    for attempt in 5..=8 {
        let reply = login_from(&app, attacker, PHONE, wrong).await;
        assert_eq!(
            (reply.status, reply.error_code()),
            (429, "rate_limited".into()),
            "attempt {attempt}"
        );
        assert!(reply.header("retry-after").is_some());
    }
    // Refused before the code is compared: the attacker learns nothing
    // even from the right code.
    assert_eq!(login_from(&app, attacker, PHONE, &code).await.status, 429);

    let owner = login_from(&app, "10.1.1.1", PHONE, &code).await;
    assert_eq!(owner.status, 200, "{}", owner.text());
}

#[tokio::test]
async fn wrong_codes_from_many_addresses_void_the_code_at_the_phone_cap() {
    let redis = RedisServer::start();
    let sink = SmsSink::start().await;
    let app = config(&redis, &sink)
        .var("trust_forwarded_for", "true")
        .var("code_resend_secs", "1")
        .var("code_max_attempts", "2")
        .var("code_max_attempts_per_phone", "5")
        .start()
        .await;
    assert_eq!(send_code(&app, PHONE).await.status, 202);
    let code = sink.last_code(PHONE).unwrap();
    let wrong = another_code(&code);

    // Two addresses use up their two tries each: four wrong codes in all.
    for ip in ["10.6.6.1", "10.6.6.2"] {
        assert_eq!(login_from(&app, ip, PHONE, wrong).await.status, 401, "{ip}");
        assert_eq!(login_from(&app, ip, PHONE, wrong).await.status, 429, "{ip}");
        assert_eq!(login_from(&app, ip, PHONE, wrong).await.status, 429, "{ip}");
    }
    // Refused attempts were not counted: the code still works.
    let pttl = |key: String| -> i64 {
        redis::cmd("PTTL")
            .arg(key)
            .query(&mut redis.conn())
            .unwrap()
    };
    assert!(pttl(format!("{{gate}}:code:{PHONE}")) > 0);

    // The fifth wrong code, from a third address, voids it for everyone.
    let fifth = login_from(&app, "10.6.6.3", PHONE, wrong).await;
    assert_eq!(
        (fifth.status, fifth.error_code()),
        (429, "rate_limited".into())
    );
    assert_eq!(pttl(format!("{{gate}}:code:{PHONE}")), -2, "voided");
    let owner = login_from(&app, "10.1.1.1", PHONE, &code).await;
    assert_eq!(owner.status, 429, "the phone is locked");

    // A new code clears the lock and every address's count.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(send_code(&app, PHONE).await.status, 202);
    let fresh = sink.last_code(PHONE).unwrap();
    assert_eq!(
        login_from(&app, "10.6.6.1", PHONE, another_code(&fresh))
            .await
            .status,
        401
    );
    assert_eq!(
        login_from(&app, "10.1.1.1", PHONE, &fresh).await.status,
        200
    );
}

#[tokio::test]
async fn a_new_code_replaces_the_old_and_resends_wait_for_the_gap() {
    let redis = RedisServer::start();
    let sink = SmsSink::start().await;
    let app = config(&redis, &sink)
        .var("code_resend_secs", "3")
        .start()
        .await;

    assert_eq!(send_code(&app, PHONE).await.status, 202);
    let first = sink.last_code(PHONE).unwrap();
    let early = send_code(&app, PHONE).await;
    assert_eq!(
        (early.status, early.error_code()),
        (429, "rate_limited".into())
    );
    let wait: u64 = early.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=3).contains(&wait), "retry-after {wait}");
    // The gap is not a rate limit: no limit's state is claimed spent.
    assert_eq!(early.header("ratelimit"), None);
    assert_eq!(early.header("ratelimit-policy"), None);
    assert_eq!(sink.messages().len(), 1);

    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(send_code(&app, PHONE).await.status, 202);
    let second = sink.last_code(PHONE).unwrap();
    if first != second {
        assert_eq!(login(&app, PHONE, &first).await.status, 401);
    }
    assert_eq!(login(&app, PHONE, &second).await.status, 200);
}

#[tokio::test]
async fn daily_per_phone_and_hourly_per_ip_caps() {
    let redis = RedisServer::start();
    let sink = SmsSink::start().await;
    let app = config(&redis, &sink)
        .var("code_resend_secs", "1")
        .var("code_daily_limit_per_phone", "2")
        .var("code_hourly_limit_per_ip", "4")
        .start()
        .await;

    assert_eq!(send_code(&app, PHONE).await.status, 202);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(send_code(&app, PHONE).await.status, 202);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let capped = send_code(&app, PHONE).await;
    assert_eq!(
        (capped.status, capped.error_code()),
        (429, "rate_limited".into())
    );
    assert!(
        capped
            .header("ratelimit-policy")
            .unwrap()
            .contains("\"phone-day\";q=2;w=86400")
    );

    // Two codes from this IP so far; two more phones reach the hourly cap.
    assert_eq!(send_code(&app, "13900000001").await.status, 202);
    assert_eq!(send_code(&app, "13900000002").await.status, 202);
    let ip_capped = send_code(&app, "13900000003").await;
    assert_eq!(ip_capped.status, 429);
    assert_eq!(sink.messages().len(), 4);
}

#[tokio::test]
async fn logout_ends_the_session_everywhere() {
    let redis = RedisServer::start();
    let sink = SmsSink::start().await;
    let app = config(&redis, &sink).start().await;
    let token = app.api.sign_in(&sink, PHONE).await.token;

    let out = app.api.logout(&token).await;
    assert_eq!(out.status, 204);
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    let me = app.api.me(&token).await;
    let refreshed = app.api.refresh(&token).await;
    for (path, status, code) in [
        ("/api/me", me.status, me.error_code()),
        (
            "/api/auth/refresh",
            refreshed.status,
            refreshed.error_code(),
        ),
    ] {
        assert_eq!((status, code), (401, "unauthorized".into()), "{path}");
    }
    let again = app.api.logout(&token).await;
    assert_eq!(again.status, 401);
}

#[tokio::test]
async fn sessions_slide_and_end_at_the_absolute_limit() {
    let redis = RedisServer::start();
    let sink = SmsSink::start().await;
    let app = config(&redis, &sink)
        .var("session_idle_secs", "3")
        .var("session_max_secs", "600")
        .start()
        .await;
    let token = app.api.sign_in(&sink, PHONE).await.token;
    let key = SessionToken::parse(&token).unwrap().redis_key(Shards::ONE);
    let ttl_ms = || -> i64 {
        redis::cmd("PTTL")
            .arg(&key)
            .query(&mut redis.conn())
            .unwrap()
    };

    // Each request slides the 3 s idle expiry: after 1.5 s idle an unslid
    // session would have at most 1.5 s left.
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(app.api.me(&token).await.status, 200);
        assert!(ttl_ms() > 2000, "slid back to about 3 s");
    }

    // Near the absolute limit the expiry is cut to what is left of it, and
    // past it the session ends. The session is made older instead of
    // waiting, so a slow machine cannot change the outcome.
    let back_date = |age_ms: u64| {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        redis::cmd("HSET")
            .arg(&key)
            .arg("created")
            .arg(now.as_millis() as u64 - age_ms)
            .exec(&mut redis.conn())
            .unwrap();
    };
    back_date(600_000 - 2_500);
    assert_eq!(app.api.me(&token).await.status, 200);
    let left = ttl_ms();
    assert!(
        left > 0 && left <= 2500,
        "{left} ms, capped by the lifetime"
    );
    back_date(600_001);
    assert_eq!(app.api.me(&token).await.status, 401);
    assert_eq!(ttl_ms(), -2, "the ended session is gone");

    // Idle for longer than 3 s ends a session too.
    let token = sign_in_again(&app, &sink, &redis).await.token;
    tokio::time::sleep(Duration::from_millis(3300)).await;
    assert_eq!(app.api.me(&token).await.status, 401);
}

#[tokio::test]
async fn redis_holds_no_raw_token_and_no_code() {
    let redis = RedisServer::start();
    let sink = SmsSink::start().await;
    let app = config(&redis, &sink).start().await;
    let token = app.api.sign_in(&sink, PHONE).await.token;
    assert_eq!(send_code(&app, "13900002222").await.status, 202);
    let code = sink.last_code("13900002222").unwrap();

    let dump = dump_redis(&redis);
    assert!(!dump.contains(&token), "raw token in Redis:\n{dump}");
    assert!(!dump.contains(&code), "raw code in Redis:\n{dump}");
}

/// Every key and value in Redis as text.
fn dump_redis(redis: &RedisServer) -> String {
    let mut conn = redis.conn();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut conn).unwrap();
    let mut out = String::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE").arg(&key).query(&mut conn).unwrap();
        let value = match kind.as_str() {
            // Limiter keys live for milliseconds: one may be gone by now.
            "string" => redis::cmd("GET")
                .arg(&key)
                .query::<Option<String>>(&mut conn)
                .unwrap()
                .unwrap_or_default(),
            "hash" => format!(
                "{:?}",
                redis::cmd("HGETALL")
                    .arg(&key)
                    .query::<Vec<String>>(&mut conn)
                    .unwrap()
            ),
            other => other.to_string(),
        };
        out.push_str(&format!("{key} = {value}\n"));
    }
    out
}

#[tokio::test]
async fn bad_input_is_a_clear_4xx_and_changes_nothing() {
    let redis = RedisServer::start();
    let sink = SmsSink::start().await;
    let app = config(&redis, &sink).start().await;

    let to_send_code = || app.api.request(Method::POST, "/api/auth/code");
    let to_login = || app.api.request(Method::POST, "/api/auth/login");
    let cases: Vec<(&str, Call<Value>, u16, &str)> = vec![
        ("not json", to_send_code().body("{"), 400, "invalid_request"),
        (
            "no phone",
            to_send_code().json(&json!({})),
            400,
            "invalid_request",
        ),
        (
            "number phone",
            to_send_code().json(&json!({"phone": 13812345678u64})),
            400,
            "invalid_request",
        ),
        (
            "bad phone",
            to_send_code().json(&json!({"phone": "12345"})),
            400,
            "invalid_phone",
        ),
        ("empty body", to_send_code(), 400, "invalid_request"),
        (
            "huge body",
            to_send_code().body(vec![b' '; 17 * 1024]),
            413,
            "payload_too_large",
        ),
        (
            "login no code",
            to_login().json(&json!({"phone": PHONE})),
            400,
            "invalid_request",
        ),
        (
            "login bad phone",
            to_login().json(&json!({"phone": "x", "code": "123456"})),
            400,
            "invalid_phone",
        ),
        (
            "wrong method",
            app.api.get("/api/auth/code"),
            405,
            "method_not_allowed",
        ),
        ("no token", app.api.get("/api/me"), 401, "unauthorized"),
        (
            "junk token",
            app.api.get("/api/me").bearer("nope"),
            401,
            "unauthorized",
        ),
    ];
    for (name, request, status, code) in cases {
        let reply = request.await;
        assert_eq!(reply.status, status, "{name}: {}", reply.text());
        assert_eq!(reply.error_code(), code, "{name}");
        assert_eq!(
            reply.header("content-type"),
            Some("application/json; charset=utf-8"),
            "{name}"
        );
        assert!(!reply.error().message.is_empty());
    }
    let wrong_method = app.api.get("/api/auth/code").await;
    assert_eq!(wrong_method.header("allow"), Some("POST"));
    assert!(sink.messages().is_empty());
    let codes: Vec<String> = redis::cmd("KEYS")
        .arg("{gate}:code*")
        .query(&mut redis.conn())
        .unwrap();
    assert!(codes.is_empty(), "{codes:?}");
}

#[tokio::test]
async fn a_failing_gateway_gives_502_and_keeps_no_code() {
    let redis = RedisServer::start();
    let sink = SmsSink::start().await;
    let app = config(&redis, &sink).start().await;

    sink.set_mode(SinkMode::Answer(500));
    let reply = send_code(&app, PHONE).await;
    assert_eq!(
        (reply.status, reply.error_code()),
        (502, "sms_failed".into())
    );
    let code = sink.last_code(PHONE).unwrap();
    assert_eq!(
        login(&app, PHONE, &code).await.status,
        401,
        "the code was removed"
    );

    // No gap either: asking again at once works.
    sink.set_mode(SinkMode::Answer(200));
    assert_eq!(send_code(&app, PHONE).await.status, 202);
}

#[tokio::test]
async fn a_silent_gateway_times_out_with_502() {
    let redis = RedisServer::start();
    let sink = SmsSink::start().await;
    let app = config(&redis, &sink).start().await;
    sink.set_mode(SinkMode::Stall(Duration::from_secs(8)));
    let started = std::time::Instant::now();
    let reply = send_code(&app, PHONE).await;
    assert_eq!(
        (reply.status, reply.error_code()),
        (502, "sms_failed".into())
    );
    assert!(started.elapsed() < Duration::from_secs(8));
}

#[tokio::test]
async fn without_a_gateway_the_code_goes_to_the_log() {
    let redis = RedisServer::start();
    let app = AppConfig::new(app_manifest())
        .var("redis_address", redis.url())
        .start()
        .await;
    assert_eq!(send_code(&app, PHONE).await.status, 202);
    let logs = app.logs_containing("login code for").await;
    let line = logs
        .lines()
        .find(|l| l.contains("login code for 138****5678"))
        .unwrap_or_else(|| panic!("{logs}"));
    let code = line.split(": ").nth(1).unwrap().split(' ').next().unwrap();
    assert_eq!(login(&app, PHONE, code).await.status, 200);
}

#[tokio::test]
async fn redis_down_gives_503() {
    let mut redis = RedisServer::start();
    let sink = SmsSink::start().await;
    let app = config(&redis, &sink).start().await;
    let token = app.api.sign_in(&sink, PHONE).await.token;
    redis.stop();
    for reply in [
        send_code(&app, "13900003333").await.untyped(),
        login(&app, PHONE, "123456").await.untyped(),
        app.api.me(&token).await.untyped(),
        app.api.refresh(&token).await.untyped(),
    ] {
        assert_eq!(
            (reply.status, reply.error_code()),
            (503, "unavailable".into())
        );
        assert!(reply.header("retry-after").is_some());
    }
    assert_eq!(sink.messages().len(), 1, "no SMS without a stored code");
}
