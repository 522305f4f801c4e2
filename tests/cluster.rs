//! The shop on a real Redis Cluster (3 primaries on loopback), given one
//! node's address: sign-in, a sale under concurrency with exact counts,
//! the buyer's orders, a lottery period, and how many redirections the
//! routing costs once the layout is known.

use std::collections::{BTreeSet, HashSet};

use flashspin_core::time::format_rfc3339;
use flashspin_testkit::RedisCluster;
use flashspin_testkit::api::{NewGoods, NewVoucher, Order, OrdersQuery};

use crate::harness::{ADMIN_KEY, App, AppConfig, SmsSink, app_manifest};

/// The shop on `cluster`, told it is one, its nodes admitted by one
/// allowed-hosts pattern.
async fn shop_on(cluster: &RedisCluster, sink: &SmsSink) -> App {
    config_on(cluster, sink).start().await
}

fn config_on(cluster: &RedisCluster, sink: &SmsSink) -> AppConfig {
    AppConfig::new(app_manifest())
        .var("redis_address", cluster.seed_url())
        .var("redis_cluster", "true")
        .var("redis_cluster_hosts", "redis://127.0.0.1:*")
        .var("redis_shards", "16")
        .var("sms_webhook_origin", sink.origin())
        .var("admin_key", ADMIN_KEY)
        .var("rate_limit_user", "1000/1")
        .var("rate_limit_ip", "100000/1")
        .var("rate_limit_global", "100000/1")
        .var("code_hourly_limit_per_ip", "100000")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn voucher(stock: i64) -> NewVoucher {
    let now = now_ms() / 1000 * 1000;
    NewVoucher {
        shop_id: "1".into(),
        title: "50 off 100".into(),
        sub_title: None,
        rules: None,
        pay_value: 5000,
        actual_value: 10000,
        stock,
        begin_time: format_rfc3339(now - 5000),
        end_time: format_rfc3339(now + 3_600_000),
        parts: None,
    }
}

/// The sum over the nodes of an `INFO` counter line `prefix<n>`.
fn sum_info(cluster: &RedisCluster, section: &str, prefix: &str) -> u64 {
    cluster
        .nodes
        .iter()
        .filter(|n| n.is_running())
        .map(|node| {
            let info: String = redis::cmd("INFO")
                .arg(section)
                .query(&mut node.conn())
                .unwrap();
            info.lines()
                .find_map(|l| l.strip_prefix(prefix))
                .and_then(|rest| rest.split([',', '\r']).next()?.trim().parse().ok())
                .unwrap_or(0)
        })
        .sum()
}

/// `MOVED` and `ASK` replies the nodes have sent.
fn redirections(cluster: &RedisCluster) -> u64 {
    sum_info(cluster, "errorstats", "errorstat_MOVED:count=")
        + sum_info(cluster, "errorstats", "errorstat_ASK:count=")
}

#[tokio::test]
async fn a_sale_on_a_cluster_sells_exactly_its_stock() {
    let cluster = RedisCluster::start(3, 0);
    let sink = SmsSink::start().await;
    let app = shop_on(&cluster, &sink).await;
    let phones: Vec<String> = (0..60).map(|i| format!("137{i:08}")).collect();
    let tokens: Vec<String> = app
        .api
        .sign_in_all(&sink, &phones, 10)
        .await
        .into_iter()
        .map(|s| s.token)
        .collect();
    let id = app
        .api
        .create_voucher(ADMIN_KEY, &voucher(20))
        .await
        .expect(201)
        .voucher
        .id;

    // 240 purchases at once: each of 60 users tries four times.
    let tasks: Vec<_> = (0..240)
        .map(|i| tokio::spawn(app.api.buy_voucher(&tokens[i % 60], &id).into_future()))
        .collect();
    let mut created: Vec<Order> = Vec::new();
    for task in tasks {
        let reply = task.await.unwrap();
        match reply.status {
            201 => created.push(reply.body().order),
            409 => {}
            status => panic!("{status}: {}\n{}", reply.text(), app.logs()),
        }
    }
    assert_eq!(created.len(), 20);
    let buyers: HashSet<&str> = created.iter().map(|o| o.user_id.as_str()).collect();
    assert_eq!(buyers.len(), 20, "one order per user");
    assert_eq!(app.api.voucher(&id).await.ok().voucher.remaining, 0);

    // Each buyer sees their order, and only theirs.
    let mut listed = 0;
    for token in &tokens {
        let page = app.api.my_orders(token, &OrdersQuery::default()).await.ok();
        assert!(page.orders.len() <= 1);
        listed += page.orders.len();
    }
    assert_eq!(listed, 20);
}

#[tokio::test]
async fn a_hot_voucher_split_over_the_primaries_sells_exactly_its_stock() {
    let cluster = RedisCluster::start(3, 0);
    let sink = SmsSink::start().await;
    let app = shop_on(&cluster, &sink).await;
    let phones: Vec<String> = (0..90).map(|i| format!("135{i:08}")).collect();
    let tokens: Vec<String> = app
        .api
        .sign_in_all(&sink, &phones, 10)
        .await
        .into_iter()
        .map(|s| s.token)
        .collect();
    let hot = NewVoucher {
        parts: Some(3),
        ..voucher(30)
    };
    let id = app
        .api
        .create_voucher(ADMIN_KEY, &hot)
        .await
        .expect(201)
        .voucher
        .id;

    // 270 purchases at once: each of 90 users tries three times. Buyers
    // whose part runs out borrow from the others.
    let tasks: Vec<_> = (0..270)
        .map(|i| tokio::spawn(app.api.buy_voucher(&tokens[i % 90], &id).into_future()))
        .collect();
    let mut created: Vec<(usize, Order)> = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        let reply = task.await.unwrap();
        match reply.status {
            201 => created.push((i % 90, reply.body().order)),
            409 => {}
            status => panic!("{status}: {}\n{}", reply.text(), app.logs()),
        }
    }
    assert_eq!(created.len(), 30);
    let buyers: HashSet<&str> = created.iter().map(|(_, o)| o.user_id.as_str()).collect();
    assert_eq!(buyers.len(), 30, "one order per user");
    assert_eq!(app.api.voucher(&id).await.ok().voucher.remaining, 0);

    // A cancelled unit goes back on sale, counted in `remaining`, and a
    // buyer of any part gets it: at once, or within the second a part
    // waits after finding every part empty.
    let (holder, order) = &created[0];
    app.api
        .cancel_order(&tokens[*holder], &order.id)
        .await
        .expect(200);
    assert_eq!(app.api.voucher(&id).await.ok().voucher.remaining, 1);
    let had: HashSet<usize> = created.iter().map(|(i, _)| *i).collect();
    let others: Vec<usize> = (0..90).filter(|i| !had.contains(i)).collect();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let mut bought = 0;
    for i in &others {
        match app.api.buy_voucher(&tokens[*i], &id).await.status {
            201 => bought += 1,
            409 => {}
            status => panic!("{status}\n{}", app.logs()),
        }
    }
    assert_eq!(bought, 1);
    assert_eq!(app.api.voucher(&id).await.ok().voucher.remaining, 0);
}

