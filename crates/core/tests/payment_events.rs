//! The payment provider's events in the orders they really arrive in, run
//! against a real Redis through the core: a refund before its payment,
//! retries of an event whose outcome could still change, and the money
//! events the shop must act on by hand, each listed once for the operator.

use flashspin_core::ids::VoucherId;
use flashspin_core::keys;
use flashspin_core::order::{
    self, Change, EventId, Money, Order, OrderExport, OrderStatus, PayType, Settlement,
};
use flashspin_core::page::PageSize;
use flashspin_core::payment;
use flashspin_core::shard::Shards;
use flashspin_core::voucher::buy;
use flashspin_testkit::block_on;
use flashspin_testkit::{NativeRedis, RedisServer};

mod common;
use common::*;

const EXPORT: OrderExport = OrderExport::On;
const PAY_SECS: u32 = 900;

fn event(id: &str) -> EventId {
    EventId::parse(id).unwrap()
}

const PAID: Money = Money::Paid {
    amount: PAY_VALUE,
    pay_type: PayType::Card,
};

/// Settles `money` for `order` by event `id`: the settlement and whether it
/// was a replay.
fn settle(redis: &mut NativeRedis, order: &Order, id: &str, money: Money) -> (Settlement, bool) {
    let settled = block_on(order::settle(
        redis,
        order.voucher_id,
        order.id,
        &event(id),
        money,
        EXPORT,
    ))
    .unwrap();
    assert_eq!(
        settled.order,
        read(redis, order),
        "the order it answers with"
    );
    (settled.settlement, settled.replayed)
}

fn read(redis: &mut NativeRedis, order: &Order) -> Order {
    block_on(order::change(
        redis,
        order.voucher_id,
        order.id,
        Change::Read,
        None,
        EXPORT,
    ))
    .unwrap()
}

fn remaining(redis: &mut NativeRedis, v: VoucherId) -> i64 {
    block_on(flashspin_core::voucher::get(redis, v, EXPORT))
        .unwrap()
        .unwrap()
        .remaining
}

/// The operator's list: the count and (outcome, order, event) of each entry.
fn attention(redis: &mut NativeRedis, v: VoucherId) -> (u64, Vec<(String, String, String)>) {
    let found = block_on(payment::attention(
        redis,
        &[v.into()],
        PageSize::parse(None).unwrap(),
    ))
    .unwrap();
    let events = found
        .events
        .into_iter()
        .map(|e| (e.outcome, e.order_id.to_string(), e.event_id))
        .collect();
    (found.count, events)
}

fn outbox_len(server: &RedisServer, v: VoucherId) -> i64 {
    redis::cmd("XLEN")
        .arg(keys::voucher_outbox(v))
        .query(&mut server.conn())
        .unwrap()
}

#[test]
fn a_refund_that_arrives_before_its_payment_is_applied_when_the_payment_comes() {
    let server = RedisServer::start();
    let mut redis = server.native();
    let v = on_sale(&mut redis, 10);
    let a = block_on(buy(
        &mut redis,
        v,
        user(1),
        order_id(1),
        PAY_SECS,
        EXPORT,
        Shards::ONE,
        &mut 1,
    ))
    .unwrap();
    let exported = outbox_len(&server, v);

    // Early: kept, not final. Its retries are looked at afresh and change
    // nothing more (no order change, so nothing in the outbox).
    for _ in 0..3 {
        assert_eq!(
            settle(&mut redis, &a, "evt_refund", Money::Refunded),
            (Settlement::RefundPending, false)
        );
        assert_eq!(read(&mut redis, &a).status, OrderStatus::Unpaid);
    }
    assert_eq!(outbox_len(&server, v), exported);

    // The payment: the order goes straight to refunded, pay and refund
    // times both set; the unit stays sold, as for any refund.
    assert_eq!(
        settle(&mut redis, &a, "evt_pay", PAID),
        (Settlement::PaidAndRefunded, false)
    );
    let refunded = read(&mut redis, &a);
    assert_eq!(refunded.status, OrderStatus::Refunded);
    assert_eq!(refunded.pay_type, Some(PayType::Card));
    assert!(refunded.pay_ms.is_some() && refunded.refund_ms == refunded.pay_ms);
    assert_eq!(remaining(&mut redis, v), 9);
    assert_eq!(
        outbox_len(&server, v),
        exported + 1,
        "one change, one event"
    );

    // Both events are now final: retries replay them.
    assert_eq!(
        settle(&mut redis, &a, "evt_pay", PAID),
        (Settlement::PaidAndRefunded, true)
    );
    assert_eq!(
        settle(&mut redis, &a, "evt_refund", Money::Refunded),
        (Settlement::Refunded, false),
        "the refund that waited: done now, and kept from here on"
    );
    assert_eq!(
        settle(&mut redis, &a, "evt_refund", Money::Refunded),
        (Settlement::Refunded, true)
    );
    // Another refund event for the same order has nothing to do.
    assert_eq!(
        settle(&mut redis, &a, "evt_refund_2", Money::Refunded),
        (Settlement::AlreadyRefunded, false)
    );
    assert_eq!(read(&mut redis, &a), refunded);
    assert_eq!(
        attention(&mut redis, v),
        (0, vec![]),
        "nothing to do by hand"
    );
}

