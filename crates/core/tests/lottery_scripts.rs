//! `lottery_create.lua`, `buy_lottery.lua` (with `perm.lua`), `lottery_read.lua`
//! and `lottery_mine.lua` run directly against a real Redis.

use flashspin_testkit::block_on;
use std::collections::BTreeSet;

use flashspin_core::ApiError;
use flashspin_core::error::Conflict;
use flashspin_core::ids::{EPOCH_UNIX_SECS, GoodsId, IdKey, OrderId, UserId};
use flashspin_core::lottery::{
    self, CodePermutation, MAX_CODES_PER_PAGE, NewGoods, PeriodRecord, PseudonymKey, Purchase,
    PurchaseFilter, PurchasesCursor, RecordsCursor, create, next_digest, period_records,
    purchases_page, read, winning_code,
};
use flashspin_core::shard::Shards;
use flashspin_testkit::{NativeRedis, RedisServer};

fn goods(total: i64, base: i64, max_periods: Option<i64>) -> NewGoods {
    NewGoods {
        title: "g".into(),
        total_shares: total,
        share_price: 100,
        code_base: base,
        max_periods,
    }
}

fn pid(n: u32) -> OrderId {
    OrderId::new(
        EPOCH_UNIX_SECS + 10,
        n,
        Shards::ONE.first(),
        Shards::ONE,
        &IdKey::from_secret("t"),
    )
    .unwrap()
}

fn user(n: u64) -> UserId {
    UserId::new(n).unwrap()
}

fn pseudonyms() -> PseudonymKey {
    PseudonymKey::from_secret("t")
}

/// Buys as `lottery::buy` does, with the tests' pseudonym key.
fn buy(
    redis: &mut NativeRedis,
    id: GoodsId,
    user: UserId,
    count: u64,
    purchase: OrderId,
    key: Option<&lottery::IdempotencyKey>,
) -> Result<Purchase, ApiError> {
    block_on(lottery::buy(
        redis,
        id,
        user,
        &pseudonyms(),
        count,
        purchase,
        key,
    ))
}

fn sell_out_one_by_one(redis: &mut NativeRedis, id: GoodsId, total: u64) -> BTreeSet<u64> {
    let mut codes = BTreeSet::new();
    for i in 0..total {
        let p = buy(redis, id, user(1 + i % 3), 1, pid(i as u32 + 1), None).unwrap();
        for c in p.codes {
            assert!(codes.insert(c), "code {c} twice");
        }
    }
    codes
}

#[test]
fn codes_are_a_permutation_of_the_range_for_any_size() {
    let server = RedisServer::start();
    let mut redis = server.native();
    for total in [1u64, 2, 3, 5, 16, 17, 100, 257] {
        let id = block_on(create(&mut redis, &goods(total as i64, 500, Some(1)))).unwrap();
        let codes = sell_out_one_by_one(&mut redis, id, total);
        assert_eq!(
            codes,
            (501..=500 + total).collect::<BTreeSet<_>>(),
            "total {total}"
        );
        assert_eq!(
            buy(&mut redis, id, user(1), 1, pid(9999), None),
            Err(ApiError::Conflict(Conflict::SoldOut))
        );
    }
}

#[test]
fn the_draw_matches_the_published_formula_and_the_next_period_opens() {
    let server = RedisServer::start();
    let mut redis = server.native();
    let id = block_on(create(&mut redis, &goods(50, 10_000_001, None))).unwrap();
    let first = block_on(read(&mut redis, id, 0)).unwrap().unwrap();
    sell_out_one_by_one(&mut redis, id, 50);
    let drawn = block_on(read(&mut redis, id, 1)).unwrap().unwrap();
    let draw = drawn.draw.clone().expect("drawn");
    assert_eq!(
        draw.winning_code,
        winning_code(&draw.seed, &draw.digest, 50, 10_000_001)
    );
    assert_eq!(
        flashspin_core::lottery::commitment_of(&draw.seed),
        first.commitment
    );
    let filter = PurchaseFilter {
        goods: Some(id),
        period: Some(1),
    };
    let (page, next) = block_on(purchases_page(
        &mut redis,
        Shards::ONE,
        draw.winner,
        filter,
        None,
        100,
    ))
    .unwrap();
    assert_eq!(next, None);
    let winner_codes: Vec<u64> = page.into_iter().flat_map(|p| p.codes).collect();
    assert!(winner_codes.contains(&draw.winning_code));
    assert_eq!(draw.participants, 3);
    let now = block_on(read(&mut redis, id, 0)).unwrap().unwrap();
    assert_eq!((now.period, now.sold, now.drawn), (2, 0, false));
    assert_ne!(now.commitment, first.commitment);
}

