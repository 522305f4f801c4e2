//! The voucher order lifecycle run directly against a real Redis through the
//! core: `buy_voucher.lua`, `order_change.lua`, `voucher_read.lua` (all with
//! `orders.lua`), `record_order.lua` and `order_locate.lua`, and the order
//! pages read from them.
//!
//! It covers every change from every status (the right ones change exactly
//! what they should, the wrong ones nothing, neither the order nor the
//! stock), expiry at the pay deadline and the lazy reclaim of the unit,
//! cancelling by the buyer, webhook events answered once (also when twenty
//! arrive at once), the stock invariant `remaining + active orders = stock`
//! while buyers race, pay and miss their deadline (with an outbox event for
//! each change), the index that finds an order's voucher, and a user's
//! order pages filtered by status.

use flashspin_testkit::block_on;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use flashspin_core::ApiError;
use flashspin_core::error::Conflict;
use flashspin_core::ids::{OrderId, UserId, VoucherId};
use flashspin_core::keys;
use flashspin_core::order::{
    self, Change, EVENT_TTL_MS, EventId, Located, Money, Order, OrderExport, OrderStatus, PayType,
    RECLAIM_LIMIT, Settlement,
};
use flashspin_core::shard::Shards;
use flashspin_core::voucher::{OrdersCursor, buy, get, orders_page};
use flashspin_testkit::{NativeRedis, RedisServer};

mod common;
use common::*;

/// Every change here also goes to the outbox (order_outbox.rs checks what
/// it says), so that the outbox is tested under races too.
const EXPORT: OrderExport = OrderExport::On;

/// How long buyers have to pay when the test does not wait for the deadline.
const PAY_SECS: u32 = 900;

fn event(id: &str) -> EventId {
    EventId::parse(id).unwrap()
}

fn pay(amount: i64, pay_type: PayType) -> Change {
    Change::Pay { amount, pay_type }
}

/// Settles `change` (a payment or a refund) as the webhook's event `e`:
/// the order when the change was made (paid, refunded), else what the
/// event came to. No such order is `Err(None)`.
fn settled(
    redis: &mut NativeRedis,
    v: VoucherId,
    id: OrderId,
    change: Change,
    e: &EventId,
) -> Result<Order, Option<Settlement>> {
    let money = match change {
        Change::Pay { amount, pay_type } => Money::Paid { amount, pay_type },
        Change::Refund => Money::Refunded,
        other => panic!("{other:?} is no event"),
    };
    match block_on(order::settle(redis, v, id, e, money, EXPORT)) {
        Ok(s) if matches!(s.settlement, Settlement::Paid | Settlement::Refunded) => Ok(s.order),
        Ok(s) => Err(Some(s.settlement)),
        Err(ApiError::NotFound) => Err(None),
        Err(other) => panic!("{other:?}"),
    }
}

fn remaining(redis: &mut NativeRedis, v: VoucherId) -> i64 {
    block_on(get(redis, v, EXPORT)).unwrap().unwrap().remaining
}

/// The order as it is now (by anyone: no owner).
fn read(redis: &mut NativeRedis, v: VoucherId, id: OrderId) -> Order {
    block_on(order::change(redis, v, id, Change::Read, None, EXPORT)).unwrap()
}

/// The voucher's active orders, counted straight from its buyers.
fn active(server: &RedisServer, v: VoucherId) -> i64 {
    redis::cmd("HLEN")
        .arg(keys::voucher_buyers(v))
        .query(&mut server.conn())
        .unwrap()
}

fn holds_an_order(server: &RedisServer, v: VoucherId, u: UserId) -> bool {
    redis::cmd("HEXISTS")
        .arg(keys::voucher_buyers(v))
        .arg(u.to_string())
        .query(&mut server.conn())
        .unwrap()
}

/// Sleeps until `deadline_ms` (local clock, which is Redis's) has passed by
/// a margin.
fn sleep_past(deadline_ms: i64) {
    let wait = deadline_ms + 100 - now_ms();
    if wait > 0 {
        thread::sleep(Duration::from_millis(wait as u64));
    }
}

/// Buys and checks everything the new order says about itself.
fn buy_ok(redis: &mut NativeRedis, v: VoucherId, u: UserId, id: OrderId, pay_secs: u32) -> Order {
    let before = now_ms();
    let order = block_on(buy(redis, v, u, id, pay_secs, EXPORT, Shards::ONE, &mut 1)).unwrap();
    let after = now_ms();
    assert!(
        (before..=after).contains(&order.create_ms),
        "{before} {order:?} {after}"
    );
    assert_eq!(
        order,
        Order {
            id,
            voucher_id: v,
            part: v.into(),
            user_id: u,
            status: OrderStatus::Unpaid,
            amount: PAY_VALUE,
            pay_type: None,
            create_ms: order.create_ms,
            pay_deadline_ms: Some(order.create_ms + i64::from(pay_secs) * 1000),
            pay_ms: None,
            use_ms: None,
            refund_ms: None,
            update_ms: order.create_ms,
        }
    );
    assert_eq!(read(redis, v, id), order);
    order
}

