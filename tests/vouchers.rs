//! Flash-sale vouchers over HTTP: admin, catalogue, the purchase under
//! heavy concurrency, time windows, my orders, bad input and outages.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use flashspin_core::time::format_rfc3339;
use flashspin_testkit::api::{
    Answer, NewGoods, NewVoucher, Order, OrderBody, OrderPage, OrderStatus, OrdersQuery,
    VoucherBody, VoucherList, VoucherStatus,
};
use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{
    ADMIN_KEY, App, AppConfig, RedisServer, SmsSink, app_manifest, is_wasip3_build, loose_config,
};

struct Shop {
    redis: RedisServer,
    sink: SmsSink,
    app: App,
}

/// An app with an admin key and limits loose enough for load tests.
async fn shop(extra: &[(&str, &str)]) -> Shop {
    shop_on(RedisServer::start(), extra, &[]).await
}

/// [`shop`] on the Redis given, with more arguments of `up`.
async fn shop_on(redis: RedisServer, extra: &[(&str, &str)], args: &[&str]) -> Shop {
    let sink = SmsSink::start().await;
    let mut config = loose_config(&redis, &sink);
    for (name, value) in extra {
        config = config.var(name, *value);
    }
    for arg in args {
        config = config.arg(*arg);
    }
    let app = config.start().await;
    Shop { redis, sink, app }
}

fn rfc3339_in(secs: i64) -> String {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // Whole seconds, as an operator would write them.
    format_rfc3339((now_ms / 1000 + secs) * 1000)
}

fn voucher_body(stock: i64, begin_in: i64, end_in: i64) -> NewVoucher {
    NewVoucher {
        shop_id: "1".into(),
        title: "50 off 100".into(),
        sub_title: Some("today only".into()),
        rules: Some("one per person".into()),
        pay_value: 5000,
        actual_value: 10000,
        stock,
        begin_time: rfc3339_in(begin_in),
        end_time: rfc3339_in(end_in),
        parts: None,
    }
}

async fn create(app: &App, body: &impl serde::Serialize) -> Answer<VoucherBody> {
    app.api.create_voucher(ADMIN_KEY, body).await
}

async fn create_voucher(app: &App, stock: i64, begin_in: i64, end_in: i64) -> String {
    let reply = create(app, &voucher_body(stock, begin_in, end_in)).await;
    reply.expect(201).voucher.id
}

async fn buy(app: &App, voucher: &str, token: &str) -> Answer<OrderBody> {
    app.api.buy_voucher(token, voucher).await
}

async fn my_orders(app: &App, token: &str) -> Answer<OrderPage> {
    app.api.my_orders(token, &OrdersQuery::default()).await
}

/// Signs in `n` users (phones 139xxxxxxxx) a few at a time.
async fn users(shop: &Shop, n: usize) -> Vec<String> {
    let phones: Vec<String> = (0..n).map(|i| format!("139{i:08}")).collect();
    let sessions = shop.app.api.sign_in_all(&shop.sink, &phones, 20).await;
    sessions.into_iter().map(|s| s.token).collect()
}

/// A warm WASI 0.3 instance keeps its Redis connection across requests;
/// when Redis restarts between two of them, the next one finds that
/// connection dead. What it sends first (the gate, a read, a purchase) may
/// run twice, so it is sent again on a fresh connection and the request is
/// served. (The WASI 0.2 build opens a connection per request: the same
/// checks hold trivially there.)
#[tokio::test]
async fn the_first_requests_after_a_redis_restart_are_served() {
    let redis = RedisServer::start_durable("always");
    // The instances, and the connections they keep, outlive the restart.
    let args: &[&str] = if is_wasip3_build() {
        &["--idle-instance-timeout", "60s"]
    } else {
        &[]
    };
    let mut shop = shop_on(redis, &[], args).await;
    let tokens = users(&shop, 4).await;
    let voucher = create_voucher(&shop.app, 10, -5, 3600).await;
    assert_eq!(buy(&shop.app, &voucher, &tokens[0]).await.status, 201);
    assert_eq!(shop.app.api.health().await.status, 200);

    shop.redis.restart();
    let health = shop.app.api.health().await;
    assert_eq!(health.status, 200, "{}\n{}", health.text(), shop.app.logs());
    let bought = buy(&shop.app, &voucher, &tokens[1]).await;
    assert_eq!(bought.status, 201, "{}\n{}", bought.text(), shop.app.logs());
    let read = shop.app.api.voucher(&voucher).await;
    assert_eq!(read.status, 200, "{}", read.text());
    assert_eq!(read.body().voucher.remaining, 8);
    let again = buy(&shop.app, &voucher, &tokens[0]).await;
    assert_eq!(again.status, 409, "{}", again.text());
}

