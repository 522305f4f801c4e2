//! A voucher whose stock is split over several parts, each its own slot,
//! on a real 3-primary Redis Cluster: the parts land on different primaries;
//! concurrent buyers get exactly the stock, one order each, however their
//! home parts run out; a unit cancelled in one part is sold to a buyer of
//! another; a transfer between parts cut short by a crash is completed by
//! the next buyer who borrows, without a unit made or lost.

use std::sync::{Arc, Barrier};
use std::thread;

use flashspin_core::ApiError;
use flashspin_core::cluster::{ClusterRedis, NoCache, slot};
use flashspin_core::error::Conflict;
use flashspin_core::ids::{EPOCH_UNIX_SECS, IdKey, OrderId, ShopId, UserId, VoucherId};
use flashspin_core::keys;
use flashspin_core::order::{self, Change, OrderExport};
use flashspin_core::part::VoucherPart;
use flashspin_core::redis::{Arg, Redis, Reply};
use flashspin_core::shard::Shards;
use flashspin_core::voucher::{self, DRAINED_MS, NewVoucher};
use flashspin_testkit::{NativeConnector, RedisCluster, block_on};

type Router = ClusterRedis<NativeConnector, NoCache>;

fn router(cluster: &RedisCluster) -> Router {
    ClusterRedis::new(
        NativeConnector {
            seed: cluster.seed_url(),
        },
        NoCache,
    )
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn split_voucher(redis: &mut Router, stock: i64, parts: u8) -> VoucherId {
    let new = NewVoucher {
        shop_id: ShopId::new(1).unwrap(),
        title: "hot".into(),
        sub_title: String::new(),
        rules: String::new(),
        pay_value: 100,
        actual_value: 200,
        stock,
        begin_ms: now_ms() - 1000,
        end_ms: now_ms() + 3_600_000,
        parts,
    };
    block_on(voucher::create(redis, new)).unwrap().id
}

fn order_id(n: u32) -> OrderId {
    OrderId::new(
        EPOCH_UNIX_SECS + 5000,
        n,
        Shards::ONE.first(),
        Shards::ONE,
        &IdKey::from_secret("t"),
    )
    .unwrap()
}

fn buy(redis: &mut Router, v: VoucherId, user: u64, parts: &mut u8) -> Result<OrderId, ApiError> {
    let user = UserId::new(user).unwrap();
    block_on(voucher::buy(
        redis,
        v,
        user,
        order_id(user.get() as u32),
        900,
        OrderExport::Off,
        Shards::ONE,
        parts,
    ))
    .map(|o| o.id)
}

fn field(redis: &mut Router, key: &str, name: &str) -> Option<String> {
    match block_on(redis.execute("HGET", &[Arg::from(key), Arg::from(name)]))
        .unwrap()
        .as_slice()
    {
        [Reply::Bytes(b)] => Some(String::from_utf8(b.clone()).unwrap()),
        _ => None,
    }
}

fn count(redis: &mut Router, command: &str, key: &str) -> i64 {
    match block_on(redis.execute(command, &[Arg::from(key)]))
        .unwrap()
        .as_slice()
    {
        [Reply::Int(n)] => *n,
        other => panic!("{other:?}"),
    }
}

fn remaining(redis: &mut Router, v: VoucherId) -> i64 {
    block_on(voucher::get(redis, v, OrderExport::Off))
        .unwrap()
        .unwrap()
        .remaining
}

#[test]
fn concurrent_buyers_get_exactly_a_split_vouchers_stock_one_order_each() {
    let cluster = RedisCluster::start(3, 0);
    let mut redis = router(&cluster);
    let v = split_voucher(&mut redis, 100, 3);
    let nodes: std::collections::HashSet<u16> = VoucherPart::all(v, 3)
        .map(|p| cluster.primary_of(slot(p.tag().as_bytes())))
        .collect();
    assert_eq!(nodes.len(), 3, "each part on its own primary");
    assert_eq!(remaining(&mut redis, v), 100);

    let (threads, per_thread) = (6u64, 60u64);
    let barrier = Arc::new(Barrier::new(threads as usize));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let barrier = barrier.clone();
            let mut redis = router(&cluster);
            thread::spawn(move || {
                let mut parts = 1;
                let mut outcomes = Vec::new();
                barrier.wait();
                for i in 0..per_thread {
                    let user = 1 + t * per_thread + i;
                    outcomes.push((user, buy(&mut redis, v, user, &mut parts)));
                }
                assert_eq!(parts, 3, "learnt from the first purchase");
                outcomes
            })
        })
        .collect();
    let outcomes: Vec<_> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let bought: Vec<u64> = outcomes
        .iter()
        .filter(|(_, o)| o.is_ok())
        .map(|(u, _)| *u)
        .collect();
    let refused = outcomes
        .iter()
        .filter(|(_, o)| matches!(o, Err(ApiError::Conflict(Conflict::SoldOut))))
        .count();
    assert_eq!(bought.len(), 100);
    assert_eq!(refused, outcomes.len() - 100, "every other buyer: sold out");

    // Every unit is an order in its buyer's home part, none is left, and
    // nothing is in transfer.
    assert_eq!(remaining(&mut redis, v), 0);
    let mut held = 0;
    for part in VoucherPart::all(v, 3) {
        held += count(&mut redis, "HLEN", &keys::voucher_buyers(part));
        assert_eq!(count(&mut redis, "HLEN", &keys::voucher_lent(part)), 0);
        assert_eq!(
            field(&mut redis, &keys::voucher_info(part), "remaining").as_deref(),
            Some("0")
        );
    }
    assert_eq!(held, 100);
    for user in &bought {
        let home = VoucherPart::home(v, 3, UserId::new(*user).unwrap());
        let key = keys::voucher_buyers(home);
        let uid = user.to_string();
        let reply = block_on(redis.execute(
            "HEXISTS",
            &[Arg::from(key.as_str()), Arg::from(uid.as_str())],
        ));
        assert_eq!(
            reply.unwrap(),
            [Reply::Int(1)],
            "user {user} in their home part"
        );
    }
    // A buyer cannot buy a second one (with a new order id: the same one
    // would be a replay of the first purchase, answered alike).
    let again = block_on(voucher::buy(
        &mut redis,
        v,
        UserId::new(bought[0]).unwrap(),
        order_id(50_000),
        900,
        OrderExport::Off,
        Shards::ONE,
        &mut 3,
    ));
    assert!(
        matches!(again, Err(ApiError::AlreadyPurchased(_))),
        "{again:?}"
    );
}