/// A change from each status that allows it: asserts the status and times it
/// set, that nothing else moved and what it did to the stock.
fn change_ok(
    redis: &mut NativeRedis,
    v: VoucherId,
    id: OrderId,
    change: Change,
    owner: Option<UserId>,
) -> Order {
    let before = read(redis, v, id);
    let stock_before = remaining(redis, v);
    let t0 = now_ms();
    let changed = block_on(order::change(redis, v, id, change, owner, EXPORT)).unwrap();
    let t1 = now_ms();
    let at = changed.update_ms;
    assert!((t0..=t1).contains(&at), "{t0} {changed:?} {t1}");
    let (expected, stock_change) = match (before.status, change) {
        (OrderStatus::Unpaid, Change::Cancel) => (
            Order {
                status: OrderStatus::Cancelled,
                update_ms: at,
                ..before.clone()
            },
            1,
        ),
        (OrderStatus::Unpaid, Change::Pay { pay_type, .. }) => (
            Order {
                status: OrderStatus::Paid,
                pay_type: Some(pay_type),
                pay_ms: Some(at),
                update_ms: at,
                ..before.clone()
            },
            0,
        ),
        (OrderStatus::Paid, Change::Use) => (
            Order {
                status: OrderStatus::Used,
                use_ms: Some(at),
                update_ms: at,
                ..before.clone()
            },
            0,
        ),
        (OrderStatus::Paid, Change::Refund) => (
            Order {
                status: OrderStatus::Refunded,
                refund_ms: Some(at),
                update_ms: at,
                ..before.clone()
            },
            0,
        ),
        other => panic!("not a transition: {other:?}"),
    };
    assert_eq!(changed, expected);
    assert_eq!(read(redis, v, id), expected);
    assert_eq!(remaining(redis, v), stock_before + stock_change);
    changed
}

/// A change that must be refused with `error` and change nothing.
fn change_refused(
    redis: &mut NativeRedis,
    v: VoucherId,
    id: OrderId,
    change: Change,
    owner: Option<UserId>,
    error: ApiError,
) {
    let before = read(redis, v, id);
    let stock_before = remaining(redis, v);
    assert_eq!(
        block_on(order::change(redis, v, id, change, owner, EXPORT)),
        Err(error),
        "{change:?} from {:?}",
        before.status
    );
    assert_eq!(read(redis, v, id), before, "{change:?}");
    assert_eq!(remaining(redis, v), stock_before, "{change:?}");
}

#[test]
fn every_change_from_every_status() {
    let server = RedisServer::start();
    let mut redis = server.native();
    let v = on_sale(&mut redis, 100);
    let changes = [
        Change::Read,
        Change::Cancel,
        pay(PAY_VALUE, PayType::Card),
        pay(PAY_VALUE - 1, PayType::Card),
        Change::Refund,
        Change::Use,
    ];
    // One order per status and change, each of its own buyer; the orders
    // that are to expire first, so that one wait covers them all.
    let mut cases = Vec::new();
    let mut seq = 0;
    for status in [
        OrderStatus::Expired,
        OrderStatus::Unpaid,
        OrderStatus::Paid,
        OrderStatus::Used,
        OrderStatus::Refunded,
        OrderStatus::Cancelled,
    ] {
        for change in changes {
            seq += 1;
            let u = user(u64::from(seq));
            let pay_secs = if status == OrderStatus::Expired {
                1
            } else {
                PAY_SECS
            };
            let o = buy_ok(&mut redis, v, u, order_id(seq), pay_secs);
            match status {
                OrderStatus::Paid | OrderStatus::Used | OrderStatus::Refunded => {
                    let paid = change_ok(&mut redis, v, o.id, pay(PAY_VALUE, PayType::Card), None);
                    assert_eq!(paid.amount, PAY_VALUE);
                }
                OrderStatus::Cancelled => {
                    change_ok(&mut redis, v, o.id, Change::Cancel, Some(u));
                }
                _ => {}
            }
            match status {
                OrderStatus::Used => {
                    change_ok(&mut redis, v, o.id, Change::Use, None);
                }
                OrderStatus::Refunded => {
                    change_ok(&mut redis, v, o.id, Change::Refund, None);
                }
                _ => {}
            }
            cases.push((status, change, u, o));
        }
    }
    let last_deadline = cases
        .iter()
        .filter(|(status, ..)| *status == OrderStatus::Expired)
        .filter_map(|(_, _, _, o)| o.pay_deadline_ms)
        .max()
        .unwrap();
    sleep_past(last_deadline);

    // 36 sold, 6 cancelled, 6 expired and back on sale with this read.
    assert_eq!(remaining(&mut redis, v), 100 - 36 + 6 + 6);
    assert_eq!(active(&server, v), 36 - 6 - 6);

    for (status, change, u, o) in cases {
        let now = read(&mut redis, v, o.id);
        assert_eq!(now.status, status, "{now:?}");
        // Times so far, by status.
        let has = |t: Option<i64>| t.is_some();
        let (paid, used, refunded) = match status {
            OrderStatus::Paid => (true, false, false),
            OrderStatus::Used => (true, true, false),
            OrderStatus::Refunded => (true, false, true),
            _ => (false, false, false),
        };
        assert_eq!(
            (has(now.pay_ms), has(now.use_ms), has(now.refund_ms)),
            (paid, used, refunded),
            "{now:?}"
        );
        assert_eq!(now.pay_type, paid.then_some(PayType::Card), "{now:?}");
        assert_eq!(now.amount, PAY_VALUE);
        assert_eq!(now.create_ms, o.create_ms);
        assert_eq!(now.pay_deadline_ms, o.pay_deadline_ms);
        if status == OrderStatus::Expired {
            // Expired when reclaimed, at or after the deadline.
            assert!(now.update_ms >= o.pay_deadline_ms.unwrap(), "{now:?}");
        }
        assert_eq!(
            holds_an_order(&server, v, u),
            !matches!(status, OrderStatus::Cancelled | OrderStatus::Expired),
            "{now:?}"
        );

        let owner = match change {
            Change::Read | Change::Cancel => Some(u),
            _ => None,
        };
        let right_amount = !matches!(change, Change::Pay { amount, .. } if amount != PAY_VALUE);
        match (status, change) {
            (_, Change::Read) => {
                assert_eq!(
                    block_on(order::change(
                        &mut redis,
                        v,
                        o.id,
                        Change::Read,
                        owner,
                        EXPORT
                    )),
                    Ok(now.clone())
                );
                assert_eq!(read(&mut redis, v, o.id), now);
            }
            (OrderStatus::Unpaid, Change::Cancel) => {
                change_ok(&mut redis, v, o.id, change, owner);
                assert!(!holds_an_order(&server, v, u));
            }
            (OrderStatus::Unpaid, Change::Pay { .. }) if right_amount => {
                change_ok(&mut redis, v, o.id, change, owner);
                assert!(holds_an_order(&server, v, u));
            }
            (OrderStatus::Unpaid, Change::Pay { .. }) => change_refused(
                &mut redis,
                v,
                o.id,
                change,
                owner,
                ApiError::Conflict(Conflict::AmountMismatch),
            ),
            (OrderStatus::Paid, Change::Use | Change::Refund) => {
                change_ok(&mut redis, v, o.id, change, owner);
                assert!(holds_an_order(&server, v, u));
            }
            _ => change_refused(
                &mut redis,
                v,
                o.id,
                change,
                owner,
                ApiError::Conflict(Conflict::InvalidState),
            ),
        }
    }
    // Of the changes, only the unpaid order's cancel gave a unit back.
    assert_eq!(remaining(&mut redis, v), 100 - 36 + 6 + 6 + 1);
    assert_eq!(active(&server, v), 36 - 6 - 6 - 1);
}