#[test]
fn money_the_shop_must_return_is_answered_handled_and_listed_once() {
    let server = RedisServer::start();
    let mut redis = server.native();
    let v = on_sale(&mut redis, 10);
    let mismatched = block_on(buy(
        &mut redis,
        v,
        user(1),
        order_id(1),
        PAY_SECS,
        EXPORT,
        Shards::ONE,
        &mut 1,
    ))
    .unwrap();
    let twice = block_on(buy(
        &mut redis,
        v,
        user(2),
        order_id(2),
        PAY_SECS,
        EXPORT,
        Shards::ONE,
        &mut 1,
    ))
    .unwrap();
    let cancelled = block_on(buy(
        &mut redis,
        v,
        user(3),
        order_id(3),
        PAY_SECS,
        EXPORT,
        Shards::ONE,
        &mut 1,
    ))
    .unwrap();
    let used = block_on(buy(
        &mut redis,
        v,
        user(4),
        order_id(4),
        PAY_SECS,
        EXPORT,
        Shards::ONE,
        &mut 1,
    ))
    .unwrap();

    // Another amount: the order stays unpaid; final, so a retry replays it
    // and is not listed again.
    let wrong = Money::Paid {
        amount: PAY_VALUE + 1,
        pay_type: PayType::Card,
    };
    assert_eq!(
        settle(&mut redis, &mismatched, "evt_wrong", wrong),
        (Settlement::AmountMismatch, false)
    );
    assert_eq!(
        settle(&mut redis, &mismatched, "evt_wrong", wrong),
        (Settlement::AmountMismatch, true)
    );
    assert_eq!(read(&mut redis, &mismatched).status, OrderStatus::Unpaid);
    // The right payment still pays it.
    assert_eq!(
        settle(&mut redis, &mismatched, "evt_right", PAID).0,
        Settlement::Paid
    );

    // Paid twice by two events.
    assert_eq!(
        settle(&mut redis, &twice, "evt_1st", PAID).0,
        Settlement::Paid
    );
    let paid = read(&mut redis, &twice);
    for replayed in [false, true] {
        assert_eq!(
            settle(&mut redis, &twice, "evt_2nd", PAID),
            (Settlement::DuplicatePayment, replayed)
        );
    }
    assert_eq!(
        read(&mut redis, &twice),
        paid,
        "the second payment changes nothing"
    );

    // Paid after the buyer cancelled: nothing moves, the unit stays on sale.
    block_on(order::change(
        &mut redis,
        v,
        cancelled.id,
        Change::Cancel,
        None,
        EXPORT,
    ))
    .unwrap();
    let before = (read(&mut redis, &cancelled), remaining(&mut redis, v));
    assert_eq!(
        settle(&mut redis, &cancelled, "evt_late", PAID),
        (Settlement::LatePayment, false)
    );
    assert_eq!(
        (read(&mut redis, &cancelled), remaining(&mut redis, v)),
        before
    );

    // Refunded after it was used at the counter.
    settle(&mut redis, &used, "evt_used_paid", PAID);
    block_on(order::change(
        &mut redis,
        v,
        used.id,
        Change::Use,
        None,
        EXPORT,
    ))
    .unwrap();
    assert_eq!(
        settle(&mut redis, &used, "evt_used_refund", Money::Refunded),
        (Settlement::RefundAfterUse, false)
    );
    assert_eq!(read(&mut redis, &used).status, OrderStatus::Used);

    let (count, mut listed) = attention(&mut redis, v);
    listed.sort();
    let mut expected = vec![
        ("amount_mismatch", mismatched.id, "evt_wrong"),
        ("duplicate_payment", twice.id, "evt_2nd"),
        ("late_payment", cancelled.id, "evt_late"),
        ("refund_after_use", used.id, "evt_used_refund"),
    ]
    .into_iter()
    .map(|(o, id, e)| (o.to_string(), id.to_string(), e.to_string()))
    .collect::<Vec<_>>();
    expected.sort();
    assert_eq!((count, listed), (4, expected));
}