#[tokio::test]
async fn a_lottery_period_on_a_cluster_gives_each_code_once() {
    let cluster = RedisCluster::start(3, 0);
    let sink = SmsSink::start().await;
    let app = shop_on(&cluster, &sink).await;
    let phones: Vec<String> = (0..10).map(|i| format!("136{i:08}")).collect();
    let sessions = app.api.sign_in_all(&sink, &phones, 10).await;
    let goods = NewGoods {
        title: "Pen".into(),
        total_shares: 30,
        share_price: 100,
        code_base: None,
        max_periods: None,
    };
    let goods = app
        .api
        .create_goods(ADMIN_KEY, &goods)
        .await
        .expect(201)
        .goods;
    let tasks: Vec<_> = sessions
        .iter()
        .map(|s| {
            tokio::spawn(
                app.api
                    .buy_shares(&s.token, &goods.id, 3, None)
                    .into_future(),
            )
        })
        .collect();
    let mut codes = BTreeSet::new();
    for task in tasks {
        let purchase = task.await.unwrap().expect(201).purchase;
        assert_eq!(purchase.period, 1);
        for code in purchase.codes {
            assert!(codes.insert(code), "code {code} given twice");
        }
    }
    assert_eq!(codes, (10000002..10000032).collect());
}

#[tokio::test]
async fn once_the_layout_is_known_requests_go_straight_to_their_node() {
    let cluster = RedisCluster::start(3, 0);
    let sink = SmsSink::start().await;
    let app = shop_on(&cluster, &sink).await;
    let phones: Vec<String> = (0..20).map(|i| format!("135{i:08}")).collect();
    let tokens: Vec<String> = app
        .api
        .sign_in_all(&sink, &phones, 5)
        .await
        .into_iter()
        .map(|s| s.token)
        .collect();
    let id = app
        .api
        .create_voucher(ADMIN_KEY, &voucher(1000))
        .await
        .expect(201)
        .voucher
        .id;
    let before = redirections(&cluster);
    let requests = 200;
    for i in 0..requests {
        let reply = app.api.buy_voucher(&tokens[i % 20], &id).await;
        assert!([201, 409].contains(&reply.status), "{}", reply.text());
    }
    let redirected = redirections(&cluster) - before;
    assert!(
        redirected * 10 <= requests as u64,
        "{redirected} redirections for {requests} requests"
    );
}