#[test]
fn an_order_no_one_knows_is_not_found() {
    let server = RedisServer::start();
    let mut redis = server.native();
    let v = on_sale(&mut redis, 5);
    let o = buy_ok(&mut redis, v, user(1), order_id(1), PAY_SECS);
    for change in [
        Change::Read,
        Change::Cancel,
        pay(PAY_VALUE, PayType::Wechat),
        Change::Refund,
        Change::Use,
    ] {
        assert_eq!(
            block_on(order::change(
                &mut redis,
                v,
                order_id(99),
                change,
                None,
                EXPORT
            )),
            Err(ApiError::NotFound),
            "{change:?}"
        );
        // Another voucher's order is not this voucher's.
        let other = VoucherId::new(v.get() + 1).unwrap();
        assert_eq!(
            block_on(order::change(&mut redis, other, o.id, change, None, EXPORT)),
            Err(ApiError::NotFound),
            "{change:?}"
        );
        // Nor is another user's, whatever the change.
        assert_eq!(
            block_on(order::change(
                &mut redis,
                v,
                o.id,
                change,
                Some(user(2)),
                EXPORT
            )),
            Err(ApiError::NotFound),
            "{change:?}"
        );
    }
    assert_eq!(read(&mut redis, v, o.id), o);
    assert_eq!(remaining(&mut redis, v), 4);
}

#[test]
fn a_second_purchase_shows_the_order_held() {
    let server = RedisServer::start();
    let mut redis = server.native();
    let v = on_sale(&mut redis, 5);
    let o = buy_ok(&mut redis, v, user(1), order_id(1), PAY_SECS);
    assert_eq!(
        block_on(buy(
            &mut redis,
            v,
            user(1),
            order_id(2),
            PAY_SECS,
            EXPORT,
            Shards::ONE,
            &mut 1
        )),
        Err(ApiError::AlreadyPurchased(o.to_json()))
    );
    let paid = change_ok(&mut redis, v, o.id, pay(PAY_VALUE, PayType::Alipay), None);
    let Err(ApiError::AlreadyPurchased(held)) = block_on(buy(
        &mut redis,
        v,
        user(1),
        order_id(3),
        PAY_SECS,
        EXPORT,
        Shards::ONE,
        &mut 1,
    )) else {
        panic!("a paid order is still held");
    };
    assert_eq!(held, paid.to_json());
    assert_eq!(held["status"], "paid");
    // A refunded order is still the user's one order of the voucher.
    change_ok(&mut redis, v, o.id, Change::Refund, None);
    assert!(matches!(
        block_on(buy(
            &mut redis,
            v,
            user(1),
            order_id(4),
            PAY_SECS,
            EXPORT,
            Shards::ONE,
            &mut 1
        )),
        Err(ApiError::AlreadyPurchased(_))
    ));
    assert_eq!(remaining(&mut redis, v), 4);
}

