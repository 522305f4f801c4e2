//! The app's manifest as a deployer meets it: it loads with only the
//! variables the README calls required, and the host refuses a manifest that
//! Spin 4.0.2 refuses, with Spin's words.

use serde_json::json;

use crate::harness::{
    AppConfig, RedisServer, app_manifest, built_app_components, is_real_spin, repo_root,
};

/// A copy of the app's manifest, changed by `edit`, in a folder of its own;
/// component sources still point at the built components.
fn edited_manifest(edit: impl Fn(&str) -> String) -> (tempfile::TempDir, std::path::PathBuf) {
    // Built, so that a host that reads sources before validating (Spin)
    // fails for the reason under test.
    built_app_components();
    let text = std::fs::read_to_string(app_manifest()).unwrap();
    let root = repo_root().display().to_string();
    let text = edit(&text).replace("source = \"target/", &format!("source = \"{root}/target/"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spin.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

/// What the host says when it refuses to start `manifest`.
async fn refusal(manifest: std::path::PathBuf) -> String {
    let redis = RedisServer::start();
    let result = AppConfig::new(manifest)
        .var("redis_address", redis.url())
        .without_build()
        .try_start()
        .await;
    result.err().expect("the host must refuse the manifest")
}

#[tokio::test]
async fn the_app_runs_with_redis_and_secrets_configured_and_logs_codes() {
    let redis = RedisServer::start();
    let app = AppConfig::new(app_manifest())
        .var("redis_address", redis.url())
        .start()
        .await;
    let reply = app
        .post_json("/api/auth/code", &json!({ "phone": "13812345678" }))
        .await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    let logs = app.logs_containing("login code for 138****5678").await;
    assert!(
        logs.contains("login code for 138****5678") && logs.contains("no SMS gateway configured"),
        "{logs}"
    );
}

#[tokio::test]
async fn a_missing_secret_stops_start_up_naming_it() {
    let redis = RedisServer::start();
    let result = AppConfig::new(app_manifest())
        .var("redis_address", redis.url())
        .unset("code_secret")
        .unset("id_secret")
        .try_start()
        .await;
    let log = result
        .err()
        .expect("the app must not start without its secrets");
    assert!(
        log.contains("no provider resolved required variable(s)")
            && log.contains("code_secret")
            && log.contains("id_secret"),
        "{log}"
    );
}

#[tokio::test]
async fn an_empty_gateway_default_is_refused_naming_the_variable() {
    // The manifest as it was before: Spin 4.0.2 would not load it.
    let (_dir, manifest) = edited_manifest(|text| {
        text.replace(
            "sms_webhook_origin = { default = \"http://sms.invalid\" }",
            "sms_webhook_origin = { default = \"\" }",
        )
    });
    let log = refusal(manifest).await;
    for expected in [
        "Failed to load component `send-code`",
        "`allowed_outbound_hosts` is malformed",
        "using default variable value(s) with template \"{{ sms_webhook_origin }}\" results in invalid config \"\"",
        "\"\" is not an allowed outbound host format",
    ] {
        assert!(log.contains(expected), "missing {expected:?} in:\n{log}");
    }
}

#[tokio::test]
async fn a_value_that_is_not_a_host_stops_start_up() {
    if is_real_spin() {
        // Spin starts, then fails each outbound call of the component.
        return;
    }
    let redis = RedisServer::start();
    let result = AppConfig::new(app_manifest())
        .var("redis_address", redis.url())
        .var("sms_webhook_origin", "https://sms.example.com/send")
        .try_start()
        .await;
    let log = result.err().expect("the host must refuse the value");
    assert!(
        log.contains("\"{{ sms_webhook_origin }}\" is \"https://sms.example.com/send\"")
            && log.contains("must not include a path"),
        "{log}"
    );
}

#[tokio::test]
async fn unknown_manifest_keys_are_refused() {
    let (_dir, manifest) = edited_manifest(|text| {
        text.replace(
            "[component.health]\n",
            "[component.health]\nallowed_outbound_host = []\n",
        )
    });
    let log = refusal(manifest).await;
    assert!(
        log.contains("unknown field `allowed_outbound_host`"),
        "{log}"
    );
}

#[tokio::test]
async fn a_redis_that_needs_a_password_is_reached_with_redis_password() {
    let redis = RedisServer::start();
    // Characters that would break a URL if they were not encoded.
    let password = "s3cr#t/p@ss word";
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg(password)
        .query::<()>(&mut redis.conn())
        .unwrap();

    let without = AppConfig::new(app_manifest())
        .var("redis_address", redis.url())
        .start()
        .await;
    assert_ne!(without.get("/api/health").await.status, 200);

    let with = AppConfig::new(app_manifest())
        .var("redis_address", redis.url())
        .var("redis_password", password)
        .start()
        .await;
    let reply = with.get("/api/health").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(
        !with.logs().contains(password),
        "the password must not reach the log"
    );
}

/// Every route once, deep enough that each component reads every variable
/// it ever reads; none may be missing from its `[component.X.variables]`
/// (there are no defaults in the code to hide it).
#[tokio::test]
async fn every_component_is_given_every_variable_it_reads() {
    use crate::harness::{ADMIN_KEY, SmsSink, loose_config};
    use reqwest::Method;

    let redis = RedisServer::start();
    let sink = SmsSink::start().await;
    let app = loose_config(&redis, &sink).start().await;
    let mut statuses = Vec::new();
    let mut note = |what: &str, status: u16| statuses.push((what.to_string(), status));

    note("health", app.get("/api/health").await.status);
    let token = crate::login::sign_in(&app, &sink, "13812345678").await;
    let admin = |path: &str, body: serde_json::Value| {
        app.http
            .post(app.url(path))
            .bearer_auth(ADMIN_KEY)
            .json(&body)
            .send()
    };
    let voucher = admin(
        "/api/admin/vouchers",
        json!({"shop_id": "1", "title": "t", "pay_value": 1, "actual_value": 2, "stock": 5,
               "begin_time": "2020-01-01T00:00:00Z", "end_time": "2099-01-01T00:00:00Z"}),
    )
    .await
    .unwrap();
    note("admin vouchers", voucher.status().as_u16());
    let voucher: serde_json::Value = voucher.json().await.unwrap();
    let voucher = voucher["voucher"]["id"].as_str().unwrap().to_string();
    let goods = admin(
        "/api/admin/lottery",
        json!({"title": "g", "total_shares": 2, "share_price": 1}),
    )
    .await
    .unwrap();
    note("admin lottery", goods.status().as_u16());
    let goods: serde_json::Value = goods.json().await.unwrap();
    let goods = goods["goods"]["id"].as_str().unwrap().to_string();

    for path in [
        "/api/vouchers?shop_id=1".to_string(),
        format!("/api/vouchers/{voucher}"),
        "/api/lottery".to_string(),
        format!("/api/lottery/{goods}"),
    ] {
        note(&path, app.get(&path).await.status);
    }
    let bought = app
        .authed(
            Method::POST,
            &format!("/api/vouchers/{voucher}/orders"),
            &token,
        )
        .await;
    note("buy-voucher", bought.status);
    let shares = app
        .http
        .post(app.url(&format!("/api/lottery/{goods}/shares")))
        .bearer_auth(&token)
        .json(&json!({"count": 2}))
        .send()
        .await
        .unwrap();
    note("buy-lottery-shares", shares.status().as_u16());
    note(
        "period",
        app.get(&format!("/api/lottery/{goods}/periods/1"))
            .await
            .status,
    );
    for path in ["/api/me", "/api/me/orders", "/api/me/lottery"] {
        note(path, app.authed(Method::GET, path, &token).await.status);
    }
    note(
        "refresh",
        app.authed(Method::POST, "/api/auth/refresh", &token)
            .await
            .status,
    );
    note(
        "logout",
        app.authed(Method::POST, "/api/auth/logout", &token)
            .await
            .status,
    );

    let failed: Vec<_> = statuses.iter().filter(|(_, s)| *s >= 400).collect();
    assert!(failed.is_empty(), "{failed:?}\n{}", app.logs());
    let logs = app.logs();
    assert!(
        !logs.contains("which the manifest does not give it")
            && !logs.contains("internal: variable"),
        "{logs}"
    );
}
