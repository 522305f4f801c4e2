//! The one-yuan lottery over HTTP: goods and periods, concurrent purchases
//! with partial fills, unique codes, the draw checked from the public
//! purchase records alone, receipts and pseudonyms, the next period,
//! idempotent retries, bad input and outages.

use std::collections::{BTreeMap, BTreeSet};

use flashspin_core::lottery::{CodePermutation, commitment_of, next_digest, winning_code};
use flashspin_testkit::api::{
    Answer, Goods, LotteryQuery, NewGoods, PageQuery, PeriodRecord, PeriodStatus, Purchase,
    PurchaseBody, Session,
};
use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{ADMIN_KEY, App, RedisServer, SmsSink, loose_config};

async fn lottery_app(redis: &RedisServer, sink: &SmsSink) -> App {
    loose_config(redis, sink).start().await
}

fn new_goods(title: &str, total_shares: i64, share_price: i64) -> NewGoods {
    NewGoods {
        title: title.into(),
        total_shares,
        share_price,
        code_base: None,
        max_periods: None,
    }
}

async fn create_goods(app: &App, body: &NewGoods) -> Goods {
    app.api
        .create_goods(ADMIN_KEY, body)
        .await
        .expect(201)
        .goods
}

async fn buy(
    app: &App,
    goods: &str,
    token: &str,
    count: i64,
    key: Option<&str>,
) -> Answer<PurchaseBody> {
    app.api.buy_shares(token, goods, count, key).await
}

/// A purchase whose count is any JSON, to try bad ones.
async fn buy_count(app: &App, goods: &str, token: &str, count: &Value) -> Answer<Value> {
    app.api
        .request(Method::POST, &format!("/api/lottery/{goods}/shares"))
        .bearer(token)
        .json(&json!({"count": count}))
        .await
}

/// Shares sold so far in the goods' open period.
async fn sold(app: &App, goods: &str) -> u64 {
    app.api.goods(goods).await.ok().goods.period.sold
}

fn phone(i: usize) -> String {
    format!("137{i:08}")
}

async fn sessions(app: &App, sink: &SmsSink, n: usize) -> Vec<Session> {
    let phones: Vec<String> = (0..n).map(phone).collect();
    app.api.sign_in_all(sink, &phones, 20).await
}

/// Every record of a period from the public list, `limit` at a time, with
/// no token; checks that only the last page has no cursor.
async fn public_records(app: &App, goods: &str, n: u64, limit: u32) -> Vec<PeriodRecord> {
    let mut records = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let query = PageQuery {
            limit: Some(limit),
            cursor: cursor.as_deref(),
        };
        let page = app.api.period_purchases(goods, n, &query).await.expect(200);
        assert!(page.purchases.len() <= limit as usize);
        records.extend(page.purchases);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return records,
        }
        assert!(records.len() < 100_000, "paging does not end");
    }
}

#[tokio::test]
async fn goods_open_with_a_committed_period() {
    let redis = RedisServer::start();
    let sink = SmsSink::start().await;
    let app = lottery_app(&redis, &sink).await;
    let goods = create_goods(&app, &new_goods("Phone", 6432, 100)).await;
    assert_eq!(goods.title, "Phone");
    assert_eq!(goods.total_shares, 6432);
    assert_eq!(goods.code_base, 10_000_001);
    let period = &goods.period;
    assert_eq!((period.number, period.sold), (1, 0));
    assert_eq!(period.remaining, 6432);
    assert_eq!(period.status, PeriodStatus::Selling);
    assert_eq!(period.commitment.len(), 64);

    let id = goods.id.as_str();
    let one = app.api.goods(id).await;
    assert_eq!(one.body().goods, goods);
    let all = app.api.lottery().await.body();
    assert_eq!(all.goods, vec![goods.clone()]);
    let p1 = app.api.period(id, 1).await;
    assert!(p1.body().period.draw.is_none(), "no draw before sell-out");
    assert!(
        !p1.text().contains("seed"),
        "the seed stays secret until the draw"
    );
    assert_eq!(app.api.period(id, 2).await.status, 404);

    // A ten-million-share period costs no more to open than a tiny one.
    let huge = create_goods(&app, &new_goods("Car", 10_000_000, 100)).await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{{g:{}}}*", huge.id))
        .query(&mut redis.conn())
        .unwrap();
    assert_eq!(keys.len(), 2, "{keys:?}");
    let memory: i64 = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(format!("{{g:{}}}:p:1", huge.id))
        .query(&mut redis.conn())
        .unwrap();
    assert!(memory < 1024, "{memory} bytes");
}

