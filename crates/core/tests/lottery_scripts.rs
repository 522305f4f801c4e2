//! `lottery_create.lua`, `buy_lottery.lua` (with `perm.lua`), `lottery_read.lua`
//! and `lottery_mine.lua` run directly against a real Redis.

use std::collections::BTreeSet;

use flashspin_core::ApiError;
use flashspin_core::error::Conflict;
use flashspin_core::ids::{EPOCH_UNIX_SECS, GoodsId, IdKey, OrderId, UserId};
use flashspin_core::lottery::{
    MAX_CODES_PER_PAGE, NewGoods, PurchaseFilter, PurchasesCursor, buy, create, purchases_page,
    read, winning_code,
};
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
    OrderId::new(EPOCH_UNIX_SECS + 10, n, &IdKey::from_secret("t")).unwrap()
}

fn user(n: u64) -> UserId {
    UserId::new(n).unwrap()
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
        let id = create(&mut redis, &goods(total as i64, 500, Some(1))).unwrap();
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
    let id = create(&mut redis, &goods(50, 10_000_001, None)).unwrap();
    let first = read(&mut redis, id, 0).unwrap().unwrap();
    sell_out_one_by_one(&mut redis, id, 50);
    let drawn = read(&mut redis, id, 1).unwrap().unwrap();
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
    let (page, next) = purchases_page(&mut redis, draw.winner, filter, None, 100).unwrap();
    assert_eq!(next, None);
    let winner_codes: Vec<u64> = page.into_iter().flat_map(|p| p.codes).collect();
    assert!(winner_codes.contains(&draw.winning_code));
    assert_eq!(draw.participants, 3);
    let now = read(&mut redis, id, 0).unwrap().unwrap();
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
    let tiny = create(&mut redis, &goods(10, 10_000_001, None)).unwrap();
    let huge = create(&mut redis, &goods(10_000_000, 10_000_001, None)).unwrap();
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
        let (page, next) = purchases_page(redis, user, filter, cursor, limit).unwrap();
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
    let id = create(&mut redis, &goods(100_000, 10_000_001, None)).unwrap();
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
    let (page, _) = purchases_page(&mut redis, user(7), filter, Some(forged), 100).unwrap();
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
    let id = create(&mut redis, &goods(3, 10_000_001, None)).unwrap();
    sell_out_one_by_one(&mut redis, id, 3);
    assert_eq!(read(&mut redis, id, 0).unwrap().unwrap().period, 2);

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
    let drawn = read(&mut redis, id, 1).unwrap().unwrap().draw.unwrap();
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
        let period = read(&mut redis, id, n).unwrap().unwrap();
        assert_eq!(
            flashspin_core::lottery::commitment_of(seed),
            period.commitment,
            "period {n}"
        );
    }
}