/// A warm instance (the WASI 0.3 build) remembers a voucher sold out for
/// `refusal_memory_ms`: its buyers are refused after the gate alone, and a
/// unit back on sale is seen that much later at most. The WASI 0.2 build
/// has no instance to remember in and sees it at once.
#[tokio::test]
async fn a_sold_out_voucher_is_remembered_for_its_bound_only() {
    let args: &[&str] = if is_wasip3_build() {
        &["--idle-instance-timeout", "60s"]
    } else {
        &[]
    };
    let shop = shop_on(RedisServer::start(), &[("refusal_memory_ms", "2000")], args).await;
    let app = &shop.app;
    let tokens = users(&shop, 2).await;
    let voucher = create_voucher(app, 1, -5, 3600).await;
    let order = buy(app, &voucher, &tokens[0]).await.expect(201).order;
    let refused = buy(app, &voucher, &tokens[1]).await;
    assert_eq!(
        (refused.status, refused.error_code()),
        (409, "sold_out".into())
    );

    // The unit comes back.
    let cancelled = app.api.cancel_order(&tokens[0], &order.id).await;
    assert_eq!(cancelled.expect(200).order.status, OrderStatus::Cancelled);
    let started = std::time::Instant::now();
    let at_once = buy(app, &voucher, &tokens[1]).await;
    if !is_wasip3_build() {
        assert_eq!(at_once.status, 201, "{}", at_once.text());
        return;
    }
    assert_eq!(
        (at_once.status, at_once.error_code()),
        (409, "sold_out".into())
    );
    assert!(
        started.elapsed() < Duration::from_millis(2000),
        "the test ran too slowly"
    );
    if !crate::harness::is_real_spin() {
        // Refused after the gate alone.
        let logs = app.logs();
        let trips = crate::harness::round_trips(&logs, "buy-voucher");
        assert_eq!(trips.last(), Some(&1), "{logs}");
    }
    tokio::time::sleep(Duration::from_millis(2000).saturating_sub(started.elapsed())).await;
    let later = buy(app, &voucher, &tokens[1]).await;
    assert_eq!(later.status, 201, "{}", later.text());
}

#[tokio::test]
async fn admins_create_vouchers_and_everyone_can_read_them() {
    let shop = shop(&[]).await;
    let app = &shop.app;
    let reply = create(app, &voucher_body(100, -60, 3600)).await;
    let v = reply.expect(201).voucher;
    assert_eq!(v.shop_id, "1");
    assert_eq!(v.title, "50 off 100");
    assert_eq!((v.stock, v.remaining), (100, 100));
    assert_eq!(v.status, VoucherStatus::OnSale);
    assert_eq!((v.pay_value, v.actual_value), (5000, 10000));
    let id = v.id.clone();

    let one = app.api.voucher(&id).await;
    assert_eq!(one.status, 200);
    assert_eq!(one.body().voucher, v);
    assert!(one.header("ratelimit").is_some());

    let later = create_voucher(app, 5, 3600, 7200).await;
    let list = app.api.vouchers("1").await;
    assert_eq!(list.status, 200);
    let vouchers = list.body().vouchers;
    let ids: Vec<&str> = vouchers.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(ids, vec![later.as_str(), id.as_str()], "newest first");
    assert_eq!(vouchers[0].status, VoucherStatus::Upcoming);
    let other_shop = app.api.vouchers("2").await;
    assert_eq!(other_shop.body(), VoucherList { vouchers: vec![] });
}