/// Bytes Redis uses for every key of goods `id`.
fn goods_memory(server: &RedisServer, id: GoodsId) -> i64 {
    let mut conn = server.conn();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{{g:{id}}}*"))
        .query(&mut conn)
        .unwrap();
    keys.iter()
        .map(|k| {
            redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(k)
                .query::<i64>(&mut conn)
                .unwrap()
        })
        .sum()
}

#[test]
fn a_huge_period_costs_no_more_than_a_tiny_one() {
    let server = RedisServer::start();
    let mut redis = server.native();
    let tiny = block_on(create(&mut redis, &goods(10, 10_000_001, None))).unwrap();
    let huge = block_on(create(&mut redis, &goods(10_000_000, 10_000_001, None))).unwrap();
    for id in [tiny, huge] {
        let p = buy(&mut redis, id, user(1), 3, pid(id.get() as u32), None).unwrap();
        assert_eq!(p.codes.len(), 3);
    }
    let (t, h) = (goods_memory(&server, tiny), goods_memory(&server, huge));
    // Only the numbers' digits differ.
    assert!(h <= t + 32, "tiny {t} bytes, huge {h} bytes");
}

/// Every code a user holds, read page by page.
fn all_pages(
    redis: &mut NativeRedis,
    user: UserId,
    filter: PurchaseFilter,
    limit: usize,
) -> (Vec<(String, u64)>, usize) {
    let mut codes = Vec::new();
    let mut pages = 0;
    let mut cursor: Option<PurchasesCursor> = None;
    loop {
        let (page, next) = block_on(purchases_page(
            redis,
            Shards::ONE,
            user,
            filter,
            cursor,
            limit,
        ))
        .unwrap();
        pages += 1;
        assert!(page.len() <= limit);
        assert!(page.iter().map(|p| p.codes.len()).sum::<usize>() <= MAX_CODES_PER_PAGE);
        for p in page {
            codes.extend(p.codes.iter().map(|c| (p.id.clone(), *c)));
        }
        // Cursors travel as text.
        cursor = next.map(|c| PurchasesCursor::parse(&c.to_string()).unwrap());
        if cursor.is_none() {
            return (codes, pages);
        }
        assert!(pages < 1000, "paging does not end");
    }
}

#[test]
fn pages_of_purchases_hold_every_code_once_and_stay_bounded() {
    let server = RedisServer::start();
    let mut redis = server.native();
    let id = block_on(create(&mut redis, &goods(100_000, 10_000_001, None))).unwrap();
    // 30 purchases of 150 shares: 4,500 codes, so a purchase must be cut
    // across pages to respect the 1,000-code cap.
    let mut bought = BTreeSet::new();
    for i in 0..30u32 {
        let p = buy(&mut redis, id, user(7), 150, pid(i + 1), None).unwrap();
        bought.extend(p.codes);
    }
    let filter = PurchaseFilter {
        goods: Some(id),
        period: None,
    };
    for limit in [1, 7, 100] {
        let (codes, pages) = all_pages(&mut redis, user(7), filter, limit);
        let distinct: BTreeSet<u64> = codes.iter().map(|(_, c)| *c).collect();
        assert_eq!(codes.len(), 4_500, "limit {limit}");
        assert_eq!(distinct, bought, "limit {limit}");
        assert!(pages >= 5, "limit {limit}: {pages} pages");
        // Newest purchase first.
        assert_eq!(codes[0].0, pid(30).to_string(), "limit {limit}");
    }
    // A cursor is the client's to send: a skip past the purchase's end
    // shows nothing of it and breaks no bound; absurd numbers are refused.
    let forged = PurchasesCursor::parse(&format!("{id}.30.9999")).unwrap();
    let (page, _) = block_on(purchases_page(
        &mut redis,
        Shards::ONE,
        user(7),
        filter,
        Some(forged),
        100,
    ))
    .unwrap();
    let codes: Vec<u64> = page.iter().flat_map(|p| p.codes.clone()).collect();
    assert!(codes.len() <= MAX_CODES_PER_PAGE);
    assert!(codes.iter().all(|c| bought.contains(c)));
    for bad in [
        format!("{id}.30.10000"),
        format!("{id}.9223372036854775808.0"),
    ] {
        assert!(PurchasesCursor::parse(&bad).is_err(), "{bad}");
    }
    // Someone else's codes are not listed, and a period filter applies.
    assert!(all_pages(&mut redis, user(8), filter, 20).0.is_empty());
    let other = PurchaseFilter {
        goods: Some(id),
        period: Some(2),
    };
    assert!(all_pages(&mut redis, user(7), other, 20).0.is_empty());
}