#[tokio::test]
async fn concurrent_buyers_get_every_code_once_and_the_draw_checks_out() {
    let redis = RedisServer::start();
    let sink = SmsSink::start().await;
    let app = lottery_app(&redis, &sink).await;
    let sessions = sessions(&app, &sink, 40).await;
    let tokens: Vec<String> = sessions.iter().map(|s| s.token.clone()).collect();
    let goods = create_goods(&app, &new_goods("Bike", 2000, 100)).await;
    let id = goods.id.clone();
    let commitment_1 = goods.period.commitment.clone();

    // 40 users each send 5 purchases of 9 to 30 shares at once, 3,900 in
    // all. Every count is a multiple of 3 and 2,000 is not, so no sequence
    // of whole purchases can end exactly at the last share: whatever order
    // Redis runs them in, exactly one purchase is partly filled.
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let count = 3 * (3 + (i * 7) % 8) as i64;
            let request = app.api.buy_shares(&tokens[i % 40], &id, count, None);
            tokio::spawn(request.into_future())
        })
        .collect();
    let mut purchases: Vec<Purchase> = Vec::new();
    for task in tasks {
        let reply = task.await.unwrap();
        purchases.push(reply.expect(201).purchase);
    }
    let period_1: Vec<&Purchase> = purchases.iter().filter(|p| p.period == 1).collect();
    let mut codes = BTreeSet::new();
    let mut allocated = 0;
    let mut partial = 0;
    for p in &period_1 {
        let got = &p.codes;
        assert_eq!(got.len() as u64, p.allocated);
        allocated += got.len();
        if p.allocated != p.requested {
            partial += 1;
        }
        for c in got {
            assert!(codes.insert(*c), "code {c} given twice");
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
    assert_eq!(period_1.iter().filter(|p| p.period_sold_out).count(), 1);

    // The draw, checked from the public list and the period's
    // `calculation` alone: the chain of records, the winning code, the
    // winner's purchase.
    let drawn = app.api.period(&id, 1).await.body().period;
    assert_eq!(drawn.status, PeriodStatus::Drawn);
    let draw = drawn.draw.as_ref().expect("a drawn period shows its draw");
    let calc = &draw.calculation;
    let seed = calc.seed.as_str();
    assert_eq!(calc.commitment, commitment_1);
    assert_eq!(
        commitment_of(seed),
        commitment_1,
        "the revealed seed matches the commitment"
    );
    let records = public_records(&app, &id, 1, 37).await;
    assert_eq!(records, public_records(&app, &id, 1, 100).await);
    let mut digest = String::new();
    let mut next_index = 0;
    for r in &records {
        digest = next_digest(&digest, &r.record);
        assert_eq!(r.digest, digest, "the digest after {}", r.record);
        let fields: Vec<&str> = r.record.split('|').collect();
        assert_eq!(fields.len(), 5, "{}", r.record);
        assert_eq!(
            fields[2..4],
            [r.codes_from.to_string(), r.count.to_string()]
        );
        assert_eq!(r.codes_from, next_index, "records in chain order");
        next_index += r.count;
    }
    assert_eq!(next_index, calc.total_shares);
    assert_eq!(calc.purchases_digest, digest);
    let winning = winning_code(seed, &digest, calc.total_shares, calc.code_base);
    assert_eq!(draw.winning_code, winning);
    let index =
        CodePermutation::from_seed(seed, calc.total_shares).backward(winning - calc.code_base - 1);
    let holder = records
        .iter()
        .find(|r| r.codes_from <= index && index < r.codes_from + r.count)
        .expect("a record holds the winning share");
    assert_eq!(
        holder.record.split('|').next(),
        Some(draw.winner_purchase_id.as_str())
    );

    // What the buyers were told agrees: the record holding the winning
    // share is a purchase that got the winning code, and every receipt is
    // in the list.
    let (buyer, winner_purchase) = purchases
        .iter()
        .enumerate()
        .find(|(_, p)| p.period == 1 && p.codes.contains(&winning))
        .expect("someone holds the winning code");
    assert_eq!(draw.winner_purchase_id, winner_purchase.id);
    assert_eq!(
        draw.winner.id,
        sessions[buyer % 40].user.id,
        "the winner owns the winning code"
    );
    let listed: BTreeMap<&str, &str> = records
        .iter()
        .map(|r| (r.record.as_str(), r.digest.as_str()))
        .collect();
    assert_eq!(listed.len(), period_1.len());
    for p in &period_1 {
        assert_eq!(p.commitment, commitment_1, "the receipt's commitment");
        assert_eq!(listed.get(p.record.as_str()), Some(&p.digest.as_str()));
        assert_eq!(p.record.split('|').next(), Some(p.id.as_str()));
    }
    let buyers_in_1: BTreeSet<usize> = purchases
        .iter()
        .enumerate()
        .filter(|(_, p)| p.period == 1)
        .map(|(i, _)| i % 40)
        .collect();
    assert_eq!(draw.participants, buyers_in_1.len() as u64);
    assert!(draw.winner.phone.contains("****"));

    // Records name no buyer by id or phone, a user has one pseudonym per
    // period, and the one a user sees in their own list is the one in
    // their records.
    let user_ids: BTreeSet<&str> = sessions.iter().map(|s| s.user.id.as_str()).collect();
    let mut pseudonyms = BTreeSet::new();
    for (i, session) in sessions.iter().enumerate() {
        let query = LotteryQuery {
            goods_id: Some(&id),
            ..LotteryQuery::default()
        };
        let mine = app.api.my_lottery(&session.token, &query).await.body();
        assert_eq!(mine.purchases.len(), 5, "user {i}");
        let theirs: BTreeSet<(u64, &str)> = mine
            .purchases
            .iter()
            .map(|p| (p.period, p.pseudonym.as_str()))
            .collect();
        let periods: BTreeSet<u64> = theirs.iter().map(|&(n, _)| n).collect();
        assert_eq!(theirs.len(), periods.len(), "user {i}: one per period");
        for &(_, pseudonym) in &theirs {
            assert!(
                pseudonyms.insert(pseudonym.to_string()),
                "pseudonyms differ"
            );
            assert_eq!(pseudonym.len(), 16);
            assert!(pseudonym.bytes().all(|b| b.is_ascii_hexdigit()));
        }
        for p in purchases.iter().skip(i).step_by(40) {
            let pseudonym = p.record.split('|').nth(1).unwrap();
            assert!(theirs.contains(&(p.period, pseudonym)), "{}", p.record);
        }
    }
    for r in &records {
        let buyer = r.record.split('|').nth(1).unwrap();
        assert!(pseudonyms.contains(buyer), "{}", r.record);
        assert!(!user_ids.contains(buyer), "{}", r.record);
        for i in 0..40 {
            assert!(!r.record.contains(&phone(i)), "{}", r.record);
        }
    }

    // Period 2 is open with a new commitment, and took the rest.
    let now = app.api.goods(&id).await.body().goods.period;
    assert_eq!(now.number, 2);
    assert_ne!(now.commitment, commitment_1);
    let in_two: u64 = purchases
        .iter()
        .filter(|p| p.period == 2)
        .map(|p| p.allocated)
        .sum();
    assert_eq!(now.sold, in_two);
    // The open period's records so far are public too.
    let so_far = public_records(&app, &id, 2, 100).await;
    let receipts_2: BTreeSet<&str> = purchases
        .iter()
        .filter(|p| p.period == 2)
        .map(|p| p.record.as_str())
        .collect();
    let listed_2: BTreeSet<&str> = so_far.iter().map(|r| r.record.as_str()).collect();
    assert_eq!(listed_2, receipts_2);

    // My codes match what the purchases returned.
    let query = LotteryQuery {
        goods_id: Some(&id),
        period: Some(1),
        ..LotteryQuery::default()
    };
    let mine = app.api.my_lottery(&tokens[0], &query).await.body();
    let my_codes: BTreeSet<u64> = mine.codes().into_iter().collect();
    let expected: BTreeSet<u64> = purchases
        .iter()
        .enumerate()
        .filter(|(i, p)| i % 40 == 0 && p.period == 1)
        .flat_map(|(_, p)| p.codes.iter().copied())
        .collect();
    assert_eq!(my_codes, expected);
}

#[tokio::test]
async fn the_last_period_sells_out_for_good() {
    let redis = RedisServer::start();
    let sink = SmsSink::start().await;
    let app = lottery_app(&redis, &sink).await;
    let token = app.api.sign_in(&sink, "13812345678").await.token;
    let pen = NewGoods {
        code_base: Some(500),
        max_periods: Some(2),
        ..new_goods("Pen", 3, 100)
    };
    let goods = create_goods(&app, &pen).await;
    let id = goods.id.as_str();
    let first = buy(&app, id, &token, 5, None).await;
    assert_eq!(first.status, 400, "more than total_shares");
    let first = buy(&app, id, &token, 3, None).await.ok().purchase;
    let codes: BTreeSet<u64> = first.codes.iter().copied().collect();
    assert_eq!(codes, BTreeSet::from([501, 502, 503]));
    assert!(first.period_sold_out);
    let second = buy(&app, id, &token, 2, None).await.ok().purchase;
    assert_eq!((second.period, second.allocated), (2, 2));
    let third = buy(&app, id, &token, 2, None).await.ok().purchase;
    assert_eq!((third.allocated, third.period_sold_out), (1, true));
    let over = buy(&app, id, &token, 1, None).await;
    assert_eq!((over.status, over.error_code()), (409, "sold_out".into()));
    let p2 = app.api.period(id, 2).await.body().period;
    let winning = p2.draw.expect("period 2 was drawn").winning_code;
    assert!((501..=503).contains(&winning));
    assert_eq!(app.api.period(id, 3).await.status, 404);
}

#[tokio::test]
async fn a_retried_purchase_buys_nothing_more() {
    let redis = RedisServer::start();
    let sink = SmsSink::start().await;
    let app = lottery_app(&redis, &sink).await;
    let token = app.api.sign_in(&sink, "13812345678").await.token;
    let other = app.api.sign_in(&sink, "13812345679").await.token;
    let goods = create_goods(&app, &new_goods("Cup", 100, 100)).await;
    let id = goods.id.as_str();

    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let request = app.api.buy_shares(&token, id, 4, Some("retry-me"));
            tokio::spawn(request.into_future())
        })
        .collect();
    let mut bodies = Vec::new();
    for task in tasks {
        let reply = task.await.unwrap();
        assert_eq!(reply.status, 201);
        bodies.push(reply.body());
    }
    bodies.dedup();
    assert_eq!(bodies.len(), 1, "every retry got the first response");
    assert_eq!(sold(&app, id).await, 4);
    // Another key, or another user with the same key, is another purchase.
    assert_eq!(buy(&app, id, &token, 4, Some("another")).await.status, 201);
    assert_eq!(buy(&app, id, &other, 4, Some("retry-me")).await.status, 201);
    assert_eq!(sold(&app, id).await, 12);
}

