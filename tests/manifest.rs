//! The app's manifest as a deployer meets it: it loads with only the
//! variables the README calls required, and the host refuses a manifest that
//! Spin 4.0.2 refuses, with Spin's words.

use crate::harness::{
    AppConfig, RedisServer, TEST_SECRETS, app_manifest, built_app_components, is_real_spin,
    real_spin_version, repo_root,
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
    let reply = app.api.send_code("13812345678").await;
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
    if real_spin_version().is_some_and(|version| version >= (4, 1)) {
        // Spin 4.1 no longer resolves allowed hosts with the defaults at
        // load: it starts, and send-code's calls to the gateway fail.
        let redis = RedisServer::start();
        let mut config = AppConfig::new(manifest)
            .var("redis_address", redis.url())
            .without_build();
        for (name, value) in TEST_SECRETS {
            config = config.var(name, value);
        }
        config.start().await;
        return;
    }
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
    assert_ne!(without.api.health().await.status, 200);

    let with = AppConfig::new(app_manifest())
        .var("redis_address", redis.url())
        .var("redis_password", password)
        .start()
        .await;
    let reply = with.api.health().await;
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
    use flashspin_testkit::api::{NewGoods, NewVoucher};

    let redis = RedisServer::start();
    let sink = SmsSink::start().await;
    let app = loose_config(&redis, &sink).start().await;
    let api = &app.api;
    let mut statuses = Vec::new();
    let mut note = |what: &str, status: u16| statuses.push((what.to_string(), status));

    note("health", api.health().await.status);
    let token = api.sign_in(&sink, "13812345678").await.token;
    let voucher = NewVoucher {
        shop_id: "1".into(),
        title: "t".into(),
        sub_title: None,
        rules: None,
        pay_value: 1,
        actual_value: 2,
        stock: 5,
        begin_time: "2020-01-01T00:00:00Z".into(),
        end_time: "2099-01-01T00:00:00Z".into(),
        parts: None,
    };
    let voucher = api.create_voucher(ADMIN_KEY, &voucher).await;
    note("admin vouchers", voucher.status);
    let voucher = voucher.body().voucher.id;
    let goods = NewGoods {
        title: "g".into(),
        total_shares: 2,
        share_price: 1,
        code_base: None,
        max_periods: None,
    };
    let goods = api.create_goods(ADMIN_KEY, &goods).await;
    note("admin lottery", goods.status);
    let goods = goods.body().goods.id;

    note("/api/vouchers?shop_id=1", api.vouchers("1").await.status);
    note(
        &format!("/api/vouchers/{voucher}"),
        api.voucher(&voucher).await.status,
    );
    note("/api/lottery", api.lottery().await.status);
    note(
        &format!("/api/lottery/{goods}"),
        api.goods(&goods).await.status,
    );
    note(
        "buy-voucher",
        api.buy_voucher(&token, &voucher).await.status,
    );
    note(
        "buy-lottery-shares",
        api.buy_shares(&token, &goods, 2, None).await.status,
    );
    note("period", api.period(&goods, 1).await.status);
    note("/api/me", api.me(&token).await.status);
    note(
        "/api/me/orders",
        api.my_orders(&token, &Default::default()).await.status,
    );
    note(
        "/api/me/lottery",
        api.my_lottery(&token, &Default::default()).await.status,
    );
    note("refresh", api.refresh(&token).await.status);
    note("logout", api.logout(&token).await.status);

    let failed: Vec<_> = statuses.iter().filter(|(_, s)| *s >= 400).collect();
    assert!(failed.is_empty(), "{failed:?}\n{}", app.logs());
    let logs = app.logs();
    assert!(
        !logs.contains("which the manifest does not give it")
            && !logs.contains("internal: variable"),
        "{logs}"
    );
}

/// `spin.wasip3.toml` is `spin.toml`, and `export.wasip3.toml` is
/// `export.toml`, but for where the WASI 0.3 build of every component
/// comes from and how it is built: the same routes, triggers, variables,
/// allowed hosts and components.
#[test]
fn the_wasip3_manifests_are_the_same_apps() {
    let read = |name: &str| -> toml::Value {
        toml::from_str(&std::fs::read_to_string(repo_root().join(name)).unwrap()).unwrap()
    };
    for (plain_name, p3_name) in [
        ("spin.toml", "spin.wasip3.toml"),
        ("export.toml", "export.wasip3.toml"),
    ] {
        let (plain, p3) = (read(plain_name), read(p3_name));
        let mut rebuilt = p3.clone();
        for (name, component) in rebuilt["component"].as_table_mut().unwrap() {
            let component = component.as_table_mut().unwrap();
            let source = component["source"].as_str().unwrap().to_string();
            let file = source
                .strip_prefix("target/wasip3/")
                .unwrap_or_else(|| panic!("{p3_name}: {name} is not a WASI 0.3 build"));
            component.insert("source".into(), format!("target/{file}").into());
            let build = component["build"].as_table_mut().unwrap();
            let command = build["command"].as_str().unwrap();
            let plain_command =
                command.replace(" --target-dir target/wasip3 --features wasip3", "");
            assert_ne!(
                plain_command, command,
                "{p3_name}: {name} built with the wasip3 feature"
            );
            build.insert("command".into(), plain_command.into());
        }
        assert_eq!(rebuilt, plain, "{p3_name} differs from {plain_name}");
    }
}