#[test]
fn a_late_payment_whose_refund_came_first_needs_nothing() {
    let server = RedisServer::start();
    let mut redis = server.native();
    let v = on_sale(&mut redis, 10);
    let a = block_on(buy(
        &mut redis,
        v,
        user(1),
        order_id(1),
        PAY_SECS,
        EXPORT,
        Shards::ONE,
        &mut 1,
    ))
    .unwrap();
    let b = block_on(buy(
        &mut redis,
        v,
        user(2),
        order_id(2),
        PAY_SECS,
        EXPORT,
        Shards::ONE,
        &mut 1,
    ))
    .unwrap();

    // Refund pending, then the buyer cancels before the payment arrives.
    assert_eq!(
        settle(&mut redis, &a, "evt_a_refund", Money::Refunded).0,
        Settlement::RefundPending
    );
    block_on(order::change(
        &mut redis,
        v,
        a.id,
        Change::Cancel,
        None,
        EXPORT,
    ))
    .unwrap();
    assert_eq!(
        settle(&mut redis, &a, "evt_a_pay", PAID),
        (Settlement::LateRefunded, false)
    );
    // The refund's retry sees the order as it now is, and that is final.
    assert_eq!(
        settle(&mut redis, &a, "evt_a_refund", Money::Refunded),
        (Settlement::RefundRecorded, false)
    );
    assert_eq!(
        settle(&mut redis, &a, "evt_a_refund", Money::Refunded),
        (Settlement::RefundRecorded, true)
    );

    // Cancelled first, then the refund, then the late payment.
    block_on(order::change(
        &mut redis,
        v,
        b.id,
        Change::Cancel,
        None,
        EXPORT,
    ))
    .unwrap();
    assert_eq!(
        settle(&mut redis, &b, "evt_b_refund", Money::Refunded).0,
        Settlement::RefundRecorded
    );
    assert_eq!(
        settle(&mut redis, &b, "evt_b_pay", PAID).0,
        Settlement::LateRefunded
    );
    assert_eq!(read(&mut redis, &b).status, OrderStatus::Cancelled);
    assert_eq!(attention(&mut redis, v), (0, vec![]));
}

#[test]
fn without_an_event_a_refund_of_an_unpaid_order_is_refused_and_noted_nowhere() {
    let server = RedisServer::start();
    let mut redis = server.native();
    let v = on_sale(&mut redis, 10);
    let a = block_on(buy(
        &mut redis,
        v,
        user(1),
        order_id(1),
        PAY_SECS,
        EXPORT,
        Shards::ONE,
        &mut 1,
    ))
    .unwrap();
    assert!(
        block_on(order::change(
            &mut redis,
            v,
            a.id,
            Change::Refund,
            None,
            EXPORT
        ))
        .is_err()
    );
    // A payment afterwards just pays: no refund was noted.
    assert_eq!(settle(&mut redis, &a, "evt_pay", PAID).0, Settlement::Paid);
}