#[tokio::test]
async fn bad_purchases_are_refused_and_change_nothing() {
    let redis = RedisServer::start();
    let sink = SmsSink::start().await;
    let app = lottery_app(&redis, &sink).await;
    let token = app.api.sign_in(&sink, "13812345678").await.token;
    let goods = create_goods(&app, &new_goods("Cup", 10, 100)).await;
    let id = goods.id.as_str();
    for (count, status) in [
        (json!(0), 400),
        (json!(-3), 400),
        (json!(11), 400),
        (json!(10_001), 400),
        (json!(2.5), 400),
        (json!("3"), 400),
        (json!(null), 400),
    ] {
        let reply = buy_count(&app, id, &token, &count).await;
        assert_eq!(
            (reply.status, reply.error_code()),
            (status, "invalid_request".into()),
            "{count}"
        );
    }
    let huge = app
        .api
        .request(Method::POST, &format!("/api/lottery/{id}/shares"))
        .bearer(&token)
        .body(vec![b' '; 20_000])
        .await;
    assert_eq!(huge.status, 413);
    assert_eq!(buy(&app, "999", &token, 1, None).await.status, 404);
    assert_eq!(buy(&app, "abc", &token, 1, None).await.status, 404);
    let bad_key = buy(&app, id, &token, 1, Some(&"k".repeat(65))).await;
    assert_eq!(bad_key.status, 400);
    assert_eq!(buy(&app, id, "", 1, None).await.status, 401);
    assert_eq!(sold(&app, id).await, 0);
    // A count out of bounds is refused before a used idempotency key
    // could replay the purchase it named; a whole number with a fraction
    // is a count like any other.
    assert_eq!(buy(&app, id, &token, 2, Some("once")).await.status, 201);
    assert_eq!(
        buy(&app, id, &token, 10_001, Some("once")).await.status,
        400
    );
    assert_eq!(buy(&app, id, &token, 0, Some("once")).await.status, 400);
    let whole = buy_count(&app, id, &token, &json!(3.0)).await;
    assert_eq!(whole.status, 201, "{}", whole.text());
    assert_eq!(sold(&app, id).await, 5);
    let bad_goods = app.api.create_goods(ADMIN_KEY, &new_goods("x", 0, 1)).await;
    assert_eq!(bad_goods.status, 400);
    assert_eq!(app.api.lottery().await.body().goods.len(), 1);
}