#[test]
fn a_unit_cancelled_in_one_part_is_sold_to_a_buyer_of_another() {
    let cluster = RedisCluster::start(3, 0);
    let mut redis = router(&cluster);
    let v = split_voucher(&mut redis, 3, 3);
    let mut parts = 1;
    let mut holders = Vec::new();
    let mut user = 0;
    while holders.len() < 3 {
        user += 1;
        if let Ok(order) = buy(&mut redis, v, user, &mut parts) {
            holders.push((user, order));
        }
    }
    let (holder, order) = holders[0];
    let holder_home = VoucherPart::home(v, 3, UserId::new(holder).unwrap());
    // A buyer whose home is another part.
    let other = (1000..)
        .find(|u| VoucherPart::home(v, 3, UserId::new(*u).unwrap()) != holder_home)
        .unwrap();
    assert!(matches!(
        buy(&mut redis, v, other, &mut parts),
        Err(ApiError::Conflict(Conflict::SoldOut))
    ));
    block_on(order::change(
        &mut redis,
        holder_home,
        order,
        Change::Cancel,
        Some(UserId::new(holder).unwrap()),
        OrderExport::Off,
    ))
    .unwrap();
    assert_eq!(remaining(&mut redis, v), 1);
    // The other part found every part empty a moment ago; within
    // DRAINED_MS it may still say so, and then it sells.
    std::thread::sleep(std::time::Duration::from_millis(DRAINED_MS as u64 + 50));
    assert!(buy(&mut redis, v, other, &mut parts).is_ok());
    assert_eq!(remaining(&mut redis, v), 0);
}

#[test]
fn a_transfer_cut_short_is_completed_by_the_next_borrower() {
    let cluster = RedisCluster::start(3, 0);
    let mut redis = router(&cluster);
    let v = split_voucher(&mut redis, 9, 3);
    let [home, lender, borrower] = [0u8, 1, 2].map(|i| VoucherPart::new(v, i, 3).unwrap());
    let left = |redis: &mut Router, part: VoucherPart| -> i64 {
        field(redis, &keys::voucher_info(part), "remaining")
            .unwrap()
            .parse()
            .unwrap()
    };
    let set_left = |redis: &mut Router, part: VoucherPart, n: i64| {
        let info = keys::voucher_info(part);
        let args = [
            Arg::from(info.as_str()),
            Arg::from("remaining"),
            Arg::Int(n),
        ];
        block_on(redis.execute("HSET", &args)).unwrap();
    };
    // A crash after `lender` lent 2 of its 3 units to `home` and before
    // `home` received them: they are only in the lender's note, from a
    // minute ago. `home` and `borrower` have sold theirs.
    let lent = keys::voucher_lent(lender);
    let note = |redis: &mut Router| {
        let text = format!("{}|2|{}", home.reference(), now_ms() - 60_000);
        let args = [
            Arg::from(lent.as_str()),
            Arg::from("crashed"),
            Arg::from(text.as_str()),
        ];
        block_on(redis.execute("HSET", &args)).unwrap();
    };
    set_left(&mut redis, lender, 1);
    note(&mut redis);
    set_left(&mut redis, home, 0);
    set_left(&mut redis, borrower, 0);
    assert_eq!(
        remaining(&mut redis, v),
        3,
        "units in transfer are for sale"
    );

    // `borrower` runs out and borrows: `home` has nothing; `lender` has one
    // unit and the stale note, which is completed on the way.
    assert!(
        block_on(voucher::borrow(
            &mut redis,
            borrower,
            order_id(77),
            OrderExport::Off
        ))
        .unwrap()
    );
    assert_eq!(count(&mut redis, "HLEN", &lent), 0, "the note is cleared");
    let parts = [home, lender, borrower].map(|p| left(&mut redis, p));
    assert_eq!(parts, [2, 0, 1]);

    // A crash after `home` received and before the note was cleared: the
    // next borrower completes the note again, and `home` receives nothing
    // twice. (`home` and `borrower` have sold what they had.)
    note(&mut redis);
    set_left(&mut redis, home, 0);
    set_left(&mut redis, borrower, 0);
    let found = block_on(voucher::borrow(
        &mut redis,
        borrower,
        order_id(78),
        OrderExport::Off,
    ))
    .unwrap();
    assert!(!found, "nothing is left anywhere");
    assert_eq!(count(&mut redis, "HLEN", &lent), 0);
    let parts = [home, lender, borrower].map(|p| left(&mut redis, p));
    assert_eq!(parts, [0, 0, 0], "no unit made");
    assert_eq!(remaining(&mut redis, v), 0);
}
