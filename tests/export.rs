//! Orders in PostgreSQL (docs/ORDERS.md): the `order-export` component,
//! woken through the Redis trigger, moves every order and every change of
//! one into a private PostgreSQL, once in effect: under 1,000 concurrent
//! purchases and payments, across a `kill -9` of the host in the middle of
//! a batch, through ten seconds without PostgreSQL, and across a `kill -9`
//! of Redis running with `appendfsync always`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use flashspin_core::keys::ORDER_EXPORT_CHANNEL;
use flashspin_core::order_export::MIGRATIONS;
use flashspin_core::time::format_rfc3339;
use flashspin_testkit::PostgresServer;
use flashspin_testkit::api::{NewVoucher, Order};
use futures::StreamExt;
use serde_json::json;

use crate::harness::{
    ADMIN_KEY, App, AppConfig, RedisServer, SmsSink, export_manifest, loose_config,
};

const SECRET: &str = "test-webhook-secret";
const PRICE: i64 = 8000;

/// How long a wake-up counts as pending (the flag `orders.lua` sets).
const WAKE_FLAG_LIFE: Duration = Duration::from_millis(1100);

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The shop, its orders marked for export to `pg`.
fn config(redis: &RedisServer, sink: &SmsSink, pg: &PostgresServer) -> AppConfig {
    loose_config(redis, sink)
        .var("payment_webhook_secret", SECRET)
        .var("rate_limit_user_reads", "100000/1")
        .var("pg_address", pg.url())
        .var("pg_host", format!("127.0.0.1:{}", pg.port))
}

/// The exporter, its own app (`export.toml`), once it listens: a wake-up
/// published before its subscription is in place reaches nobody.
async fn exporter(redis: &RedisServer, pg: &PostgresServer) -> App {
    let app = AppConfig::new(export_manifest())
        .var("redis_address", redis.url())
        .var("pg_address", pg.url())
        .var("pg_host", format!("127.0.0.1:{}", pg.port))
        .start()
        .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, subscribers): (String, i64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(ORDER_EXPORT_CHANNEL)
            .query(&mut redis.conn())
            .unwrap();
        if subscribers > 0 {
            return app;
        }
        assert!(Instant::now() < deadline, "the exporter never subscribed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn create_voucher(app: &App, stock: i64) -> String {
    let now = now_secs() as i64;
    let voucher = NewVoucher {
        shop_id: "1".into(),
        title: "80 for 100".into(),
        sub_title: None,
        rules: None,
        pay_value: PRICE,
        actual_value: 10000,
        stock,
        begin_time: format_rfc3339((now - 5) * 1000),
        end_time: format_rfc3339((now + 3600) * 1000),
        parts: None,
    };
    let reply = app.api.create_voucher(ADMIN_KEY, &voucher).await;
    reply.expect(201).voucher.id
}

/// Signs in `n` users, phones `136<first + i>`.
async fn users(app: &App, sink: &SmsSink, first: usize, n: usize) -> Vec<String> {
    let phones: Vec<String> = (first..first + n).map(|i| format!("136{i:08}")).collect();
    let sessions = app.api.sign_in_all(sink, &phones, 20).await;
    sessions.into_iter().map(|s| s.token).collect()
}

/// Every token buys the voucher, `parallel` at a time; the orders placed.
async fn buy_all(app: &App, tokens: &[String], voucher_id: &str, parallel: usize) -> Vec<Order> {
    futures::stream::iter(tokens)
        .map(|token| async move {
            app.api
                .buy_voucher(token, voucher_id)
                .await
                .expect(201)
                .order
        })
        .buffer_unordered(parallel)
        .collect()
        .await
}

/// Pays each order in full through the provider's webhook.
async fn pay_all(app: &App, orders: &[Order], parallel: usize) {
    futures::stream::iter(orders)
        .map(|order| async move {
            let event = json!({
                "event_id": format!("pay-{}", order.id),
                "type": "payment.succeeded",
                "order_id": order.id,
                "amount": order.amount,
                "pay_type": "card",
            });
            app.api
                .payment_webhook(SECRET, now_secs(), &event)
                .await
                .expect(200);
        })
        .buffer_unordered(parallel)
        .collect::<Vec<_>>()
        .await;
}

/// A row of `voucher_order`, as far as these tests look.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    status: String,
    version: i64,
    voucher_id: String,
    amount: i64,
}