#[tokio::test]
async fn redis_down_gives_503() {
    let mut redis = RedisServer::start();
    let sink = SmsSink::start().await;
    let app = lottery_app(&redis, &sink).await;
    let token = app.api.sign_in(&sink, "13812345678").await.token;
    let goods = create_goods(&app, &new_goods("Cup", 10, 100)).await;
    let id = goods.id.as_str();
    redis.stop();
    for reply in [
        buy(&app, id, &token, 1, None).await.untyped(),
        app.api.goods(id).await.untyped(),
    ] {
        assert_eq!(
            (reply.status, reply.error_code()),
            (503, "unavailable".into())
        );
    }
}

#[tokio::test]
async fn my_codes_come_in_bounded_pages_across_goods() {
    let redis = RedisServer::start();
    let sink = SmsSink::start().await;
    let app = lottery_app(&redis, &sink).await;
    let token = app.api.sign_in(&sink, "13812345678").await.token;
    let mut bought = BTreeSet::new();
    for _ in 0..2 {
        let goods = create_goods(&app, &new_goods("g", 10000, 1)).await;
        // 3 purchases of 600: 1,800 codes per goods, more than one page.
        for _ in 0..3 {
            let reply = buy(&app, &goods.id, &token, 600, None).await;
            bought.extend(reply.expect(201).purchase.codes);
        }
    }
    let mut listed = Vec::new();
    let mut pages = 0;
    let mut cursor: Option<String> = None;
    loop {
        let query = LotteryQuery {
            cursor: cursor.as_deref(),
            ..LotteryQuery::default()
        };
        let page = app.api.my_lottery(&token, &query).await.expect(200);
        pages += 1;
        let codes = page.codes();
        assert!(codes.len() <= 1000, "page {pages}: {} codes", codes.len());
        listed.extend(codes);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
        assert!(pages < 50, "paging does not end");
    }
    assert_eq!(listed.len(), 3600, "each code once");
    assert_eq!(listed.iter().copied().collect::<BTreeSet<_>>(), bought);
    assert!(pages >= 4, "{pages}");
}