/// Slots move while the sale runs: the voucher's slot and a third of the
/// cluster go from one primary to another (`redis-cli --cluster reshard`,
/// keys and all). Every purchase is answered (201, 409, or 503 while a
/// key is mid-move); afterwards the stock adds up exactly, every
/// acknowledged order is where its buyer finds it, and nobody holds two.
#[tokio::test]
async fn a_reshard_during_a_sale_loses_and_oversells_nothing() {
    let cluster = std::sync::Arc::new(RedisCluster::start(3, 0));
    let sink = SmsSink::start().await;
    let app = shop_on(&cluster, &sink).await;
    let phones: Vec<String> = (0..150).map(|i| format!("134{i:08}")).collect();
    let tokens: Vec<String> = app
        .api
        .sign_in_all(&sink, &phones, 10)
        .await
        .into_iter()
        .map(|s| s.token)
        .collect();
    let id = app
        .api
        .create_voucher(ADMIN_KEY, &voucher(100))
        .await
        .expect(201)
        .voucher
        .id;
    let slot = flashspin_core::cluster::slot(format!("v:{id}").as_bytes());
    let from = cluster.primary_of(slot);
    let to = cluster
        .primaries()
        .into_iter()
        .find(|&p| p != from)
        .unwrap();
    let moving = cluster.clone();
    let reshard = tokio::task::spawn_blocking(move || moving.reshard(from, to, 5461));

    let mut created: Vec<Order> = Vec::new();
    let mut unavailable = 0;
    let mut round = 0;
    loop {
        let done = reshard.is_finished();
        let tasks: Vec<_> = (0..30)
            .map(|i| {
                let token = &tokens[(round * 30 + i) % tokens.len()];
                tokio::spawn(app.api.buy_voucher(token, &id).into_future())
            })
            .collect();
        for task in tasks {
            let reply = task.await.unwrap();
            match reply.status {
                201 => created.push(reply.body().order),
                409 => {}
                503 => unavailable += 1,
                status => panic!("{status}: {}\n{}", reply.text(), app.logs()),
            }
        }
        round += 1;
        if done {
            break;
        }
    }
    reshard.await.unwrap();
    assert_eq!(cluster.primary_of(slot), to, "the voucher's slot moved");
    assert!(
        round > 2,
        "the sale ran through the reshard ({round} rounds)"
    );
    eprintln!(
        "{round} rounds, {} purchases, {unavailable} answered 503, {} redirections",
        created.len(),
        redirections(&cluster)
    );
    let mut causes: Vec<String> = app
        .logs()
        .lines()
        .filter(|l| l.contains("unavailable"))
        .map(|l| {
            l.chars()
                .filter(|c| !c.is_ascii_digit())
                .take(120)
                .collect()
        })
        .collect();
    causes.sort();
    causes.dedup();
    eprintln!("503 causes: {causes:#?}");

    settle_and_count(&app, &tokens, &id, created, unavailable).await;
}