/// Every string in a Redis reply, however nested.
fn strings_of(value: &redis::Value, out: &mut Vec<String>) {
    match value {
        redis::Value::BulkString(b) => out.push(String::from_utf8_lossy(b).into_owned()),
        redis::Value::SimpleString(s) => out.push(s.clone()),
        redis::Value::Array(items) => items.iter().for_each(|v| strings_of(v, out)),
        _ => {}
    }
}

#[test]
fn an_open_periods_seed_never_shows_in_slowlog() {
    let server = RedisServer::start();
    let mut conn = server.conn();
    // Log every command, with its arguments, as an operator's monitoring
    // might: a seed sent as an argument would sit there for anyone to read.
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("slowlog-log-slower-than")
        .arg(0)
        .exec(&mut conn)
        .unwrap();
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("slowlog-max-len")
        .arg(100_000)
        .exec(&mut conn)
        .unwrap();
    let mut redis = server.native();
    let id = block_on(create(&mut redis, &goods(3, 10_000_001, None))).unwrap();
    sell_out_one_by_one(&mut redis, id, 3);
    assert_eq!(
        block_on(read(&mut redis, id, 0)).unwrap().unwrap().period,
        2
    );

    let log: redis::Value = redis::cmd("SLOWLOG")
        .arg("GET")
        .arg(-1)
        .query(&mut conn)
        .unwrap();
    let mut logged = Vec::new();
    strings_of(&log, &mut logged);
    assert!(
        logged.iter().any(|s| s == "EVALSHA" || s == "EVAL"),
        "the log has the scripts"
    );
    // Period 1 is drawn: its seed is public now, in the draw. Period 2's is
    // secret, and must be nowhere in the log (Redis logs the commands a
    // script runs too).
    let drawn = block_on(read(&mut redis, id, 1))
        .unwrap()
        .unwrap()
        .draw
        .unwrap();
    let root: String = redis::cmd("HGET")
        .arg(format!("{{g:{id}}}:info"))
        .arg("root")
        .query(&mut conn)
        .unwrap();
    assert_eq!(drawn.seed, flashspin_core::lottery::period_seed(&root, 1));
    let open_seed = flashspin_core::lottery::period_seed(&root, 2);
    assert!(
        !logged.iter().any(|s| s.contains(open_seed.as_str())),
        "the open period's seed is in SLOWLOG"
    );
    let stored: Vec<Option<String>> = redis::cmd("HMGET")
        .arg(format!("{{g:{id}}}:p:2"))
        .arg("seed")
        .query(&mut conn)
        .unwrap();
    assert_eq!(stored, [None], "an open period keeps no seed");
    let seeds = [drawn.seed.clone(), open_seed];
    // Commitments are public and checkable: sha256(seed).
    for (n, seed) in [(1, &seeds[0]), (2, &seeds[1])] {
        let period = block_on(read(&mut redis, id, n)).unwrap().unwrap();
        assert_eq!(
            flashspin_core::lottery::commitment_of(seed),
            period.commitment,
            "period {n}"
        );
    }
}

/// Every record of a period, page by page, with the pages' sizes.
fn all_records(
    redis: &mut NativeRedis,
    id: GoodsId,
    n: u64,
    limit: usize,
) -> (Vec<PeriodRecord>, Vec<usize>) {
    let mut records = Vec::new();
    let mut sizes = Vec::new();
    let mut cursor: Option<RecordsCursor> = None;
    loop {
        let (page, next) = block_on(period_records(redis, id, n, cursor, limit)).unwrap();
        sizes.push(page.len());
        records.extend(page);
        // Cursors travel as text.
        cursor = next.map(|c| RecordsCursor::parse(&c.to_string()).unwrap());
        if cursor.is_none() {
            return (records, sizes);
        }
        assert!(sizes.len() < 1000, "paging does not end");
    }
}