/// Every row of `voucher_order` by order id; none while the table is not
/// there or PostgreSQL is down.
fn rows(pg: &PostgresServer) -> HashMap<String, Row> {
    let out = match pg.try_psql("SELECT id, status, version, voucher_id, amount FROM voucher_order")
    {
        Ok(out) => out,
        Err(e) => {
            eprintln!("voucher_order cannot be read: {e}");
            return HashMap::new();
        }
    };
    out.lines()
        .filter(|l| !l.is_empty())
        .map(|line| {
            let f: Vec<&str> = line.split('|').collect();
            let row = Row {
                status: f[1].to_string(),
                version: f[2].parse().unwrap(),
                voucher_id: f[3].to_string(),
                amount: f[4].parse().unwrap(),
            };
            (f[0].to_string(), row)
        })
        .collect()
}

/// Polls the table until `done` holds (or `timeout` passes); returns the
/// rows last seen and how long it took.
async fn wait_rows(
    pg: &PostgresServer,
    timeout: Duration,
    done: impl Fn(&HashMap<String, Row>) -> bool,
) -> (HashMap<String, Row>, Duration) {
    let start = Instant::now();
    loop {
        let rows = rows(pg);
        if done(&rows) || start.elapsed() > timeout {
            return (rows, start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether every order in `orders` has a row with `status`.
fn all_have(rows: &HashMap<String, Row>, orders: &[Order], status: &str) -> bool {
    orders
        .iter()
        .all(|o| rows.get(&o.id).is_some_and(|r| r.status == status))
}

/// The voucher's outbox holds nothing: every event was exported and
/// acknowledged, and no consumer of the group holds one. A run
/// acknowledges a batch just after PostgreSQL took it, so a test that has
/// just seen the rows gives the last batch a moment.
fn assert_outbox_empty(redis: &RedisServer, voucher_id: &str) {
    let outbox = format!("{}:outbox", voucher_tag(voucher_id));
    let mut conn = redis.conn();
    let deadline = Instant::now() + Duration::from_secs(2);
    let len = loop {
        let len: i64 = redis::cmd("XLEN").arg(&outbox).query(&mut conn).unwrap();
        if len == 0 || Instant::now() > deadline {
            break len;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(len, 0, "events left in {outbox}");
    let pending: redis::Value = redis::cmd("XPENDING")
        .arg(&outbox)
        .arg(flashspin_core::order_export::GROUP)
        .query(&mut conn)
        .unwrap();
    let redis::Value::Array(summary) = pending else {
        panic!("XPENDING: {pending:?}")
    };
    assert_eq!(
        summary[0],
        redis::Value::Int(0),
        "entries pending in {outbox}"
    );
}

/// The hash tag of a voucher's keys.
fn voucher_tag(voucher_id: &str) -> String {
    let id = flashspin_core::ids::VoucherId::parse(voucher_id).unwrap();
    let outbox = flashspin_core::keys::voucher_outbox(id);
    outbox.trim_end_matches(":outbox").to_string()
}

/// What the voucher's outbox looks like, for a failure's message.
fn outbox_state(redis: &RedisServer, voucher_id: &str) -> String {
    let outbox = format!("{}:outbox", voucher_tag(voucher_id));
    let mut conn = redis.conn();
    let len: i64 = redis::cmd("XLEN").arg(&outbox).query(&mut conn).unwrap();
    let groups: redis::Value = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(&outbox)
        .query(&mut conn)
        .unwrap_or(redis::Value::Nil);
    let consumers: redis::Value = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(&outbox)
        .arg(flashspin_core::order_export::GROUP)
        .query(&mut conn)
        .unwrap_or(redis::Value::Nil);
    format!("{outbox}: {len} entries; groups {groups:?}; consumers {consumers:?}")
}

/// Entries delivered to an exporter and not yet acknowledged.
fn pending(redis: &RedisServer, voucher_id: &str) -> i64 {
    let outbox = format!("{}:outbox", voucher_tag(voucher_id));
    let reply: redis::RedisResult<redis::Value> = redis::cmd("XPENDING")
        .arg(&outbox)
        .arg(flashspin_core::order_export::GROUP)
        .query(&mut redis.conn());
    match reply {
        Ok(redis::Value::Array(summary)) => match summary[0] {
            redis::Value::Int(n) => n,
            _ => 0,
        },
        _ => 0,
    }
}

#[tokio::test]
async fn a_thousand_purchases_and_payments_land_exactly_once() {
    let redis = RedisServer::start();
    let sink = SmsSink::start().await;
    let pg = PostgresServer::start();
    let app = config(&redis, &sink, &pg).start().await;
    let _exporter = exporter(&redis, &pg).await;
    let voucher_id = create_voucher(&app, 1000).await;
    let tokens = users(&app, &sink, 0, 1000).await;

    let orders = buy_all(&app, &tokens, &voucher_id, 64).await;
    assert_eq!(orders.len(), 1000);
    let ids: HashSet<&str> = orders.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(ids.len(), 1000, "order ids are unique");
    let (rows, _) = wait_rows(&pg, Duration::from_secs(10), |r| {
        all_have(r, &orders, "unpaid")
    })
    .await;
    assert!(all_have(&rows, &orders, "unpaid"), "{} rows", rows.len());

    pay_all(&app, &orders, 64).await;
    let (rows, _) = wait_rows(&pg, Duration::from_secs(10), |r| {
        all_have(r, &orders, "paid")
    })
    .await;
    assert_eq!(rows.len(), 1000, "one row per order, nothing else");
    for order in &orders {
        let row = &rows[&order.id];
        let want = Row {
            status: "paid".into(),
            version: 2,
            voucher_id: voucher_id.clone(),
            amount: PRICE,
        };
        assert_eq!(row, &want, "order {}", order.id);
    }
    let count = pg.psql("SELECT count(*), count(DISTINCT id) FROM voucher_order");
    assert_eq!(count.trim(), "1000|1000");
    assert_outbox_empty(&redis, &voucher_id);

    // Nothing is left for the operator's drain.
    let drained = app.api.export_orders(ADMIN_KEY).await.expect(200);
    assert!(drained.enabled);
    assert_eq!((drained.vouchers, drained.events), (1, 0));
}

#[tokio::test]
async fn an_exporter_killed_in_the_middle_of_a_batch_loses_nothing() {
    let redis = RedisServer::start();
    let sink = SmsSink::start().await;
    let pg = PostgresServer::start();
    for (_, sql) in MIGRATIONS {
        pg.psql(sql);
    }
    let app = config(&redis, &sink, &pg).start().await;
    let mut exporter_app = exporter(&redis, &pg).await;
    let voucher_id = create_voucher(&app, 200).await;
    let tokens = users(&app, &sink, 2000, 200).await;

    // The table is locked, so the exporter's upsert waits mid-batch with
    // its events delivered and not acknowledged.
    let lock = pg.hold("BEGIN; LOCK TABLE voucher_order IN ACCESS EXCLUSIVE MODE;");
    let orders = buy_all(&app, &tokens, &voucher_id, 32).await;
    let (first, rest) = orders.split_at(100);
    pay_all(&app, first, 32).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while pending(&redis, &voucher_id) == 0 {
        assert!(Instant::now() < deadline, "the exporter never took a batch");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Taking the batch comes before the upsert reaches PostgreSQL.
    let waiting = || {
        pg.psql(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'INSERT INTO voucher_order%'",
        )
        .trim()
        .to_string()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while waiting() == "0" && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(waiting(), "1", "the exporter's upsert waits on the lock");

    // Whether the upsert the dead run left behind commits once the lock
    // goes does not matter: its entries are still pending in Redis.
    exporter_app.kill();
    drop(lock);

    // Restarted, the next changes wake it; it takes over the dead run's
    // entries and the rest follow. (Changes made while a wake-up sent to the
    // dead exporter still counts as pending, 1 s at most, wake nobody; a
    // sale goes on longer than that, and the drain catches a tail.)
    let exporter_app = exporter(&redis, &pg).await;
    tokio::time::sleep(WAKE_FLAG_LIFE).await;
    pay_all(&app, rest, 32).await;
    let (rows, _) = wait_rows(&pg, Duration::from_secs(10), |r| {
        all_have(r, &orders, "paid")
    })
    .await;
    assert_eq!(
        rows.len(),
        200,
        "{}\n{}",
        outbox_state(&redis, &voucher_id),
        exporter_app.logs()
    );
    assert!(all_have(&rows, &orders, "paid"));
    assert!(rows.values().all(|r| r.version == 2), "latest versions");
    assert_outbox_empty(&redis, &voucher_id);
}

#[tokio::test]
async fn changes_made_while_postgres_is_down_land_within_two_seconds_of_its_return() {
    let redis = RedisServer::start();
    let sink = SmsSink::start().await;
    let mut pg = PostgresServer::start();
    let app = config(&redis, &sink, &pg).start().await;
    let _exporter = exporter(&redis, &pg).await;
    let voucher_id = create_voucher(&app, 1000).await;
    let tokens = users(&app, &sink, 4000, 300).await;
    let (before, rest) = tokens.split_at(100);
    let (during, after) = rest.split_at(100);

    let early = buy_all(&app, before, &voucher_id, 16).await;
    wait_rows(&pg, Duration::from_secs(10), |r| {
        all_have(r, &early, "unpaid")
    })
    .await;

    // Ten seconds without PostgreSQL, the sale going on.
    pg.stop();
    let outage = Instant::now();
    let mut down = Vec::new();
    for chunk in during.chunks(10) {
        down.extend(buy_all(&app, chunk, &voucher_id, 10).await);
        tokio::time::sleep(Duration::from_millis(900)).await;
    }
    pay_all(&app, &early, 16).await;
    while outage.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(rows(&pg).is_empty(), "PostgreSQL is down");

    pg.restart();
    // The sale goes on after its return, as sales do.
    let later = async {
        let mut placed = Vec::new();
        for chunk in after.chunks(20) {
            placed.extend(buy_all(&app, chunk, &voucher_id, 10).await);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        placed
    };
    let landed = async {
        wait_rows(&pg, Duration::from_secs(10), |r| {
            all_have(r, &early, "paid") && all_have(r, &down, "unpaid")
        })
        .await
    };
    let (placed, (rows, took)) = futures::join!(later, landed);
    assert!(
        all_have(&rows, &early, "paid") && all_have(&rows, &down, "unpaid"),
        "changes made during the outage are missing after {took:?}"
    );
    assert!(
        took <= Duration::from_secs(2),
        "the outage's changes landed {took:?} after PostgreSQL came back"
    );
    let (rows, _) = wait_rows(&pg, Duration::from_secs(10), |r| {
        all_have(r, &placed, "unpaid") && r.len() == 300
    })
    .await;
    assert_eq!(rows.len(), 300);
    assert_outbox_empty(&redis, &voucher_id);
}

#[tokio::test]
async fn orders_acknowledged_before_redis_is_killed_survive_in_redis_and_postgres() {
    let mut redis = RedisServer::start_durable("always");
    let sink = SmsSink::start().await;
    let pg = PostgresServer::start();
    let app = config(&redis, &sink, &pg).start().await;
    let mut exporter_app = exporter(&redis, &pg).await;
    let voucher_id = create_voucher(&app, 1000).await;
    let tokens = users(&app, &sink, 6000, 400).await;

    // Buyers keep buying; Redis is killed in the middle of it, once a
    // hundred orders have been acknowledged.
    let acknowledged_count = AtomicUsize::new(0);
    let buys = futures::stream::iter(tokens.iter())
        .map(|token| {
            let (api, voucher_id, count) = (&app.api, &voucher_id, &acknowledged_count);
            async move {
                let answer = api.buy_voucher(token, voucher_id).try_send().await;
                match answer {
                    Ok(a) if a.status == 201 => {
                        count.fetch_add(1, Ordering::SeqCst);
                        Some((token.clone(), a.expect(201).order))
                    }
                    _ => None,
                }
            }
        })
        .buffer_unordered(16);
    let killer = async {
        while acknowledged_count.load(Ordering::SeqCst) < 100 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        redis.kill();
    };
    let (acknowledged, ()) =
        futures::join!(buys.filter_map(|x| async { x }).collect::<Vec<_>>(), killer);
    assert!(
        acknowledged.len() >= 100 && acknowledged.len() < 400,
        "Redis died mid-sale: {} of 400 orders acknowledged",
        acknowledged.len()
    );

    // On Spin a Redis trigger whose server goes away ends its app: the
    // exporter stops, and its supervisor starts it again once Redis is
    // back. The shop, an app without a Redis trigger, answers 503 meanwhile.
    assert!(
        exporter_app.wait_exit(Duration::from_secs(10)).is_some(),
        "the exporter stops with its Redis trigger"
    );
    let refused = app.api.voucher(&voucher_id).send().await;
    assert_eq!(refused.status, 503, "{}", refused.text());
    redis.restart();
    let _exporter = exporter(&redis, &pg).await;
    // Wake-ups published while nobody listened are gone; the operator's
    // drain (cron) exports what they announced, and what the stopped
    // exporter held.
    let drained = app.api.export_orders(ADMIN_KEY).await.expect(200);
    assert!(drained.enabled);

    let rows = rows(&pg);
    for (token, order) in &acknowledged {
        let answer = app.api.order(token, &order.id).await;
        if answer.status != 200 {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("*{}*", order.id))
                .query(&mut redis.conn())
                .unwrap();
            let n: i64 = redis::cmd("DBSIZE").query(&mut redis.conn()).unwrap();
            panic!(
                "order {} of {}: {} {}; keys {keys:?}; dbsize {n}",
                order.id,
                acknowledged.len(),
                answer.status,
                answer.text()
            );
        }
        let read = answer.expect(200).order;
        assert_eq!(read.id, order.id);
        assert!(
            rows.contains_key(&order.id),
            "order {} not in PostgreSQL",
            order.id
        );
    }
    assert_outbox_empty(&redis, &voucher_id);
}

#[tokio::test]
async fn the_operators_drain_brings_expiries_and_says_when_it_cannot() {
    let redis = RedisServer::start();
    let sink = SmsSink::start().await;
    let mut pg = PostgresServer::start();
    // No exporter app: the drain alone, as a cron would run it.
    let app = config(&redis, &sink, &pg)
        .var("order_pay_secs", "1")
        .start()
        .await;
    let voucher_id = create_voucher(&app, 10).await;
    let tokens = users(&app, &sink, 9000, 3).await;
    let orders = buy_all(&app, &tokens, &voucher_id, 3).await;
    let drained = app.api.export_orders(ADMIN_KEY).await.expect(200);
    assert_eq!((drained.vouchers, drained.events), (1, 3));
    assert!(all_have(&rows(&pg), &orders, "unpaid"));

    // Due orders expire in Redis when something touches their voucher; the
    // drain does, so their expiry lands too.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let drained = app.api.export_orders(ADMIN_KEY).await.expect(200);
    assert_eq!(drained.events, 3);
    let expired = rows(&pg);
    assert!(all_have(&expired, &orders, "expired"), "{expired:?}");
    assert!(expired.values().all(|r| r.version == 2));

    // Without PostgreSQL: 503, and the events wait.
    pg.stop();
    let again = app
        .api
        .buy_voucher(&tokens[0], &voucher_id)
        .await
        .expect(201)
        .order;
    let refused = app.api.export_orders(ADMIN_KEY).await;
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(refused.error_code(), "database_unavailable");
    pg.restart();
    let drained = app.api.export_orders(ADMIN_KEY).await.expect(200);
    assert_eq!(drained.events, 1);
    assert!(all_have(&rows(&pg), &[again], "unpaid"));

    // An app without pg_address exports nothing and says so.
    let plain = loose_config(&redis, &sink).start().await;
    let off = plain.api.export_orders(ADMIN_KEY).await.expect(200);
    assert!(!off.enabled);
    assert_eq!(off.events, 0);
}

/// Creates `voucher_order` and logs every row PostgreSQL writes into it
/// (`writes`: the operation, the order's id and version), so that a test
/// sees how often each order was written.
fn log_writes(pg: &PostgresServer) {
    for (_, sql) in MIGRATIONS {
        pg.psql(sql);
    }
    pg.psql(
        "CREATE TABLE writes (n bigserial, op text, id bigint, version bigint);
         CREATE FUNCTION log_write() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           INSERT INTO writes (op, id, version) VALUES (TG_OP, NEW.id, NEW.version);
           RETURN NULL;
         END $$;
         CREATE TRIGGER log_write AFTER INSERT OR UPDATE ON voucher_order
           FOR EACH ROW EXECUTE FUNCTION log_write();",
    );
}

/// How many times each order was written, by order id.
fn writes_by_order(pg: &PostgresServer) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for id in pg.psql("SELECT id FROM writes").lines() {
        *counts.entry(id.to_string()).or_default() += 1;
    }
    counts
}

#[tokio::test]
async fn an_order_postgresql_refuses_is_parked_and_the_drain_goes_on() {
    let redis = RedisServer::start();
    let sink = SmsSink::start().await;
    let pg = PostgresServer::start();
    log_writes(&pg);
    // No exporter app: the drain alone, so that it meets every event.
    let app = config(&redis, &sink, &pg).start().await;
    let (v1, v2) = (
        create_voucher(&app, 10).await,
        create_voucher(&app, 10).await,
    );
    let tokens = users(&app, &sink, 11000, 8).await;
    let first = buy_all(&app, &tokens[..5], &v1, 5).await;
    let later = buy_all(&app, &tokens[5..], &v2, 3).await;

    // The shop's table refuses one buyer's orders.
    let bad = &first[2];
    pg.psql(&format!(
        "ALTER TABLE voucher_order ADD CONSTRAINT not_this_buyer CHECK (user_id <> {})",
        bad.user_id
    ));
    let drained = app.api.export_orders(ADMIN_KEY).await.expect(200);
    assert!(drained.enabled && drained.failed.is_empty(), "{drained:?}");
    assert_eq!(
        (drained.vouchers, drained.events, drained.parked),
        (2, 7, 1)
    );
    let table = rows(&pg);
    let good: Vec<Order> = first
        .iter()
        .chain(&later)
        .filter(|o| o.id != bad.id)
        .cloned()
        .collect();
    assert_eq!(table.len(), 7);
    assert!(all_have(&table, &good, "unpaid"));
    assert!(!table.contains_key(&bad.id));
    assert_outbox_empty(&redis, &v1);
    assert_outbox_empty(&redis, &v2);

    // The operator sees it, with PostgreSQL's reason.
    let parked = app
        .api
        .parked_orders(ADMIN_KEY, &Default::default())
        .await
        .expect(200);
    assert_eq!(parked.parked.len(), 1, "{parked:?}");
    assert_eq!(parked.next_cursor, None);
    let event = &parked.parked[0];
    assert_eq!(
        (event.voucher_id.as_str(), event.order.id.as_str()),
        (v1.as_str(), bad.id.as_str())
    );
    assert_eq!(
        (event.order.version, event.order.user_id.as_str()),
        (1, bad.user_id.as_str())
    );
    assert_eq!(event.error.sqlstate, "23514");
    assert!(event.error.message.contains("not_this_buyer"), "{event:?}");
    let only_v2 = flashspin_testkit::api::ParkedQuery {
        voucher_id: Some(&v2),
        ..Default::default()
    };
    let none = app.api.parked_orders(ADMIN_KEY, &only_v2).await.expect(200);
    assert!(none.parked.is_empty() && none.next_cursor.is_none());
    for bad_query in [
        flashspin_testkit::api::ParkedQuery {
            voucher_id: Some("x"),
            ..Default::default()
        },
        flashspin_testkit::api::ParkedQuery {
            limit: Some(0),
            ..Default::default()
        },
        flashspin_testkit::api::ParkedQuery {
            cursor: Some("x"),
            ..Default::default()
        },
    ] {
        let refused = app.api.parked_orders(ADMIN_KEY, &bad_query).await;
        assert_eq!(refused.status, 400, "{bad_query:?}: {}", refused.text());
    }
    let refused = app.api.parked_orders("wrong", &Default::default()).await;
    assert_eq!(refused.status, 401);
    let refused = app.api.retry_parked_orders("wrong", None).await;
    assert_eq!(refused.status, 401);

    // Retried while the table still refuses it: parked again.
    let retried = app
        .api
        .retry_parked_orders(ADMIN_KEY, Some(&v1))
        .await
        .expect(200);
    assert_eq!((retried.moved, retried.events, retried.parked), (1, 0, 1));
    assert_eq!(writes_by_order(&pg).len(), 7);

    // Once the cause is fixed, a retry writes it exactly once.
    pg.psql("ALTER TABLE voucher_order DROP CONSTRAINT not_this_buyer");
    let retried = app
        .api
        .retry_parked_orders(ADMIN_KEY, None)
        .await
        .expect(200);
    assert!(retried.enabled);
    assert_eq!(
        (
            retried.vouchers,
            retried.moved,
            retried.events,
            retried.parked
        ),
        (2, 1, 1, 0)
    );
    let table = rows(&pg);
    assert_eq!(table.len(), 8);
    assert_eq!(table[&bad.id].status, "unpaid");
    let writes = writes_by_order(&pg);
    assert_eq!(writes.len(), 8);
    assert!(writes.values().all(|&n| n == 1), "{writes:?}");
    let parked = app
        .api
        .parked_orders(ADMIN_KEY, &Default::default())
        .await
        .expect(200);
    assert!(parked.parked.is_empty());
    let drained = app.api.export_orders(ADMIN_KEY).await.expect(200);
    assert_eq!((drained.events, drained.parked), (0, 0));
    assert_outbox_empty(&redis, &v1);
}

/// Whether a session holds `voucher_order` in ACCESS EXCLUSIVE mode.
fn table_locked(pg: &PostgresServer) -> bool {
    let held = pg.psql(
        "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
         WHERE c.relname = 'voucher_order' AND l.mode = 'AccessExclusiveLock' AND l.granted",
    );
    held.trim() != "0"
}

#[tokio::test]
async fn a_locked_table_stops_the_exporter_for_its_lock_timeout_only_and_loses_nothing() {
    let redis = RedisServer::start();
    let sink = SmsSink::start().await;
    let pg = PostgresServer::start();
    log_writes(&pg);
    let app = config(&redis, &sink, &pg).start().await;
    let exporter_app = exporter(&redis, &pg).await;
    let voucher_id = create_voucher(&app, 100).await;
    let tokens = users(&app, &sink, 13000, 21).await;

    // A shop tool locks the table and keeps it.
    let lock = pg.hold("BEGIN; LOCK TABLE voucher_order IN ACCESS EXCLUSIVE MODE;");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !table_locked(&pg) {
        assert!(Instant::now() < deadline, "the lock was never taken");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let orders = buy_all(&app, &tokens[..20], &voucher_id, 20).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while pending(&redis, &voucher_id) == 0 {
        assert!(Instant::now() < deadline, "the exporter never took a batch");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = Instant::now();

    // Its statement waits for the lock no longer than the lock timeout (5
    // s): the run gives up, says why, and leaves every event in Redis.
    let mut logs = exporter_app.logs();
    while !logs.contains("55P03") && took.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        logs = exporter_app.logs();
    }
    let gave_up = took.elapsed();
    assert!(
        logs.contains("55P03"),
        "the exporter never gave up:\n{logs}"
    );
    assert!(
        gave_up < Duration::from_secs(9),
        "gave up after {gave_up:?}"
    );
    let outbox = format!("{}:outbox", voucher_tag(&voucher_id));
    let len: i64 = redis::cmd("XLEN")
        .arg(&outbox)
        .query(&mut redis.conn())
        .unwrap();
    assert_eq!(len, 20, "every event waits in Redis");

    // Once the lock is gone, the next change wakes it and everything lands,
    // each order written once.
    drop(lock);
    tokio::time::sleep(WAKE_FLAG_LIFE).await;
    let last = buy_all(&app, &tokens[20..], &voucher_id, 1).await;
    let all: Vec<Order> = orders.iter().chain(&last).cloned().collect();
    let (rows, _) = wait_rows(&pg, Duration::from_secs(15), |r| {
        all_have(r, &all, "unpaid")
    })
    .await;
    assert!(
        all_have(&rows, &all, "unpaid"),
        "{} rows\n{}",
        rows.len(),
        exporter_app.logs()
    );
    assert_eq!(rows.len(), 21);
    let writes = writes_by_order(&pg);
    assert_eq!(writes.len(), 21);
    assert!(writes.values().all(|&n| n == 1), "{writes:?}");
    assert_outbox_empty(&redis, &voucher_id);
}

#[tokio::test]
async fn the_drain_gives_up_on_a_locked_table_within_the_lock_timeout() {
    let redis = RedisServer::start();
    let sink = SmsSink::start().await;
    let pg = PostgresServer::start();
    log_writes(&pg);
    // No exporter app: the drain alone (so on Spin too, whose `up` this
    // harness cannot start for an app of Redis triggers alone).
    let app = config(&redis, &sink, &pg).start().await;
    let voucher_id = create_voucher(&app, 10).await;
    let tokens = users(&app, &sink, 15000, 3).await;
    let orders = buy_all(&app, &tokens, &voucher_id, 3).await;

    let lock = pg.hold("BEGIN; LOCK TABLE voucher_order IN ACCESS EXCLUSIVE MODE;");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !table_locked(&pg) {
        assert!(Instant::now() < deadline, "the lock was never taken");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = Instant::now();
    let refused = app.api.export_orders(ADMIN_KEY).await;
    let took = started.elapsed();
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(refused.error_code(), "database_unavailable");
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(9),
        "{took:?}"
    );
    assert_eq!(pending(&redis, &voucher_id), 3, "the events wait in Redis");

    drop(lock);
    let drained = app.api.export_orders(ADMIN_KEY).await.expect(200);
    assert_eq!((drained.events, drained.claimed), (3, 3));
    assert!(all_have(&rows(&pg), &orders, "unpaid"));
    let writes = writes_by_order(&pg);
    assert_eq!(writes.len(), 3);
    assert!(writes.values().all(|&n| n == 1), "{writes:?}");
    assert_outbox_empty(&redis, &voucher_id);
}