#[tokio::test]
async fn a_thousand_buyers_never_oversell() {
    let shop = shop(&[]).await;
    let tokens = users(&shop, 200).await;
    for round in 0..3 {
        let voucher = create_voucher(&shop.app, 50, -5, 3600).await;
        // 1,000 requests at once: each of 200 users tries five times.
        let tasks: Vec<_> = (0..1000)
            .map(|i| {
                let request = shop.app.api.buy_voucher(&tokens[i % 200], &voucher);
                tokio::spawn(request.into_future())
            })
            .collect();
        let mut created: Vec<Order> = Vec::new();
        let mut others: HashMap<String, usize> = HashMap::new();
        for task in tasks {
            let reply = task.await.unwrap();
            match reply.status {
                201 => created.push(reply.body().order),
                409 => *others.entry(reply.error_code()).or_default() += 1,
                status => panic!(
                    "round {round}: unexpected {status}: {}\n{}",
                    reply.text(),
                    shop.app.logs()
                ),
            }
        }
        assert_eq!(created.len(), 50, "round {round}: {others:?}");
        assert_eq!(others.values().sum::<usize>(), 950);
        let buyers: HashSet<&str> = created.iter().map(|o| o.user_id.as_str()).collect();
        assert_eq!(buyers.len(), 50, "one order per user");
        let order_ids: HashSet<&str> = created.iter().map(|o| o.id.as_str()).collect();
        assert_eq!(order_ids.len(), 50);
        let v = shop.app.api.voucher(&voucher).await.ok().voucher;
        assert_eq!(v.remaining, 0);
        assert_eq!(v.status, VoucherStatus::SoldOut);
        let remaining: i64 = redis::cmd("HGET")
            .arg(format!("{{v:{voucher}}}:info"))
            .arg("remaining")
            .query(&mut shop.redis.conn())
            .unwrap();
        assert_eq!(remaining, 0, "never negative");
        let recorded: i64 = redis::cmd("HLEN")
            .arg(format!("{{v:{voucher}}}:buyers"))
            .query(&mut shop.redis.conn())
            .unwrap();
        assert_eq!(recorded, 50);
    }
}

#[tokio::test]
async fn a_second_attempt_returns_the_existing_order() {
    let shop = shop(&[]).await;
    let token = shop.app.api.sign_in(&shop.sink, "13812345678").await.token;
    let voucher = create_voucher(&shop.app, 10, -5, 3600).await;
    let first = buy(&shop.app, &voucher, &token).await;
    let order = first.expect(201).order;
    assert_eq!(order.voucher_id, voucher);
    assert_eq!(order.status, OrderStatus::Unpaid);
    let id: u64 = order.id.parse().unwrap();
    assert!(id > 1 << 32, "seconds since the epoch sit in the high bits");

    let again = buy(&shop.app, &voucher, &token).await;
    assert_eq!(
        (again.status, again.error_code()),
        (409, "already_purchased".into())
    );
    assert_eq!(again.error().order, Some(order.clone()));

    let mine = my_orders(&shop.app, &token).await;
    assert_eq!(mine.status, 200);
    assert_eq!(mine.body().orders, vec![order]);
}

#[tokio::test]
async fn my_orders_are_newest_first_and_only_mine() {
    let shop = shop(&[]).await;
    let alice = shop.app.api.sign_in(&shop.sink, "13800000001").await.token;
    let bob = shop.app.api.sign_in(&shop.sink, "13800000002").await.token;
    let first = create_voucher(&shop.app, 10, -5, 3600).await;
    let second = create_voucher(&shop.app, 10, -5, 3600).await;
    let sold_out = create_voucher(&shop.app, 1, -5, 3600).await;
    assert_eq!(buy(&shop.app, &sold_out, &bob).await.status, 201);
    assert_eq!(buy(&shop.app, &first, &alice).await.status, 201);
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(buy(&shop.app, &second, &alice).await.status, 201);
    assert_eq!(buy(&shop.app, &sold_out, &alice).await.status, 409);

    let mine = my_orders(&shop.app, &alice).await.ok();
    let vouchers: Vec<&str> = mine.orders.iter().map(|o| o.voucher_id.as_str()).collect();
    assert_eq!(vouchers, vec![second.as_str(), first.as_str()]);
    let no_token = shop.app.api.get("/api/me/orders").await;
    assert_eq!(no_token.status, 401);
}

