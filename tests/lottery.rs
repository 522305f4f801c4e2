//! The one-yuan lottery over HTTP: goods and periods, concurrent purchases
//! with partial fills, unique codes, the verifiable draw, the next period,
//! idempotent retries, bad input and outages.

use std::collections::BTreeSet;

use flashspin_core::lottery::{commitment_of, next_digest, winning_code};
use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{ADMIN_KEY, App, RedisServer, Reply, SmsSink, loose_config};
use crate::login::sign_in;

async fn lottery_app(redis: &RedisServer, sink: &SmsSink) -> App {
    loose_config(redis, sink).start().await
}

async fn create_goods(app: &App, body: Value) -> Value {
    let reply = Reply::from(
        app.http
            .post(app.url("/api/admin/lottery"))
            .bearer_auth(ADMIN_KEY)
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    reply.json()["goods"].clone()
}

async fn buy(app: &App, goods: &str, token: &str, count: Value, key: Option<&str>) -> Reply {
    let mut request = app
        .http
        .post(app.url(&format!("/api/lottery/{goods}/shares")))
        .bearer_auth(token)
        .json(&json!({"count": count}));
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    Reply::from(request.send().await.unwrap()).await
}

/// Every code of every purchase in a `{"purchases": [...]}` answer.
fn codes_in(answer: &Value) -> Vec<u64> {
    answer["purchases"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| {
            p["codes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_u64().unwrap())
        })
        .collect()
}

/// Shares sold so far in the goods' open period.
async fn sold(app: &App, goods: &str) -> Value {
    app.get(&format!("/api/lottery/{goods}")).await.json()["goods"]["period"]["sold"].clone()
}

fn code(reply: &Reply) -> String {
    reply.json()["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn users(app: &App, sink: &SmsSink, n: usize) -> Vec<String> {
    let mut tokens = Vec::new();
    for chunk in (0..n).collect::<Vec<_>>().chunks(20) {
        let logins = chunk.iter().map(|i| {
            let phone = format!("137{:08}", i);
            async move { sign_in(app, sink, &phone).await }
        });
        tokens.extend(futures::future::join_all(logins).await);
    }
    tokens
}

#[tokio::test]
async fn goods_open_with_a_committed_period() {
    let redis = RedisServer::start();
    let sink = SmsSink::start().await;
    let app = lottery_app(&redis, &sink).await;
    let goods = create_goods(
        &app,
        json!({"title": "Phone", "total_shares": 6432, "share_price": 100}),
    )
    .await;
    assert_eq!(goods["title"], "Phone");
    assert_eq!(goods["total_shares"], 6432);
    assert_eq!(goods["code_base"], 10_000_001);
    let period = &goods["period"];
    assert_eq!(
        (period["number"].as_u64(), period["sold"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(period["remaining"], 6432);
    assert_eq!(period["status"], "selling");
    assert_eq!(period["commitment"].as_str().unwrap().len(), 64);

    let id = goods["id"].as_str().unwrap();
    let one = app.get(&format!("/api/lottery/{id}")).await;
    assert_eq!(one.json()["goods"], goods);
    let all = app.get("/api/lottery").await.json();
    assert_eq!(all["goods"], json!([goods]));
    let p1 = app
        .get(&format!("/api/lottery/{id}/periods/1"))
        .await
        .json();
    assert!(
        p1["period"].get("draw").is_none(),
        "no draw before sell-out"
    );
    assert!(
        !p1.to_string().contains("seed"),
        "the seed stays secret until the draw"
    );
    assert_eq!(
        app.get(&format!("/api/lottery/{id}/periods/2"))
            .await
            .status,
        404
    );

    // A ten-million-share period costs no more to open than a tiny one.
    let huge = create_goods(
        &app,
        json!({"title": "Car", "total_shares": 10_000_000, "share_price": 100}),
    )
    .await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{{g:{}}}*", huge["id"].as_str().unwrap()))
        .query(&mut redis.conn())
        .unwrap();
    assert_eq!(keys.len(), 2, "{keys:?}");
    let memory: i64 = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(format!("{{g:{}}}:p:1", huge["id"].as_str().unwrap()))
        .query(&mut redis.conn())
        .unwrap();
    assert!(memory < 1024, "{memory} bytes");
}

#[tokio::test]
async fn concurrent_buyers_get_every_code_once_and_the_draw_checks_out() {
    let redis = RedisServer::start();
    let sink = SmsSink::start().await;
    let app = lottery_app(&redis, &sink).await;
    let tokens = users(&app, &sink, 40).await;
    let goods = create_goods(
        &app,
        json!({"title": "Bike", "total_shares": 2000, "share_price": 100}),
    )
    .await;
    let id = goods["id"].as_str().unwrap().to_string();
    let commitment_1 = goods["period"]["commitment"].as_str().unwrap().to_string();

    // 40 users each send 5 purchases of 9 to 30 shares at once, 3,900 in
    // all. Every count is a multiple of 3 and 2,000 is not, so no sequence
    // of whole purchases can end exactly at the last share: whatever order
    // Redis runs them in, exactly one purchase is partly filled.
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let app_url = app.url(&format!("/api/lottery/{id}/shares"));
            let request = app
                .http
                .post(app_url)
                .bearer_auth(&tokens[i % 40])
                .json(&json!({"count": 3 * (3 + (i * 7) % 8)}));
            tokio::spawn(async move { Reply::from(request.send().await.unwrap()).await })
        })
        .collect();
    let mut purchases = Vec::new();
    for task in tasks {
        let reply = task.await.unwrap();
        assert_eq!(reply.status, 201, "{}", reply.text());
        purchases.push(reply.json()["purchase"].clone());
    }
    let period_1: Vec<&Value> = purchases.iter().filter(|p| p["period"] == 1).collect();
    let mut codes = BTreeSet::new();
    let mut allocated = 0;
    let mut partial = 0;
    for p in &period_1 {
        let got = p["codes"].as_array().unwrap();
        assert_eq!(got.len() as u64, p["allocated"].as_u64().unwrap());
        allocated += got.len();
        if p["allocated"] != p["requested"] {
            partial += 1;
        }
        for c in got {
            assert!(codes.insert(c.as_u64().unwrap()), "code {c} given twice");
        }
    }
    assert_eq!(allocated, 2000);
    let full: BTreeSet<u64> = (10_000_002..=10_000_001 + 2000).collect();
    assert_eq!(
        codes, full,
        "the sold-out period's codes are exactly the full range"
    );
    assert_eq!(
        partial, 1,
        "exactly one purchase took the last shares partly"
    );
    assert_eq!(
        period_1
            .iter()
            .filter(|p| p["period_sold_out"] == true)
            .count(),
        1
    );

    // The draw: the winner owns the winning code, and it can be recomputed.
    let drawn = app
        .get(&format!("/api/lottery/{id}/periods/1"))
        .await
        .json()["period"]
        .clone();
    assert_eq!(drawn["status"], "drawn");
    let draw = &drawn["draw"];
    let calc = &draw["calculation"];
    let seed = calc["seed"].as_str().unwrap();
    assert_eq!(calc["commitment"], commitment_1.as_str());
    assert_eq!(
        commitment_of(seed),
        commitment_1,
        "the revealed seed matches the commitment"
    );
    let winning = draw["winning_code"].as_u64().unwrap();
    assert_eq!(
        winning_code(
            seed,
            calc["purchases_digest"].as_str().unwrap(),
            2000,
            10_000_001
        ),
        winning
    );
    let (buyer, winner_purchase) = purchases
        .iter()
        .enumerate()
        .find(|(_, p)| {
            p["period"] == 1
                && p["codes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|c| c.as_u64() == Some(winning))
        })
        .expect("someone holds the winning code");
    assert_eq!(draw["winner_purchase_id"], winner_purchase["id"]);
    let winner = app
        .authed(Method::GET, "/api/me", &tokens[buyer % 40])
        .await
        .json();
    assert_eq!(
        draw["winner"]["id"], winner["user"]["id"],
        "the winner owns the winning code"
    );
    let buyers_in_1: BTreeSet<usize> = purchases
        .iter()
        .enumerate()
        .filter(|(_, p)| p["period"] == 1)
        .map(|(i, _)| i % 40)
        .collect();
    assert_eq!(draw["participants"], buyers_in_1.len());
    assert!(draw["winner"]["phone"].as_str().unwrap().contains("****"));

    // The digest is the chain of purchase records, in index order.
    let records: Vec<String> = redis::cmd("ZRANGE")
        .arg(format!("{{g:{id}}}:p:1:purchases"))
        .arg(0)
        .arg(-1)
        .query(&mut redis.conn())
        .unwrap();
    let digest = records
        .iter()
        .fold(String::new(), |d, r| next_digest(&d, r));
    assert_eq!(calc["purchases_digest"], digest.as_str());

    // Period 2 is open with a new commitment, and took the rest.
    let now = app.get(&format!("/api/lottery/{id}")).await.json()["goods"]["period"].clone();
    assert_eq!(now["number"], 2);
    assert_ne!(now["commitment"], commitment_1.as_str());
    let in_two: u64 = purchases
        .iter()
        .filter(|p| p["period"] == 2)
        .map(|p| p["allocated"].as_u64().unwrap())
        .sum();
    assert_eq!(now["sold"], in_two);

    // My codes match what the purchases returned.
    let mine = app
        .authed(
            Method::GET,
            &format!("/api/me/lottery?goods_id={id}&period=1"),
            &tokens[0],
        )
        .await
        .json();
    let my_codes: BTreeSet<u64> = codes_in(&mine).into_iter().collect();
    let expected: BTreeSet<u64> = purchases
        .iter()
        .enumerate()
        .filter(|(i, p)| i % 40 == 0 && p["period"] == 1)
        .flat_map(|(_, p)| {
            p["codes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_u64().unwrap())
        })
        .collect();
    assert_eq!(my_codes, expected);
}

#[tokio::test]
async fn the_last_period_sells_out_for_good() {
    let redis = RedisServer::start();
    let sink = SmsSink::start().await;
    let app = lottery_app(&redis, &sink).await;
    let token = sign_in(&app, &sink, "13812345678").await;
    let goods = create_goods(&app, json!({"title": "Pen", "total_shares": 3, "share_price": 100, "code_base": 500, "max_periods": 2})).await;
    let id = goods["id"].as_str().unwrap();
    let first = buy(&app, id, &token, json!(5), None).await;
    assert_eq!(first.status, 400, "more than total_shares");
    let first = buy(&app, id, &token, json!(3), None).await.json()["purchase"].clone();
    let codes: BTreeSet<u64> = first["codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_u64().unwrap())
        .collect();
    assert_eq!(codes, BTreeSet::from([501, 502, 503]));
    assert_eq!(first["period_sold_out"], true);
    let second = buy(&app, id, &token, json!(2), None).await.json()["purchase"].clone();
    assert_eq!(
        (second["period"].as_u64(), second["allocated"].as_u64()),
        (Some(2), Some(2))
    );
    let third = buy(&app, id, &token, json!(2), None).await.json()["purchase"].clone();
    assert_eq!(
        (
            third["allocated"].as_u64(),
            third["period_sold_out"].as_bool()
        ),
        (Some(1), Some(true))
    );
    let over = buy(&app, id, &token, json!(1), None).await;
    assert_eq!((over.status, code(&over)), (409, "sold_out".into()));
    let p2 = app
        .get(&format!("/api/lottery/{id}/periods/2"))
        .await
        .json();
    let winning = p2["period"]["draw"]["winning_code"].as_u64().unwrap();
    assert!((501..=503).contains(&winning));
    assert_eq!(
        app.get(&format!("/api/lottery/{id}/periods/3"))
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn a_retried_purchase_buys_nothing_more() {
    let redis = RedisServer::start();
    let sink = SmsSink::start().await;
    let app = lottery_app(&redis, &sink).await;
    let token = sign_in(&app, &sink, "13812345678").await;
    let other = sign_in(&app, &sink, "13812345679").await;
    let goods = create_goods(
        &app,
        json!({"title": "Cup", "total_shares": 100, "share_price": 100}),
    )
    .await;
    let id = goods["id"].as_str().unwrap();

    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let request = app
                .http
                .post(app.url(&format!("/api/lottery/{id}/shares")))
                .bearer_auth(&token)
                .header("idempotency-key", "retry-me")
                .json(&json!({"count": 4}));
            tokio::spawn(async move { Reply::from(request.send().await.unwrap()).await })
        })
        .collect();
    let mut bodies = BTreeSet::new();
    for task in tasks {
        let reply = task.await.unwrap();
        assert_eq!(reply.status, 201);
        bodies.insert(reply.json().to_string());
    }
    assert_eq!(bodies.len(), 1, "every retry got the first response");
    assert_eq!(sold(&app, id).await, 4);
    // Another key, or another user with the same key, is another purchase.
    assert_eq!(
        buy(&app, id, &token, json!(4), Some("another"))
            .await
            .status,
        201
    );
    assert_eq!(
        buy(&app, id, &other, json!(4), Some("retry-me"))
            .await
            .status,
        201
    );
    assert_eq!(sold(&app, id).await, 12);
}

#[tokio::test]
async fn bad_purchases_are_refused_and_change_nothing() {
    let redis = RedisServer::start();
    let sink = SmsSink::start().await;
    let app = lottery_app(&redis, &sink).await;
    let token = sign_in(&app, &sink, "13812345678").await;
    let goods = create_goods(
        &app,
        json!({"title": "Cup", "total_shares": 10, "share_price": 100}),
    )
    .await;
    let id = goods["id"].as_str().unwrap();
    for (count, status) in [
        (json!(0), 400),
        (json!(-3), 400),
        (json!(11), 400),
        (json!(2.5), 400),
        (json!("3"), 400),
        (json!(null), 400),
    ] {
        let reply = buy(&app, id, &token, count.clone(), None).await;
        assert_eq!(
            (reply.status, code(&reply)),
            (status, "invalid_request".into()),
            "{count}"
        );
    }
    let huge = app
        .http
        .post(app.url(&format!("/api/lottery/{id}/shares")))
        .bearer_auth(&token)
        .body(vec![b' '; 20_000])
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status(), 413);
    assert_eq!(buy(&app, "999", &token, json!(1), None).await.status, 404);
    assert_eq!(buy(&app, "abc", &token, json!(1), None).await.status, 404);
    let bad_key = buy(&app, id, &token, json!(1), Some(&"k".repeat(65))).await;
    assert_eq!(bad_key.status, 400);
    assert_eq!(buy(&app, id, "", json!(1), None).await.status, 401);
    assert_eq!(sold(&app, id).await, 0);
    let bad_goods = Reply::from(
        app.http
            .post(app.url("/api/admin/lottery"))
            .bearer_auth(ADMIN_KEY)
            .json(&json!({"title": "x", "total_shares": 0, "share_price": 1}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(bad_goods.status, 400);
    assert_eq!(
        app.get("/api/lottery").await.json()["goods"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn redis_down_gives_503() {
    let mut redis = RedisServer::start();
    let sink = SmsSink::start().await;
    let app = lottery_app(&redis, &sink).await;
    let token = sign_in(&app, &sink, "13812345678").await;
    let goods = create_goods(
        &app,
        json!({"title": "Cup", "total_shares": 10, "share_price": 100}),
    )
    .await;
    let id = goods["id"].as_str().unwrap();
    redis.stop();
    for reply in [
        buy(&app, id, &token, json!(1), None).await,
        app.get(&format!("/api/lottery/{id}")).await,
    ] {
        assert_eq!((reply.status, code(&reply)), (503, "unavailable".into()));
    }
}

#[tokio::test]
async fn my_codes_come_in_bounded_pages_across_goods() {
    let redis = RedisServer::start();
    let sink = SmsSink::start().await;
    let app = lottery_app(&redis, &sink).await;
    let token = sign_in(&app, &sink, "13812345678").await;
    let mut bought = BTreeSet::new();
    for _ in 0..2 {
        let goods = create_goods(
            &app,
            json!({"title": "g", "total_shares": 10000, "share_price": 1}),
        )
        .await;
        let id = goods["id"].as_str().unwrap().to_string();
        // 3 purchases of 600: 1,800 codes per goods, more than one page.
        for _ in 0..3 {
            let reply = buy(&app, &id, &token, json!(600), None).await;
            assert_eq!(reply.status, 201, "{}", reply.text());
            let codes = reply.json()["purchase"]["codes"].clone();
            bought.extend(
                codes
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c.as_u64().unwrap()),
            );
        }
    }
    let mut listed = Vec::new();
    let mut pages = 0;
    let mut path = "/api/me/lottery".to_string();
    loop {
        let page = app.authed(Method::GET, &path, &token).await;
        assert_eq!(page.status, 200, "{}", page.text());
        let page = page.json();
        pages += 1;
        let codes = codes_in(&page);
        assert!(codes.len() <= 1000, "page {pages}: {} codes", codes.len());
        listed.extend(codes);
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/me/lottery?cursor={cursor}"),
            None => break,
        }
        assert!(pages < 50, "paging does not end");
    }
    assert_eq!(listed.len(), 3600, "each code once");
    assert_eq!(listed.iter().copied().collect::<BTreeSet<_>>(), bought);
    assert!(pages >= 4, "{pages}");
}