#[test]
fn an_unpaid_order_expires_at_its_deadline_and_its_unit_comes_back() {
    let server = RedisServer::start();
    let mut redis = server.native();
    // Three sales of one unit each, reclaimed by a read of the voucher, by
    // a change of the order and by the next purchase.
    let by_read = on_sale(&mut redis, 1);
    let by_change = on_sale(&mut redis, 1);
    let by_sale = on_sale(&mut redis, 1);
    let a = buy_ok(&mut redis, by_read, user(1), order_id(1), 1);
    let b = buy_ok(&mut redis, by_change, user(1), order_id(2), 1);
    let c = buy_ok(&mut redis, by_sale, user(1), order_id(3), 1);
    for v in [by_read, by_change, by_sale] {
        assert_eq!(remaining(&mut redis, v), 0);
        assert_eq!(
            block_on(buy(
                &mut redis,
                v,
                user(2),
                order_id(10 + v.get() as u32),
                1,
                EXPORT,
                Shards::ONE,
                &mut 1
            )),
            Err(ApiError::Conflict(Conflict::SoldOut))
        );
    }
    let deadline = a.pay_deadline_ms.unwrap();
    assert_eq!(deadline, a.create_ms + 1000);
    sleep_past(c.pay_deadline_ms.unwrap());

    // Read: the unit is back, the order reads expired, a payment comes too
    // late, and the same user may buy again.
    assert_eq!(active(&server, by_read), 1, "reclaimed lazily");
    assert_eq!(remaining(&mut redis, by_read), 1);
    assert_eq!(active(&server, by_read), 0);
    let expired = block_on(order::change(
        &mut redis,
        by_read,
        a.id,
        Change::Read,
        Some(user(1)),
        EXPORT,
    ))
    .unwrap();
    assert_eq!(
        expired,
        Order {
            status: OrderStatus::Expired,
            update_ms: expired.update_ms,
            ..a.clone()
        }
    );
    assert!(expired.update_ms >= deadline, "{expired:?}");
    for change in [
        pay(PAY_VALUE, PayType::Card),
        Change::Cancel,
        Change::Use,
        Change::Refund,
    ] {
        change_refused(
            &mut redis,
            by_read,
            a.id,
            change,
            Some(user(1)),
            ApiError::Conflict(Conflict::InvalidState),
        );
    }
    let again = buy_ok(&mut redis, by_read, user(1), order_id(4), PAY_SECS);
    assert_ne!(again.id, a.id);
    assert_eq!(remaining(&mut redis, by_read), 0);
    assert_eq!(read(&mut redis, by_read, a.id), expired);
    assert_eq!(
        read(&mut redis, by_read, again.id).status,
        OrderStatus::Unpaid
    );

    // A late payment is the first to look: it expires the order itself.
    assert_eq!(
        block_on(order::change(
            &mut redis,
            by_change,
            b.id,
            pay(PAY_VALUE, PayType::Card),
            None,
            EXPORT
        )),
        Err(ApiError::Conflict(Conflict::InvalidState))
    );
    assert_eq!(active(&server, by_change), 0);
    assert_eq!(
        read(&mut redis, by_change, b.id).status,
        OrderStatus::Expired
    );
    assert_eq!(remaining(&mut redis, by_change), 1);

    // The next buyer finds the unit back on sale.
    let other = buy_ok(&mut redis, by_sale, user(2), order_id(5), PAY_SECS);
    assert_eq!(remaining(&mut redis, by_sale), 0);
    assert_eq!(read(&mut redis, by_sale, c.id).status, OrderStatus::Expired);
    assert_eq!(
        block_on(buy(
            &mut redis,
            by_sale,
            user(1),
            order_id(6),
            PAY_SECS,
            EXPORT,
            Shards::ONE,
            &mut 1
        )),
        Err(ApiError::Conflict(Conflict::SoldOut))
    );
    assert_eq!(read(&mut redis, by_sale, other.id), other);
}

#[test]
fn cancelling_gives_the_unit_back_at_once_and_only_the_buyer_may() {
    let server = RedisServer::start();
    let mut redis = server.native();
    let v = on_sale(&mut redis, 1);
    let o = buy_ok(&mut redis, v, user(1), order_id(1), PAY_SECS);
    assert_eq!(
        block_on(buy(
            &mut redis,
            v,
            user(2),
            order_id(2),
            PAY_SECS,
            EXPORT,
            Shards::ONE,
            &mut 1
        )),
        Err(ApiError::Conflict(Conflict::SoldOut))
    );
    // Another user cannot cancel it, nor even see it.
    change_refused(
        &mut redis,
        v,
        o.id,
        Change::Cancel,
        Some(user(2)),
        ApiError::NotFound,
    );
    change_refused(
        &mut redis,
        v,
        o.id,
        Change::Read,
        Some(user(2)),
        ApiError::NotFound,
    );
    assert_eq!(remaining(&mut redis, v), 0);

    let cancelled = change_ok(&mut redis, v, o.id, Change::Cancel, Some(user(1)));
    assert_eq!(cancelled.status, OrderStatus::Cancelled);
    assert_eq!(remaining(&mut redis, v), 1);
    assert_eq!(active(&server, v), 0);
    change_refused(
        &mut redis,
        v,
        o.id,
        Change::Cancel,
        Some(user(1)),
        ApiError::Conflict(Conflict::InvalidState),
    );

    // The buyer may buy again, and cancel again; then someone else buys it.
    let again = buy_ok(&mut redis, v, user(1), order_id(3), PAY_SECS);
    assert_ne!(again.id, o.id);
    assert_eq!(remaining(&mut redis, v), 0);
    change_ok(&mut redis, v, again.id, Change::Cancel, Some(user(1)));
    let theirs = buy_ok(&mut redis, v, user(2), order_id(4), PAY_SECS);
    assert_eq!(remaining(&mut redis, v), 0);
    assert_eq!(active(&server, v), 1);
    assert!(holds_an_order(&server, v, user(2)));
    assert_eq!(read(&mut redis, v, o.id), cancelled);
    assert_eq!(read(&mut redis, v, theirs.id), theirs);
}