#[tokio::test]
async fn sales_open_and_close_on_time() {
    let shop = shop(&[]).await;
    let token = shop.app.api.sign_in(&shop.sink, "13812345678").await.token;
    let soon = create_voucher(&shop.app, 5, 60, 3600).await;
    let closing = create_voucher(&shop.app, 5, -10, 2).await;

    let early = buy(&shop.app, &soon, &token).await;
    assert_eq!(
        (early.status, early.error_code()),
        (409, "sale_not_started".into())
    );
    // The sale opens: its start moves to a second ago (waiting a whole
    // minute would make the suite slow; a short wait would race a slow
    // machine).
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    redis::cmd("HSET")
        .arg(format!("{{v:{soon}}}:info"))
        .arg("begin")
        .arg(now_ms - 1000)
        .exec(&mut shop.redis.conn())
        .unwrap();
    assert_eq!(buy(&shop.app, &soon, &token).await.status, 201);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let late = buy(&shop.app, &closing, &token).await;
    assert_eq!((late.status, late.error_code()), (409, "sale_ended".into()));
    let status = shop.app.api.voucher(&closing).await.ok().voucher;
    assert_eq!(status.status, VoucherStatus::Ended);
    assert_eq!(status.remaining, 5);
}

#[tokio::test]
async fn the_per_user_limit_is_per_user_and_per_endpoint() {
    let shop = shop(&[("rate_limit_user", "1/60")]).await;
    let alice = shop.app.api.sign_in(&shop.sink, "13800000001").await.token;
    let bob = shop.app.api.sign_in(&shop.sink, "13800000002").await.token;
    let a = create_voucher(&shop.app, 10, -5, 3600).await;
    let b = create_voucher(&shop.app, 10, -5, 3600).await;

    assert_eq!(buy(&shop.app, &a, &alice).await.status, 201);
    let limited = buy(&shop.app, &b, &alice).await;
    assert_eq!(
        (limited.status, limited.error_code()),
        (429, "rate_limited".into())
    );
    assert!(
        limited
            .header("ratelimit-policy")
            .unwrap()
            .contains("\"user\";q=1;w=60")
    );
    assert!(
        limited
            .header("ratelimit")
            .unwrap()
            .starts_with("\"user\";r=0;")
    );
    assert_eq!(
        buy(&shop.app, &b, &bob).await.status,
        201,
        "other users are not affected"
    );
    let me = shop.app.api.me(&alice).await;
    assert_eq!(me.status, 200, "other endpoints are not affected");
    // The refused attempt bought nothing.
    let mine = my_orders(&shop.app, &alice).await.ok();
    assert_eq!(mine.orders.len(), 1);
}