#[test]
fn a_periods_records_are_public_in_chain_order_and_check_the_draw() {
    let server = RedisServer::start();
    let mut redis = server.native();
    let id = block_on(create(&mut redis, &goods(50, 10_000_001, None))).unwrap();
    let opened = block_on(read(&mut redis, id, 0)).unwrap().unwrap();
    // Purchases of 1 to 7 shares by 3 users until the period sells out
    // (the last one cut short), then one in period 2.
    let mut receipts = Vec::new();
    for i in 0..20u32 {
        let count = u64::from(1 + i % 7);
        let p = buy(
            &mut redis,
            id,
            user(1 + u64::from(i % 3)),
            count,
            pid(i + 1),
            None,
        )
        .unwrap();
        assert_eq!(p.commitment, opened.commitment, "the receipt's commitment");
        receipts.push(p);
        if receipts.last().unwrap().period_sold_out {
            break;
        }
    }
    let p2 = buy(&mut redis, id, user(9), 2, pid(99), None).unwrap();
    assert_eq!(p2.period, 2);
    receipts.push(p2);
    let in_one: Vec<&Purchase> = receipts.iter().filter(|p| p.period == 1).collect();
    let (records, sizes) = all_records(&mut redis, id, 1, 100);
    assert_eq!(sizes, [in_one.len()]);
    // Each record is the receipt's, its digest the chain's value after it,
    // and the first share indexes follow one another.
    let mut digest = String::new();
    let mut next_index = 0;
    for (r, p) in records.iter().zip(&in_one) {
        digest = next_digest(&digest, &r.record);
        assert_eq!((&r.record, &r.digest), (&p.record, &p.digest));
        assert_eq!(r.digest, digest);
        assert_eq!((r.codes_from, r.count), (next_index, p.codes.len() as u64));
        let fields: Vec<&str> = r.record.split('|').collect();
        assert_eq!(fields.len(), 5, "{}", r.record);
        assert_eq!(fields[0], p.id.to_string());
        assert_eq!(fields[2..4], [next_index.to_string(), r.count.to_string()]);
        next_index += r.count;
    }
    assert_eq!(next_index, 50);
    // Records name buyers by pseudonym only.
    for (i, r) in records.iter().enumerate() {
        let buyer = user(1 + (i as u64) % 3);
        assert_eq!(
            r.record.split('|').nth(1),
            Some(pseudonyms().pseudonym(buyer, id, 1).as_str())
        );
    }
    // The draw, from the records and the published calculation alone.
    let draw = block_on(read(&mut redis, id, 1))
        .unwrap()
        .unwrap()
        .draw
        .unwrap();
    assert_eq!(draw.digest, digest);
    let code = winning_code(&draw.seed, &digest, 50, 10_000_001);
    assert_eq!(code, draw.winning_code);
    let index = CodePermutation::from_seed(&draw.seed, 50).backward(code - 10_000_002);
    let holder = records
        .iter()
        .find(|r| r.codes_from <= index && index < r.codes_from + r.count)
        .unwrap();
    assert_eq!(
        holder.record.split('|').next(),
        Some(draw.winner_purchase.as_str())
    );
    // The Rust permutation gives the codes the script gave.
    let perm = CodePermutation::from_seed(&draw.seed, 50);
    for (r, p) in records.iter().zip(&in_one) {
        let codes: Vec<u64> = (r.codes_from..r.codes_from + r.count)
            .map(|i| 10_000_002 + perm.forward(i))
            .collect();
        assert_eq!(codes, p.codes);
    }
    // Period 2 lists what it has so far; period 3 and other goods are not found.
    let in_two = all_records(&mut redis, id, 2, 100).0;
    assert_eq!(in_two.len(), 1);
    assert_eq!(in_two[0].record, receipts.last().unwrap().record);
    assert_eq!(
        block_on(period_records(&mut redis, id, 3, None, 100)),
        Err(ApiError::NotFound)
    );
    let unknown = GoodsId::new(id.get() + 1).unwrap();
    assert_eq!(
        block_on(period_records(&mut redis, unknown, 1, None, 100)),
        Err(ApiError::NotFound)
    );
}

