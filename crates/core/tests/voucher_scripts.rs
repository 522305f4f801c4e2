//! `catalog_index.lua` (through voucher creation), `buy_voucher.lua` and
//! `record_purchase.lua` run directly against a real Redis through the core.

use flashspin_testkit::block_on;
use std::sync::{Arc, Barrier};
use std::thread;

use flashspin_core::ApiError;
use flashspin_core::error::Conflict;
use flashspin_core::ids::{IdKey, OrderId, ShopId, UserId, VoucherId};
use flashspin_core::order::OrderExport;
use flashspin_core::shard::Shards;
use flashspin_core::voucher::{NewVoucher, buy, create, get, list_by_shop};
use flashspin_testkit::RedisServer;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn voucher(shop_id: u64, stock: i64, begin_ms: i64, end_ms: i64) -> NewVoucher {
    NewVoucher {
        shop_id: ShopId::new(shop_id).unwrap(),
        title: "t".into(),
        sub_title: String::new(),
        rules: String::new(),
        pay_value: 1,
        actual_value: 2,
        stock,
        begin_ms,
        end_ms,
        parts: 1,
    }
}

fn user(n: u64) -> UserId {
    UserId::new(n).unwrap()
}

/// How long buyers have to pay.
const PAY_SECS: u32 = 900;

fn order_id(seq: u32) -> OrderId {
    OrderId::new(
        flashspin_core::ids::EPOCH_UNIX_SECS + 1000,
        seq,
        Shards::ONE.first(),
        Shards::ONE,
        &IdKey::from_secret("t"),
    )
    .unwrap()
}

#[test]
fn concurrent_buyers_take_exactly_the_stock() {
    let server = RedisServer::start();
    let mut redis = server.native();
    let v = block_on(create(
        &mut redis,
        voucher(1, 25, now_ms() - 1000, now_ms() + 60_000),
    ))
    .unwrap();
    let barrier = Arc::new(Barrier::new(100));
    let handles: Vec<_> = (0..100u32)
        .map(|i| {
            let mut redis = server.native();
            let barrier = barrier.clone();
            // 50 users, two attempts each.
            thread::spawn(move || {
                barrier.wait();
                block_on(buy(
                    &mut redis,
                    v.id,
                    user(u64::from(i % 50) + 1),
                    order_id(i + 1),
                    PAY_SECS,
                    OrderExport::Off,
                    Shards::ONE,
                    &mut 1,
                ))
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let bought = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(bought, 25);
    for r in &results {
        match r {
            Ok(_)
            | Err(ApiError::Conflict(Conflict::SoldOut))
            | Err(ApiError::AlreadyPurchased(_)) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        block_on(get(&mut redis, v.id, OrderExport::Off))
            .unwrap()
            .unwrap()
            .remaining,
        0
    );
}

#[test]
fn the_window_is_checked_against_redis_time() {
    let server = RedisServer::start();
    let mut redis = server.native();
    let later = block_on(create(
        &mut redis,
        voucher(1, 5, now_ms() + 60_000, now_ms() + 120_000),
    ))
    .unwrap();
    let over = block_on(create(
        &mut redis,
        voucher(1, 5, now_ms() - 120_000, now_ms() - 60_000),
    ))
    .unwrap();
    assert_eq!(
        block_on(buy(
            &mut redis,
            later.id,
            user(1),
            order_id(1),
            PAY_SECS,
            OrderExport::Off,
            Shards::ONE,
            &mut 1
        )),
        Err(ApiError::Conflict(Conflict::SaleNotStarted))
    );
    assert_eq!(
        block_on(buy(
            &mut redis,
            over.id,
            user(1),
            order_id(2),
            PAY_SECS,
            OrderExport::Off,
            Shards::ONE,
            &mut 1
        )),
        Err(ApiError::Conflict(Conflict::SaleEnded))
    );
    assert_eq!(
        block_on(buy(
            &mut redis,
            VoucherId::new(999).unwrap(),
            user(1),
            order_id(3),
            PAY_SECS,
            OrderExport::Off,
            Shards::ONE,
            &mut 1
        )),
        Err(ApiError::NotFound)
    );
}

#[test]
fn a_listed_id_without_a_voucher_is_skipped() {
    let server = RedisServer::start();
    let mut redis = server.native();
    let a = block_on(create(&mut redis, voucher(7, 5, 0, now_ms() + 60_000))).unwrap();
    // As if a creation stopped after listing its id.
    redis::cmd("ZADD")
        .arg("{catalog}:shop:7:vouchers")
        .arg(99)
        .arg(99)
        .exec(&mut server.conn())
        .unwrap();
    let listed: Vec<VoucherId> = block_on(list_by_shop(
        &mut redis,
        ShopId::new(7).unwrap(),
        50,
        OrderExport::Off,
    ))
    .unwrap()
    .iter()
    .map(|v| v.id)
    .collect();
    assert_eq!(listed, vec![a.id]);
}

#[test]
fn a_purchase_is_recorded_once_in_the_users_list() {
    let server = RedisServer::start();
    let mut redis = server.native();
    let key = flashspin_core::keys::user_voucher_orders(Shards::ONE.first(), user(7));
    for (score, member) in [(1000, "3"), (2000, "4"), (1000, "3")] {
        block_on(flashspin_core::page::record(
            &mut redis, &key, score, member,
        ))
        .unwrap();
    }
    let listed: Vec<(String, i64)> = redis::cmd("ZRANGE")
        .arg(&key)
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query(&mut server.conn())
        .unwrap();
    assert_eq!(listed, [("3".to_string(), 1000), ("4".to_string(), 2000)]);
}

/// A purchase run twice with its own order id (a replay on a fresh
/// connection, when the first run's answer was lost) answers as the first
/// run did and takes one unit; another purchase by the same buyer is still
/// refused.
#[test]
fn a_purchase_replayed_answers_as_it_did_and_takes_one_unit() {
    let server = RedisServer::start();
    let mut redis = server.native();
    let v = block_on(create(
        &mut redis,
        voucher(1, 5, now_ms() - 1000, now_ms() + 60_000),
    ))
    .unwrap();
    let run = |redis: &mut _, id| {
        block_on(buy(
            redis,
            v.id,
            user(7),
            order_id(id),
            PAY_SECS,
            OrderExport::Off,
            Shards::ONE,
            &mut 1,
        ))
    };
    let first = run(&mut redis, 1).unwrap();
    let replay = run(&mut redis, 1).unwrap();
    assert_eq!(replay, first);
    match run(&mut redis, 2) {
        Err(ApiError::AlreadyPurchased(_)) => {}
        other => panic!("{other:?}"),
    }
    let remaining = block_on(get(&mut redis, v.id, OrderExport::Off))
        .unwrap()
        .unwrap()
        .remaining;
    assert_eq!(remaining, 4);
    assert!(flashspin_core::scripts::buy_voucher::SCRIPT.is_replayable());
    assert!(!flashspin_core::scripts::buy_lottery::SCRIPT.is_replayable());
}