#[tokio::test]
async fn bad_input_is_refused_and_changes_nothing() {
    let shop = shop(&[]).await;
    let token = shop.app.api.sign_in(&shop.sink, "13812345678").await.token;
    let app = &shop.app;
    let keys_before = all_keys(&shop.redis);

    let mut cases: Vec<(String, Value, u16, &str)> = Vec::new();
    for (field, value) in [
        ("stock", json!(0)),
        ("stock", json!(-1)),
        ("stock", json!("5")),
        ("pay_value", json!(-100)),
        ("actual_value", json!(1e20)),
        ("shop_id", json!(1)),
        ("end_time", json!(rfc3339_in(-100))),
        ("begin_time", json!("not a time")),
    ] {
        let mut body = serde_json::to_value(voucher_body(10, -5, 3600)).unwrap();
        body[field] = value;
        cases.push((field.to_string(), body, 400, "invalid_request"));
    }
    for (field, body, status, expected) in cases {
        let reply = create(app, &body).await;
        assert_eq!(
            (reply.status, reply.error_code()),
            (status, expected.to_string()),
            "{field}"
        );
        let message = reply.error().message;
        assert!(message.contains(&field), "{field}: {message}");
    }
    for key in [None, Some("wrong")] {
        let mut request = app
            .api
            .request(Method::POST, "/api/admin/vouchers")
            .json(&voucher_body(10, -5, 3600));
        if let Some(key) = key {
            request = request.bearer(key);
        }
        let reply = request.await;
        assert_eq!(
            (reply.status, reply.error_code()),
            (401, "unauthorized".into())
        );
    }
    for path in ["/api/vouchers/abc", "/api/vouchers/0", "/api/vouchers/999"] {
        assert_eq!(app.api.get(path).await.status, 404, "{path}");
    }
    for voucher in ["abc", "-1", "999"] {
        let reply = buy(app, voucher, &token).await;
        assert_eq!(
            (reply.status, reply.error_code()),
            (404, "not_found".into()),
            "{voucher}"
        );
    }
    let listing = app.api.get("/api/vouchers").await;
    assert_eq!(listing.status, 400);
    let wrong_method = app
        .api
        .request(Method::GET, "/api/vouchers/1/orders")
        .bearer(&token)
        .await;
    assert_eq!(wrong_method.status, 405);

    let created: Vec<String> = all_keys(&shop.redis)
        .difference(&keys_before)
        .filter(|k| !k.contains(":rl:") && !k.contains("order-seq") && !k.contains(":vouchers"))
        .cloned()
        .collect();
    assert!(created.is_empty(), "{created:?}");
}

#[tokio::test]
async fn admin_routes_stay_shut_without_an_admin_key() {
    let redis = RedisServer::start();
    let app = AppConfig::new(app_manifest())
        .var("redis_address", redis.url())
        .start()
        .await;
    let reply = app
        .api
        .create_voucher("", &voucher_body(10, -5, 3600))
        .await;
    assert_eq!(reply.status, 401);
}

#[tokio::test]
async fn redis_down_gives_503_and_buys_nothing() {
    let mut shop = shop(&[]).await;
    let token = shop.app.api.sign_in(&shop.sink, "13812345678").await.token;
    let voucher = create_voucher(&shop.app, 10, -5, 3600).await;
    shop.redis.stop();
    for reply in [
        buy(&shop.app, &voucher, &token).await.untyped(),
        shop.app.api.voucher(&voucher).await.untyped(),
        create(&shop.app, &voucher_body(10, -5, 3600))
            .await
            .untyped(),
    ] {
        assert_eq!(
            (reply.status, reply.error_code()),
            (503, "unavailable".into())
        );
    }
}

fn all_keys(redis: &RedisServer) -> HashSet<String> {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query(&mut redis.conn())
        .unwrap();
    keys.into_iter().collect()
}

/// (status, round trips) of each request `component` served, in order,
/// from flashspin's request log (`... -> component 201 1.2ms redis=3`).
fn trips_by_status(logs: &str, component: &str) -> Vec<(u16, u32)> {
    logs.lines()
        .filter_map(|l| l.split_once(&format!("-> {component} "))?.1.split_once(' '))
        .filter_map(|(status, rest)| {
            Some((
                status.parse().ok()?,
                rest.rsplit_once("redis=")?.1.trim().parse().ok()?,
            ))
        })
        .collect()
}