#[test]
fn webhook_events_are_answered_once() {
    let server = RedisServer::start();
    let mut redis = server.native();
    let v = on_sale(&mut redis, 10);
    let a = buy_ok(&mut redis, v, user(1), order_id(1), PAY_SECS);
    let b = buy_ok(&mut redis, v, user(2), order_id(2), PAY_SECS);

    // The same payment event twice: one payment, the same answer.
    let e1 = event("evt_pay_1");
    let t0 = now_ms();
    let paid = settled(&mut redis, v, a.id, pay(PAY_VALUE, PayType::Alipay), &e1).unwrap();
    let t1 = now_ms();
    let at = paid.pay_ms.unwrap();
    assert!((t0..=t1).contains(&at), "{t0} {paid:?} {t1}");
    assert_eq!(
        paid,
        Order {
            status: OrderStatus::Paid,
            pay_type: Some(PayType::Alipay),
            pay_ms: Some(at),
            update_ms: at,
            ..a.clone()
        }
    );
    thread::sleep(Duration::from_millis(5));
    for pay_type in [PayType::Alipay, PayType::Card] {
        assert_eq!(
            settled(&mut redis, v, a.id, pay(PAY_VALUE, pay_type), &e1),
            Ok(paid.clone())
        );
    }
    assert_eq!(read(&mut redis, v, a.id), paid);
    let ttl: i64 = redis::cmd("PTTL")
        .arg(keys::voucher_payment_event(v, a.id, "pay", e1.as_str()))
        .query(&mut server.conn())
        .unwrap();
    assert!(EVENT_TTL_MS - 60_000 < ttl && ttl <= EVENT_TTL_MS, "{ttl}");

    // Another event paying the paid order: a second payment, changing
    // nothing, and so is its repeat.
    let e2 = event("evt_pay_2");
    for _ in 0..2 {
        assert_eq!(
            settled(&mut redis, v, a.id, pay(PAY_VALUE, PayType::Card), &e2),
            Err(Some(Settlement::DuplicatePayment))
        );
    }
    assert_eq!(read(&mut redis, v, a.id), paid);

    // A payment of the wrong amount pays nothing, its repeat neither, even
    // with the right amount: the event was answered. Another event pays.
    let e3 = event("evt_pay_3");
    for amount in [PAY_VALUE + 1, PAY_VALUE + 1, PAY_VALUE] {
        assert_eq!(
            settled(&mut redis, v, b.id, pay(amount, PayType::Wechat), &e3),
            Err(Some(Settlement::AmountMismatch)),
            "{amount}"
        );
        assert_eq!(read(&mut redis, v, b.id), b);
    }
    let e4 = event("evt_pay_4");
    let b_paid = settled(&mut redis, v, b.id, pay(PAY_VALUE, PayType::Wechat), &e4).unwrap();
    assert_eq!(b_paid.status, OrderStatus::Paid);
    assert_eq!(b_paid.pay_type, Some(PayType::Wechat));
    // B's mismatched event repeated still gets its own outcome.
    assert_eq!(
        settled(&mut redis, v, b.id, pay(PAY_VALUE, PayType::Wechat), &e3),
        Err(Some(Settlement::AmountMismatch))
    );

    // A refund event: refunds once; a repeat answers alike.
    let r1 = event("evt_refund_1");
    let refunded = settled(&mut redis, v, a.id, Change::Refund, &r1).unwrap();
    assert_eq!(
        refunded,
        Order {
            status: OrderStatus::Refunded,
            refund_ms: refunded.refund_ms,
            update_ms: refunded.refund_ms.unwrap(),
            ..paid.clone()
        }
    );
    assert!(refunded.refund_ms.unwrap() >= at);
    thread::sleep(Duration::from_millis(5));
    assert_eq!(
        settled(&mut redis, v, a.id, Change::Refund, &r1),
        Ok(refunded.clone())
    );
    // Without an event, a second refund is a wrong change.
    change_refused(
        &mut redis,
        v,
        a.id,
        Change::Refund,
        None,
        ApiError::Conflict(Conflict::InvalidState),
    );
    // The first payment event repeated: the same outcome, the order as it
    // now is, and nothing paid again.
    assert_eq!(
        settled(&mut redis, v, a.id, pay(PAY_VALUE, PayType::Alipay), &e1),
        Ok(refunded.clone())
    );
    assert_eq!(read(&mut redis, v, a.id), refunded);

    // An event about no order is not found, and is not kept either way.
    let e5 = event("evt_nothing");
    for _ in 0..2 {
        assert_eq!(
            settled(
                &mut redis,
                v,
                order_id(99),
                pay(PAY_VALUE, PayType::Card),
                &e5
            ),
            Err(None)
        );
    }
    assert_eq!(remaining(&mut redis, v), 8);
    assert_eq!(active(&server, v), 2);
}