#[test]
fn record_pages_hold_every_record_once() {
    let server = RedisServer::start();
    let mut redis = server.native();
    let id = block_on(create(&mut redis, &goods(1000, 10_000_001, None))).unwrap();
    let mut receipts = Vec::new();
    for i in 0..23u32 {
        receipts.push(buy(&mut redis, id, user(7), 2, pid(i + 1), None).unwrap());
    }
    for (limit, sizes) in [
        (1, vec![1; 23]),
        (5, vec![5, 5, 5, 5, 3]),
        (23, vec![23]),
        (100, vec![23]),
    ] {
        let (records, got) = all_records(&mut redis, id, 1, limit);
        assert_eq!(got, sizes, "limit {limit}");
        let listed: Vec<&str> = records.iter().map(|r| r.record.as_str()).collect();
        let bought: Vec<&str> = receipts.iter().map(|p| p.record.as_str()).collect();
        assert_eq!(listed, bought, "limit {limit}");
    }
    // A page that ends exactly at the last record has no next cursor.
    let (_, next) = block_on(period_records(&mut redis, id, 1, None, 23)).unwrap();
    assert_eq!(next, None);
    // A cursor is the client's to send: any index gives the records after it.
    let (page, _) = block_on(period_records(
        &mut redis,
        id,
        1,
        Some(RecordsCursor::parse("3").unwrap()),
        2,
    ))
    .unwrap();
    let starts: Vec<u64> = page.iter().map(|r| r.codes_from).collect();
    assert_eq!(starts, [4, 6]);
    // A period not sold from yet lists nothing.
    let fresh = block_on(create(&mut redis, &goods(10, 1, None))).unwrap();
    assert_eq!(
        block_on(period_records(&mut redis, fresh, 1, None, 100)).unwrap(),
        (vec![], None)
    );
}

#[test]
fn a_retried_purchase_returns_the_same_receipt() {
    let server = RedisServer::start();
    let mut redis = server.native();
    let id = block_on(create(&mut redis, &goods(10, 1, None))).unwrap();
    let key = lottery::IdempotencyKey::parse("k").unwrap();
    let first = buy(&mut redis, id, user(1), 10, pid(1), Some(&key)).unwrap();
    assert!(first.period_sold_out);
    // The period is drawn and period 2 open: the repeat is still the receipt
    // of period 1.
    let again = buy(&mut redis, id, user(1), 3, pid(2), Some(&key)).unwrap();
    assert_eq!(again, first);
    assert_eq!(
        block_on(period_records(&mut redis, id, 1, None, 100))
            .unwrap()
            .0
            .len(),
        1
    );
    assert_eq!(block_on(read(&mut redis, id, 2)).unwrap().unwrap().sold, 0);
}

#[test]
fn my_purchases_show_my_pseudonym() {
    let server = RedisServer::start();
    let mut redis = server.native();
    let id = block_on(create(&mut redis, &goods(100, 1, None))).unwrap();
    let p = buy(&mut redis, id, user(5), 4, pid(1), None).unwrap();
    let filter = PurchaseFilter {
        goods: Some(id),
        period: None,
    };
    let (page, _) = block_on(purchases_page(
        &mut redis,
        Shards::ONE,
        user(5),
        filter,
        None,
        20,
    ))
    .unwrap();
    let mine = pseudonyms().pseudonym(user(5), id, 1);
    assert_eq!(page[0].pseudonym, mine);
    assert_eq!(p.record.split('|').nth(1), Some(mine.as_str()));
    assert!(!p.record.split('|').any(|f| f == "5"), "{}", p.record);
}

#[test]
fn a_buyer_has_one_pseudonym_per_goods_and_period() {
    let server = RedisServer::start();
    let mut redis = server.native();
    let cup = block_on(create(&mut redis, &goods(4, 1, None))).unwrap();
    let pen = block_on(create(&mut redis, &goods(4, 1, None))).unwrap();
    let pseudonym = |p: &Purchase| p.record.split('|').nth(1).unwrap().to_string();
    let a = buy(&mut redis, cup, user(5), 2, pid(1), None).unwrap();
    let b = buy(&mut redis, cup, user(5), 2, pid(2), None).unwrap();
    assert!(b.period_sold_out);
    let c = buy(&mut redis, cup, user(5), 2, pid(3), None).unwrap();
    let d = buy(&mut redis, pen, user(5), 2, pid(4), None).unwrap();
    assert_eq!((c.period, d.period), (2, 1));
    assert_eq!(pseudonym(&a), pseudonym(&b));
    let all: BTreeSet<String> = [&a, &c, &d].into_iter().map(pseudonym).collect();
    assert_eq!(all.len(), 3, "{all:?}");
    for (p, goods, n) in [(&a, cup, 1), (&c, cup, 2), (&d, pen, 1)] {
        assert_eq!(pseudonym(p), pseudonyms().pseudonym(user(5), goods, n));
    }
}