#[tokio::test]
async fn refusals_take_two_round_trips_and_purchases_and_already_bought_three() {
    if crate::harness::is_real_spin() {
        return; // The count comes from flashspin's request log.
    }
    let shop = shop(&[]).await;
    let token = shop.app.api.sign_in(&shop.sink, "13812345678").await.token;
    // The first purchase loads the scripts (EVALSHA answers NOSCRIPT, then
    // EVAL): one more trip each, once per Redis. The counts below skip it.
    let first = create_voucher(&shop.app, 5, -5, 3600).await;
    let second = create_voucher(&shop.app, 1, -5, 3600).await;
    assert_eq!(buy(&shop.app, &first, &token).await.status, 201);
    assert_eq!(buy(&shop.app, &second, &token).await.status, 201);
    assert_eq!(buy(&shop.app, &second, &token).await.status, 409);
    let other = shop.app.api.sign_in(&shop.sink, "13900000001").await.token;
    assert_eq!(buy(&shop.app, &second, &other).await.status, 409);
    assert_eq!(buy(&shop.app, "999999", &other).await.status, 404);
    let goods = NewGoods {
        title: "g".into(),
        total_shares: 3,
        share_price: 1,
        code_base: None,
        max_periods: None,
    };
    let goods = shop.app.api.create_goods(ADMIN_KEY, &goods).await;
    let goods = goods.body().goods.id;
    // The second purchase sells the period out: the draw is in the same trip.
    for count in [1, 2] {
        let bought = shop.app.api.buy_shares(&token, &goods, count, None).await;
        assert_eq!(bought.status, 201);
    }
    for _ in 0..2 {
        assert_eq!(shop.app.api.me(&token).await.status, 200);
    }
    shop.app.api.sign_in(&shop.sink, "13900000000").await;

    let logs = shop.app.logs();
    for component in [
        "buy-voucher",
        "buy-lottery-shares",
        "send-code",
        "login",
        "account",
    ] {
        let trips = trips_by_status(&logs, component);
        let steady = &trips[trips.len().min(1)..];
        assert!(
            !steady.is_empty(),
            "{component} not in the log twice:\n{logs}"
        );
        for &(status, n) in steady {
            // A purchase that succeeded adds it to the buyer's list.
            let most = match (component, status) {
                ("buy-voucher" | "buy-lottery-shares", 201) => 3,
                // Already bought files the order again (checked below).
                ("buy-voucher", 409) => 3,
                ("send-code" | "login", _) => 1,
                _ => 2,
            };
            assert!(n <= most, "{component}: {trips:?}");
        }
    }
    let refusals: Vec<(u16, u32)> = trips_by_status(&logs, "buy-voucher")
        .into_iter()
        .filter(|(status, _)| *status >= 400)
        .collect();
    // Already bought, sold out, no such voucher: only the first files the
    // buyer's order again, mending a filing lost to a Redis failure.
    assert_eq!(refusals, [(409, 3), (409, 2), (404, 2)]);
}

#[tokio::test]
async fn floods_without_a_valid_session_cannot_use_up_the_global_limit() {
    let shop = shop(&[("rate_limit_global", "5/60")]).await;
    let voucher = create_voucher(&shop.app, 10, -1, 3600).await;
    let path = format!("/api/vouchers/{voucher}/orders");

    // No token at all: 401 before Redis is asked anything.
    for _ in 0..20 {
        let reply = shop.app.api.request(Method::POST, &path).await;
        assert_eq!(
            (reply.status, reply.error_code()),
            (401, "unauthorized".into())
        );
    }
    let limiter_keys: Vec<String> = redis::cmd("KEYS")
        .arg("{gate}:rl:buy-voucher:*")
        .query(&mut shop.redis.conn())
        .unwrap();
    assert!(limiter_keys.is_empty(), "{limiter_keys:?}");

    // A well-formed token that finds no session: 401, counted per IP only.
    let forged = "ab".repeat(32);
    for _ in 0..20 {
        let reply = buy(&shop.app, &voucher, &forged).await;
        assert_eq!(
            (reply.status, reply.error_code()),
            (401, "unauthorized".into())
        );
    }

    // The global budget is intact for real buyers.
    let token = shop.app.api.sign_in(&shop.sink, "13912345678").await.token;
    let reply = buy(&shop.app, &voucher, &token).await;
    assert_eq!(reply.status, 201, "{}", reply.text());
}

