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
    let redis = RedisServer::start();
    let result = AppConfig::new(manifest)
        .var("redis_address", redis.url())
        .without_build()
        .try_start()
        .await;
    let log = result.err().expect("the host must refuse the manifest");
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
    let redis = RedisServer::start();
    let result = AppConfig::new(manifest)
        .var("redis_address", redis.url())
        .without_build()
        .try_start()
        .await;
    let log = result.err().expect("the host must refuse the manifest");
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