#[test]
fn twenty_deliveries_of_one_event_at_once_pay_once() {
    let server = RedisServer::start();
    let mut redis = server.native();
    let v = on_sale(&mut redis, 3);
    let o = buy_ok(&mut redis, v, user(1), order_id(1), PAY_SECS);
    let barrier = Arc::new(Barrier::new(20));
    let handles: Vec<_> = (0..20)
        .map(|_| {
            let mut redis = server.native();
            let barrier = barrier.clone();
            thread::spawn(move || {
                let e = event("evt_concurrent");
                barrier.wait();
                settled(&mut redis, v, o.id, pay(PAY_VALUE, PayType::Card), &e)
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let first = results[0].clone().unwrap();
    assert_eq!(first.status, OrderStatus::Paid);
    assert_eq!(first.pay_ms, Some(first.update_ms));
    for r in &results {
        assert_eq!(r, &Ok(first.clone()));
    }
    assert_eq!(read(&mut redis, v, o.id), first);
    assert_eq!(
        settled(
            &mut redis,
            v,
            o.id,
            pay(PAY_VALUE, PayType::Card),
            &event("evt_other")
        ),
        Err(Some(Settlement::DuplicatePayment))
    );
    assert_eq!(remaining(&mut redis, v), 2);
}

/// `remaining` and the number of active orders, read together
/// (`MULTI`/`EXEC`, so no script runs between the two).
fn sample(conn: &mut redis::Connection, v: VoucherId) -> (i64, i64) {
    let (remaining, active): (i64, i64) = redis::pipe()
        .atomic()
        .cmd("HGET")
        .arg(keys::voucher_info(v))
        .arg("remaining")
        .cmd("HLEN")
        .arg(keys::voucher_buyers(v))
        .query(conn)
        .unwrap();
    (remaining, active)
}

#[test]
fn stock_is_conserved_while_buyers_race_pay_and_expire() {
    const STOCK: i64 = 50;
    const BUYERS: u32 = 200;
    const PAYERS: usize = 25;
    let server = RedisServer::start();
    let mut redis = server.native();
    let v = on_sale(&mut redis, STOCK);

    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let mut conn = server.conn();
        let stop = stop.clone();
        thread::spawn(move || {
            let mut samples = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                samples.push(sample(&mut conn, v));
                thread::sleep(Duration::from_millis(1));
            }
            samples.push(sample(&mut conn, v));
            samples
        })
    };

    // 200 buyers at once with a second to pay; the first 25 winners pay.
    let payers = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(BUYERS as usize));
    let handles: Vec<_> = (0..BUYERS)
        .map(|i| {
            let mut redis = server.native();
            let barrier = barrier.clone();
            let payers = payers.clone();
            thread::spawn(move || {
                let u = user(1000 + u64::from(i));
                barrier.wait();
                let bought = block_on(buy(
                    &mut redis,
                    v,
                    u,
                    order_id(i + 1),
                    1,
                    EXPORT,
                    Shards::ONE,
                    &mut 1,
                ));
                let mut paid = false;
                if let Ok(o) = &bought
                    && payers.fetch_add(1, Ordering::SeqCst) < PAYERS
                {
                    let p = block_on(order::change(
                        &mut redis,
                        v,
                        o.id,
                        pay(PAY_VALUE, PayType::Card),
                        None,
                        EXPORT,
                    ))
                    .unwrap();
                    assert_eq!(p.status, OrderStatus::Paid);
                    paid = true;
                }
                (bought, paid)
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut paid_orders = Vec::new();
    let mut unpaid_orders = Vec::new();
    for (bought, paid) in results {
        match bought {
            Ok(o) if paid => paid_orders.push(o),
            Ok(o) => unpaid_orders.push(o),
            Err(ApiError::Conflict(Conflict::SoldOut)) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(paid_orders.len(), PAYERS);
    assert_eq!(unpaid_orders.len(), STOCK as usize - PAYERS);
    assert_eq!(sample(&mut server.conn(), v), (0, STOCK));

    // Past every deadline, nothing has moved until something looks.
    let last = unpaid_orders
        .iter()
        .map(|o| o.pay_deadline_ms.unwrap())
        .max()
        .unwrap();
    sleep_past(last);
    assert_eq!(sample(&mut server.conn(), v), (0, STOCK));
    // One read brings back exactly the unpaid units.
    assert_eq!(remaining(&mut redis, v), STOCK - PAYERS as i64);
    assert_eq!(active(&server, v), PAYERS as i64);
    for o in &paid_orders {
        assert_eq!(read(&mut redis, v, o.id).status, OrderStatus::Paid);
        assert!(holds_an_order(&server, v, o.user_id));
    }
    for o in &unpaid_orders {
        assert_eq!(read(&mut redis, v, o.id).status, OrderStatus::Expired);
        assert!(!holds_an_order(&server, v, o.user_id));
    }

    // New buyers race for them: exactly those units sell.
    let barrier = Arc::new(Barrier::new(60));
    let handles: Vec<_> = (0..60u32)
        .map(|i| {
            let mut redis = server.native();
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                block_on(buy(
                    &mut redis,
                    v,
                    user(5000 + u64::from(i)),
                    order_id(1000 + i),
                    PAY_SECS,
                    EXPORT,
                    Shards::ONE,
                    &mut 1,
                ))
            })
        })
        .collect();
    let second: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(
        second.iter().filter(|r| r.is_ok()).count(),
        STOCK as usize - PAYERS
    );
    assert!(
        second
            .iter()
            .all(|r| r.is_ok() || *r == Err(ApiError::Conflict(Conflict::SoldOut)))
    );
    assert_eq!(remaining(&mut redis, v), 0);

    stop.store(true, Ordering::Relaxed);
    let samples = sampler.join().unwrap();
    assert!(samples.len() > 100, "{} samples", samples.len());
    for &(remaining, active) in &samples {
        assert_eq!(remaining + active, STOCK, "{remaining} + {active}");
        assert!((0..=STOCK).contains(&remaining), "{remaining}");
    }
    assert_eq!(samples.last(), Some(&(0, STOCK)));

    // Every change went to the outbox once, each order's versions in turn:
    // 50 purchases, 25 payments, 25 expiries and 25 purchases again.
    let events: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
        .arg(keys::voucher_outbox(v))
        .arg("-")
        .arg("+")
        .query(&mut server.conn())
        .unwrap();
    assert_eq!(events.len(), 125);
    let mut versions: HashMap<String, i64> = HashMap::new();
    for (_, fields) in &events {
        assert_eq!((fields[0].as_str(), fields[2].as_str()), ("id", "version"));
        let version: i64 = fields[3].parse().unwrap();
        let last = versions.insert(fields[1].clone(), version).unwrap_or(0);
        assert_eq!(version, last + 1, "{fields:?}");
    }
    assert_eq!(versions.len(), STOCK as usize + (STOCK as usize - PAYERS));
}

#[test]
fn reclaiming_is_bounded_per_call() {
    let server = RedisServer::start();
    let mut redis = server.native();
    let stock = RECLAIM_LIMIT + 6;
    let v = on_sale(&mut redis, stock);
    let mut last = 0;
    for i in 0..stock {
        let o = block_on(buy(
            &mut redis,
            v,
            user(1 + i as u64),
            order_id(1 + i as u32),
            1,
            EXPORT,
            Shards::ONE,
            &mut 1,
        ))
        .unwrap();
        last = o.pay_deadline_ms.unwrap();
    }
    assert_eq!(remaining(&mut redis, v), 0);
    sleep_past(last);
    assert_eq!(remaining(&mut redis, v), RECLAIM_LIMIT);
    assert_eq!(active(&server, v), stock - RECLAIM_LIMIT);
    assert_eq!(remaining(&mut redis, v), stock);
    assert_eq!(active(&server, v), 0);
}

/// More orders are due than one call reclaims, and the buyer's own is among
/// those left: they may buy again all the same, as a change of that order
/// would expire it at once.
#[test]
fn a_buyer_whose_due_order_is_past_the_reclaim_limit_may_buy_again() {
    let server = RedisServer::start();
    let mut redis = server.native();
    let v = on_sale(&mut redis, RECLAIM_LIMIT + 1);
    for i in 0..RECLAIM_LIMIT {
        block_on(buy(
            &mut redis,
            v,
            user(1 + i as u64),
            order_id(1 + i as u32),
            1,
            EXPORT,
            Shards::ONE,
            &mut 1,
        ))
        .unwrap();
    }
    // Due last of all, so the first reclaim leaves it.
    thread::sleep(Duration::from_millis(5));
    let late = user(1000);
    let o = block_on(buy(
        &mut redis,
        v,
        late,
        order_id(1000),
        1,
        EXPORT,
        Shards::ONE,
        &mut 1,
    ))
    .unwrap();
    sleep_past(o.pay_deadline_ms.unwrap());
    let again = block_on(buy(
        &mut redis,
        v,
        late,
        order_id(1001),
        PAY_SECS,
        EXPORT,
        Shards::ONE,
        &mut 1,
    ));
    assert!(
        matches!(&again, Ok(order) if order.id == order_id(1001)),
        "{again:?}"
    );
}

#[test]
fn a_bought_order_is_filed_and_a_retry_mends_a_lost_filing() {
    let server = RedisServer::start();
    let mut redis = server.native();
    let v = on_sale(&mut redis, 5);
    let before = now_ms() as u64 / 1000;
    let o = buy_ok(&mut redis, v, user(7), order_id(1), PAY_SECS);
    let filed = Some(Located {
        part: v.into(),
        user_id: user(7),
    });
    assert_eq!(
        block_on(order::locate(&mut redis, Shards::ONE, o.id))
            .unwrap()
            .0,
        filed,
        "filed"
    );

    // Filing is its own round trip; when it is lost (Redis went away in
    // between, and the buyer was answered 503), the buyer's retry files it.
    let _: () = redis::cmd("DEL")
        .arg(keys::order_index(Shards::ONE.first(), o.id))
        .arg(keys::user_voucher_orders(Shards::ONE.first(), user(7)))
        .query(&mut server.conn())
        .unwrap();
    assert_eq!(
        block_on(order::locate(&mut redis, Shards::ONE, o.id))
            .unwrap()
            .0,
        None
    );
    let retry = block_on(buy(
        &mut redis,
        v,
        user(7),
        order_id(2),
        PAY_SECS,
        EXPORT,
        Shards::ONE,
        &mut 1,
    ));
    assert!(
        matches!(retry, Err(ApiError::AlreadyPurchased(_))),
        "{retry:?}"
    );
    block_on(order::record(&mut redis, Shards::ONE, &o)).unwrap();
    let (located, unix_secs) = block_on(order::locate(&mut redis, Shards::ONE, o.id)).unwrap();
    assert_eq!(located, filed);
    let after = now_ms() as u64 / 1000;
    assert!((before..=after).contains(&unix_secs), "{unix_secs}");
    assert_eq!(
        block_on(order::locate(&mut redis, Shards::ONE, order_id(2)))
            .unwrap()
            .0,
        None
    );

    // Filed once in the buyer's list, by creation time.
    let listed: Vec<(String, i64)> = redis::cmd("ZRANGE")
        .arg(keys::user_voucher_orders(Shards::ONE.first(), user(7)))
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query(&mut server.conn())
        .unwrap();
    assert_eq!(listed, [(format!("{v}:{}", o.id), o.create_ms)]);
}

#[test]
fn order_pages_filter_by_status() {
    let server = RedisServer::start();
    let mut redis = server.native();
    let vs: Vec<VoucherId> = (0..4).map(|_| on_sale(&mut redis, 5)).collect();
    let me = user(1);
    let mut seq = 0;
    let mut place = |redis: &mut NativeRedis, v: VoucherId, u: UserId| {
        // Distinct creation times, so the newest-first order is known.
        thread::sleep(Duration::from_millis(2));
        seq += 1;
        let o = buy_ok(redis, v, u, order_id(seq), PAY_SECS);
        block_on(order::record(redis, Shards::ONE, &o)).unwrap();
        o
    };
    let paid = place(&mut redis, vs[0], me);
    let unpaid = place(&mut redis, vs[1], me);
    let cancelled = place(&mut redis, vs[2], me);
    let cancelled = change_ok(&mut redis, vs[2], cancelled.id, Change::Cancel, Some(me));
    let rebought = place(&mut redis, vs[2], me);
    let used = place(&mut redis, vs[3], me);
    let someone_elses = place(&mut redis, vs[0], user(2));
    let paid = change_ok(
        &mut redis,
        vs[0],
        paid.id,
        pay(PAY_VALUE, PayType::Card),
        None,
    );
    change_ok(
        &mut redis,
        vs[3],
        used.id,
        pay(PAY_VALUE, PayType::Card),
        None,
    );
    let used = change_ok(&mut redis, vs[3], used.id, Change::Use, None);
    assert_eq!(
        block_on(orders_page(
            &mut redis,
            Shards::ONE,
            user(2),
            None,
            None,
            20,
            now_ms()
        ))
        .unwrap(),
        (vec![someone_elses], None)
    );

    let now = now_ms();
    let page = |redis: &mut NativeRedis, status: Option<OrderStatus>, now: i64| {
        let (orders, next) =
            block_on(orders_page(redis, Shards::ONE, me, status, None, 20, now)).unwrap();
        assert_eq!(next, None);
        orders
    };
    assert_eq!(
        page(&mut redis, None, now),
        [&used, &rebought, &cancelled, &unpaid, &paid].map(Clone::clone)
    );
    for (status, expected) in [
        (OrderStatus::Unpaid, vec![&rebought, &unpaid]),
        (OrderStatus::Paid, vec![&paid]),
        (OrderStatus::Used, vec![&used]),
        (OrderStatus::Refunded, vec![]),
        (OrderStatus::Cancelled, vec![&cancelled]),
        (OrderStatus::Expired, vec![]),
    ] {
        let expected: Vec<Order> = expected.into_iter().cloned().collect();
        assert_eq!(page(&mut redis, Some(status), now), expected, "{status:?}");
    }

    // At a time past their deadlines the unpaid orders read expired, as
    // of their deadlines.
    let later = rebought.pay_deadline_ms.unwrap();
    let as_expired = |o: &Order| Order {
        status: OrderStatus::Expired,
        update_ms: o.pay_deadline_ms.unwrap(),
        ..o.clone()
    };
    assert_eq!(
        page(&mut redis, Some(OrderStatus::Expired), later),
        [as_expired(&rebought), as_expired(&unpaid)]
    );
    assert_eq!(
        page(&mut redis, Some(OrderStatus::Unpaid), later),
        Vec::<Order>::new()
    );

    // Pages of two entries of the list, filtered: short pages, then none.
    let mut cursor: Option<OrdersCursor> = None;
    let mut pages = Vec::new();
    loop {
        let (orders, next) = block_on(orders_page(
            &mut redis,
            Shards::ONE,
            me,
            Some(OrderStatus::Unpaid),
            cursor.as_ref(),
            2,
            now,
        ))
        .unwrap();
        pages.push(orders.into_iter().map(|o| o.id).collect::<Vec<_>>());
        match next {
            Some(next) => {
                assert_eq!(OrdersCursor::parse(&next.to_string()).unwrap(), next);
                cursor = Some(next);
            }
            None => break,
        }
    }
    assert_eq!(pages, [vec![rebought.id], vec![unpaid.id], vec![]]);
}