#[tokio::test]
async fn a_periods_records_come_in_pages_to_anyone() {
    let redis = RedisServer::start();
    let sink = SmsSink::start().await;
    let app = lottery_app(&redis, &sink).await;
    let token = app.api.sign_in(&sink, "13812345678").await.token;
    let goods = create_goods(&app, &new_goods("Cup", 100, 100)).await;
    let id = goods.id.as_str();
    let empty = app.api.period_purchases(id, 1, &PageQuery::default()).await;
    assert_eq!(empty.body().purchases, []);
    let mut receipts = Vec::new();
    for _ in 0..7 {
        receipts.push(buy(&app, id, &token, 3, None).await.expect(201).purchase);
    }
    // A page of 3: 3, 3 and 1 records, the last without a cursor.
    let first = app
        .api
        .period_purchases(
            id,
            1,
            &PageQuery {
                limit: Some(3),
                cursor: None,
            },
        )
        .await
        .expect(200);
    assert_eq!(first.purchases.len(), 3);
    assert!(first.next_cursor.is_some());
    let all = public_records(&app, id, 1, 3).await;
    let records: Vec<&str> = all.iter().map(|r| r.record.as_str()).collect();
    let bought: Vec<&str> = receipts.iter().map(|p| p.record.as_str()).collect();
    assert_eq!(records, bought);
    for (r, p) in all.iter().zip(&receipts) {
        assert_eq!(r.digest, p.digest);
        assert_eq!(p.commitment, goods.period.commitment);
    }
    let whole = app
        .api
        .period_purchases(id, 1, &PageQuery::default())
        .await
        .body();
    assert_eq!((whole.purchases.len(), whole.next_cursor), (7, None));
    // Bad pages are 400, unknown goods and periods 404.
    for (limit, cursor) in [
        (Some(0), None),
        (Some(101), None),
        (None, Some("x")),
        (None, Some("1.2")),
        (None, Some("-1")),
    ] {
        let reply = app
            .api
            .period_purchases(id, 1, &PageQuery { limit, cursor })
            .await;
        assert_eq!(
            (reply.status, reply.error_code()),
            (400, "invalid_request".into()),
            "{limit:?} {cursor:?}"
        );
    }
    for (goods, n) in [(id, 2), ("999", 1), ("abc", 1)] {
        let reply = app
            .api
            .period_purchases(goods, n, &PageQuery::default())
            .await;
        assert_eq!(reply.status, 404, "{goods} {n}");
    }
}