/// The voucher's primary is killed in the middle of a sale (SIGKILL, every
/// node writing its append-only file with `fsync` always); its replica
/// takes over after the node timeout. Purchases get 503 while no node
/// serves the slot, and afterwards: exact stock, one order per user, and
/// every order a buyer was told of is there, because each waited for its
/// replica (`redis_wait_replicas`) before it was acknowledged.
#[tokio::test]
async fn a_failover_during_a_sale_keeps_every_acknowledged_order() {
    let mut cluster = RedisCluster::start_durable(3, 1, "always");
    let sink = SmsSink::start().await;
    let app = config_on(&cluster, &sink)
        .var("redis_wait_replicas", "1")
        .start()
        .await;
    let phones: Vec<String> = (0..150).map(|i| format!("133{i:08}")).collect();
    let tokens: Vec<String> = app
        .api
        .sign_in_all(&sink, &phones, 10)
        .await
        .into_iter()
        .map(|s| s.token)
        .collect();
    // Split over three parts, one on each primary: the killed primary
    // holds one part, whose buyers get 503s while the others borrow.
    let split = NewVoucher {
        parts: Some(3),
        ..voucher(100)
    };
    let id = app
        .api
        .create_voucher(ADMIN_KEY, &split)
        .await
        .expect(201)
        .voucher
        .id;
    let slot = flashspin_core::cluster::slot(format!("v:{id}").as_bytes());
    let primary = cluster.primary_of(slot);

    let mut created: Vec<Order> = Vec::new();
    let mut unavailable = 0;
    let mut killed = false;
    for round in 0..40 {
        if round == 3 {
            cluster.kill(primary);
            killed = true;
        }
        let tasks: Vec<_> = (0..30)
            .map(|i| {
                let token = &tokens[(round * 30 + i) % tokens.len()];
                tokio::spawn(app.api.buy_voucher(token, &id).into_future())
            })
            .collect();
        for task in tasks {
            let reply = task.await.unwrap();
            match reply.status {
                201 => created.push(reply.body().order),
                409 => {}
                503 => unavailable += 1,
                status => panic!("{status}: {}\n{}", reply.text(), app.logs()),
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(killed);
    cluster.wait_ok();
    assert_ne!(cluster.primary_of(slot), primary, "the replica took over");
    assert!(unavailable > 0, "no request met the failover");

    settle_and_count(&app, &tokens, &id, created, unavailable).await;
}

/// Orders on a cluster reach PostgreSQL: two vouchers (on their own
/// slots, so most likely on two primaries), bought and one of them paid;
/// the exporter, its own app subscribed through the seed node, is woken by
/// scripts on every primary (a cluster passes `PUBLISH` to all its nodes)
/// and writes each order once, in its last state.
#[tokio::test]
async fn orders_on_a_cluster_reach_postgresql_once() {
    use flashspin_testkit::PostgresServer;
    use std::time::{Duration, Instant};

    const SECRET: &str = "cluster-webhook-secret";
    let cluster = RedisCluster::start(3, 0);
    let sink = SmsSink::start().await;
    let pg = PostgresServer::start();
    let pg_host = format!("127.0.0.1:{}", pg.port);
    let app = config_on(&cluster, &sink)
        .var("payment_webhook_secret", SECRET)
        .var("pg_address", pg.url())
        .var("pg_host", &pg_host)
        .start()
        .await;
    let _exporter = AppConfig::new(crate::harness::export_manifest())
        .var("redis_address", cluster.seed_url())
        .var("redis_cluster", "true")
        .var("redis_cluster_hosts", "redis://127.0.0.1:*")
        .var("pg_address", pg.url())
        .var("pg_host", &pg_host)
        .start()
        .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, subscribers): (String, i64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(flashspin_core::keys::ORDER_EXPORT_CHANNEL)
            .query(&mut cluster.nodes[0].conn())
            .unwrap();
        if subscribers > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the exporter never subscribed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let phones: Vec<String> = (0..30).map(|i| format!("132{i:08}")).collect();
    let tokens: Vec<String> = app
        .api
        .sign_in_all(&sink, &phones, 10)
        .await
        .into_iter()
        .map(|s| s.token)
        .collect();
    let mut orders: Vec<Order> = Vec::new();
    let mut vouchers = Vec::new();
    // The first voucher's stock is split over three parts: its orders come
    // from three outboxes, each waking the exporter.
    for parts in [Some(3), None] {
        let id = app
            .api
            .create_voucher(
                ADMIN_KEY,
                &NewVoucher {
                    parts,
                    ..voucher(30)
                },
            )
            .await
            .expect(201)
            .voucher
            .id;
        for token in &tokens {
            orders.push(app.api.buy_voucher(token, &id).await.expect(201).order);
        }
        vouchers.push(id);
    }
    let now = (now_ms() / 1000) as u64;
    for order in orders.iter().filter(|o| o.voucher_id == vouchers[0]) {
        let event = serde_json::json!({
            "event_id": format!("pay-{}", order.id),
            "type": "payment.succeeded",
            "order_id": order.id,
            "amount": order.amount,
            "pay_type": "card",
        });
        app.api
            .payment_webhook(SECRET, now, &event)
            .await
            .expect(200);
    }

    let want = "30|unpaid\n30|paid";
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut seen = String::new();
    while Instant::now() < deadline {
        seen = pg
            .try_psql("SELECT count(DISTINCT id), status FROM voucher_order GROUP BY status ORDER BY status DESC")
            .unwrap_or_default();
        if seen.trim() == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen.trim(), want);
    let total = pg.psql("SELECT count(*) FROM voucher_order");
    assert_eq!(total.trim(), "60", "one row per order");
}

/// After a sale that met trouble: every user asks once more, then the
/// counts must be exact. One order per user, the orders listed are what
/// the stock of 100 lost and all of it, and every order a buyer was told
/// of (`created`) is listed.
async fn settle_and_count(
    app: &App,
    tokens: &[String],
    id: &str,
    mut created: Vec<Order>,
    unavailable: usize,
) {
    for token in tokens {
        let reply = app.api.buy_voucher(token, id).await;
        match reply.status {
            201 => created.push(reply.body().order),
            409 => {}
            status => panic!("{status} once settled: {}", reply.text()),
        }
    }
    let buyers: HashSet<&str> = created.iter().map(|o| o.user_id.as_str()).collect();
    assert_eq!(buyers.len(), created.len(), "one order per user");
    let remaining = app.api.voucher(id).await.ok().voucher.remaining;
    let mut listed: Vec<String> = Vec::new();
    for token in tokens {
        let page = app.api.my_orders(token, &OrdersQuery::default()).await.ok();
        assert!(page.orders.len() <= 1);
        listed.extend(page.orders.into_iter().map(|o| o.id));
    }
    assert_eq!(
        listed.len() as i64,
        100 - remaining,
        "{unavailable} were 503"
    );
    assert!(listed.len() <= 100, "never more than the stock");
    assert_eq!(remaining, 0, "every buyer asked after the trouble");
    for order in &created {
        assert!(
            listed.contains(&order.id),
            "acknowledged order {} lost",
            order.id
        );
    }
}