#[tokio::test]
async fn requests_with_a_bad_token_are_still_limited_per_ip() {
    let shop = shop(&[("rate_limit_ip", "3/60")]).await;
    let voucher = create_voucher(&shop.app, 10, -1, 3600).await;
    let forged = "cd".repeat(32);
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(buy(&shop.app, &voucher, &forged).await.status);
    }
    assert_eq!(statuses, [401, 401, 401, 429, 429]);
}

#[tokio::test]
async fn attempts_on_missing_or_refused_items_leave_no_trace() {
    let shop = shop(&[]).await;
    let token = shop.app.api.sign_in(&shop.sink, "13812345678").await.token;
    let sold_out = create_voucher(&shop.app, 1, -5, 3600).await;
    let other = shop.app.api.sign_in(&shop.sink, "13900000001").await.token;
    assert_eq!(buy(&shop.app, &sold_out, &other).await.status, 201);
    for id in 1000..1030 {
        let reply = buy(&shop.app, &id.to_string(), &token).await;
        assert_eq!(reply.status, 404, "{}", reply.text());
        let reply = shop
            .app
            .api
            .buy_shares(&token, &id.to_string(), 1, None)
            .await;
        assert_eq!(reply.status, 404);
    }
    assert_eq!(buy(&shop.app, &sold_out, &token).await.status, 409);
    // Only the buyer who succeeded has a list; the other user, who only
    // tried, has nothing recorded anywhere.
    let lists: Vec<String> = redis::cmd("KEYS")
        .arg("{gate}:user:*:*")
        .query(&mut shop.redis.conn())
        .unwrap();
    assert_eq!(lists.len(), 1, "{lists:?}");
    assert!(lists[0].ends_with(":voucher-orders"), "{lists:?}");
    let mine = my_orders(&shop.app, &token).await;
    assert_eq!(mine.body().orders, vec![]);
}

#[tokio::test]
async fn my_orders_come_in_pages() {
    let shop = shop(&[]).await;
    let token = shop.app.api.sign_in(&shop.sink, "13812345678").await.token;
    let mut bought = Vec::new();
    for _ in 0..25 {
        let voucher = create_voucher(&shop.app, 5, -5, 3600).await;
        assert_eq!(buy(&shop.app, &voucher, &token).await.status, 201);
        bought.push(voucher);
    }
    let mut listed = Vec::new();
    let mut sizes = Vec::new();
    let mut cursor = None;
    loop {
        let query = OrdersQuery {
            limit: Some(10),
            cursor: cursor.as_deref(),
            ..OrdersQuery::default()
        };
        let page = shop.app.api.my_orders(&token, &query).await.expect(200);
        sizes.push(page.orders.len());
        listed.extend(page.orders.into_iter().map(|o| o.voucher_id));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(sizes, [10, 10, 5]);
    bought.reverse();
    assert_eq!(listed, bought, "newest first, each once");

    for (bad, query) in [
        (
            "limit=0",
            OrdersQuery {
                limit: Some(0),
                ..OrdersQuery::default()
            },
        ),
        (
            "limit=101",
            OrdersQuery {
                limit: Some(101),
                ..OrdersQuery::default()
            },
        ),
        (
            "cursor=x",
            OrdersQuery {
                cursor: Some("x"),
                ..OrdersQuery::default()
            },
        ),
        (
            "cursor=1.2.3.4",
            OrdersQuery {
                cursor: Some("1.2.3.4"),
                ..OrdersQuery::default()
            },
        ),
    ] {
        let reply = shop.app.api.my_orders(&token, &query).await;
        assert_eq!(
            (reply.status, reply.error_code()),
            (400, "invalid_request".into()),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn reading_my_orders_is_limited_per_user() {
    let shop = shop(&[("rate_limit_user_reads", "3/60")]).await;
    let token = shop.app.api.sign_in(&shop.sink, "13812345678").await.token;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(my_orders(&shop.app, &token).await.status);
    }
    assert_eq!(statuses, [200, 200, 200, 429]);
    // Another user reads on.
    let other = shop.app.api.sign_in(&shop.sink, "13900000001").await.token;
    assert_eq!(my_orders(&shop.app, &other).await.status, 200);
}