/// The pseudonym a record names its buyer by.
fn pseudonym_in(record: &str) -> &str {
    record.split('|').nth(1).expect("a record has a pseudonym")
}

#[tokio::test]
async fn a_buyers_records_in_other_periods_and_goods_do_not_link() {
    // A drawn period publishes its winner's purchase id, and with it the
    // winner's pseudonym: were it the same elsewhere, it would attribute
    // every purchase of theirs, in other goods and in periods still selling.
    let redis = RedisServer::start();
    let sink = SmsSink::start().await;
    let app = lottery_app(&redis, &sink).await;
    let me = app.api.sign_in(&sink, "13812345678").await.token;
    let other = app.api.sign_in(&sink, "13912345678").await.token;
    let cup = create_goods(&app, &new_goods("Cup", 5, 100)).await.id;
    let pen = create_goods(&app, &new_goods("Pen", 5, 100)).await.id;
    let mut mine = Vec::new();
    for goods in [&cup, &cup] {
        mine.push(buy(&app, goods, &me, 2, None).await.expect(201).purchase);
    }
    let last = buy(&app, &cup, &other, 1, None).await.expect(201).purchase;
    assert!(last.period_sold_out, "period 1 is drawn");
    for goods in [&cup, &pen] {
        mine.push(buy(&app, goods, &me, 2, None).await.expect(201).purchase);
    }
    let places: Vec<(&str, u64)> = mine
        .iter()
        .map(|p| (p.goods_id.as_str(), p.period))
        .collect();
    assert_eq!(places, [(&*cup, 1), (&*cup, 1), (&*cup, 2), (&*pen, 1)]);

    // The public records, as anyone sees them.
    let mut listed = BTreeMap::new();
    for (goods, n) in [(&cup, 1), (&cup, 2), (&pen, 1)] {
        for r in public_records(&app, goods, n, 100).await {
            let id = r.record.split('|').next().unwrap().to_string();
            listed.insert(id, r.record);
        }
    }
    let public: Vec<&str> = mine.iter().map(|p| pseudonym_in(&listed[&p.id])).collect();
    // Within one period my purchases share a pseudonym, so I can find
    // my records; elsewhere nothing ties them to it or to each other.
    assert_eq!(public[0], public[1], "one pseudonym within a period");
    let distinct: BTreeSet<&str> = public[1..].iter().copied().collect();
    assert_eq!(distinct.len(), 3, "other periods and goods: {public:?}");
    assert_ne!(pseudonym_in(&last.record), public[0]);

    // My own list shows each purchase's pseudonym as its record has it.
    let page = app
        .api
        .my_lottery(&me, &LotteryQuery::default())
        .await
        .body();
    assert_eq!(page.purchases.len(), 4);
    for p in &page.purchases {
        assert_eq!(p.pseudonym, pseudonym_in(&listed[&p.id]), "{}", p.id);
    }
}
