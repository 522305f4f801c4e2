//! The order outbox, run against a real Redis through the core: every
//! change of an order (buying, cancelling, paying, using, refunding, and
//! expiry wherever a script finds it due) appends exactly one event with
//! the order as it is after the change and its next `version`, in the
//! script that makes the change; a refusal or a read appends nothing;
//! with export off no outbox is written but versions still count; and the
//! exporter is woken once while its wake-up flag lives.

use flashspin_testkit::block_on;
use std::collections::HashMap;
use std::thread;
use std::time::Duration;

use flashspin_core::ApiError;
use flashspin_core::error::Conflict;
use flashspin_core::ids::{OrderId, ShopId, VoucherId};
use flashspin_core::keys;
use flashspin_core::order::{
    self, Change, EventId, Money, Order, OrderExport, OrderStatus, PayType,
};
use flashspin_core::shard::Shards;
use flashspin_core::voucher::{self};
use flashspin_testkit::{NativeRedis, RedisServer};

mod common;
use common::*;

const ON: OrderExport = OrderExport::On;
const OFF: OrderExport = OrderExport::Off;
const PAY_SECS: u32 = 900;

/// A payment of the order's amount, as the webhook reports it.
const PAID: Money = Money::Paid {
    amount: PAY_VALUE,
    pay_type: PayType::Card,
};

fn pay(amount: i64) -> Change {
    Change::Pay {
        amount,
        pay_type: PayType::Wechat,
    }
}

fn sleep_past(deadline_ms: i64) {
    let wait = deadline_ms + 100 - now_ms();
    if wait > 0 {
        thread::sleep(Duration::from_millis(wait as u64));
    }
}

/// An event's fields, in the order the scripts write them.
type Fields = Vec<(String, String)>;

/// What the event of `order` at `version` must say: its whole state.
fn snapshot(order: &Order, version: i64) -> Fields {
    let ms = |t: Option<i64>| t.map(|t| t.to_string()).unwrap_or_default();
    [
        ("id", order.id.to_string()),
        ("version", version.to_string()),
        ("user_id", order.user_id.to_string()),
        ("status", order.status.name().to_string()),
        ("amount", order.amount.to_string()),
        (
            "pay_type",
            order.pay_type.map(PayType::name).unwrap_or("").to_string(),
        ),
        ("created", order.create_ms.to_string()),
        ("deadline", ms(order.pay_deadline_ms)),
        ("pay_time", ms(order.pay_ms)),
        ("use_time", ms(order.use_ms)),
        ("refund_time", ms(order.refund_ms)),
        ("updated", order.update_ms.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// A voucher's outbox as a test reads it: what it held when last looked at.
struct Outbox<'a> {
    server: &'a RedisServer,
    key: String,
    seen: usize,
}

impl<'a> Outbox<'a> {
    fn of(server: &'a RedisServer, v: VoucherId) -> Self {
        Self {
            server,
            key: keys::voucher_outbox(v),
            seen: 0,
        }
    }

    /// Every entry: its stream id and its fields.
    fn all(&self) -> Vec<(String, Fields)> {
        let entries: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
            .arg(&self.key)
            .arg("-")
            .arg("+")
            .query(&mut self.server.conn())
            .unwrap();
        entries
            .into_iter()
            .map(|(id, flat)| {
                let fields = flat
                    .chunks(2)
                    .map(|kv| (kv[0].clone(), kv[1].clone()))
                    .collect();
                (id, fields)
            })
            .collect()
    }

    /// The entries appended since the last look.
    fn new_events(&mut self) -> Vec<Fields> {
        let all = self.all();
        let new = all[self.seen..].iter().map(|(_, f)| f.clone()).collect();
        self.seen = all.len();
        new
    }

    /// Exactly one event appended since the last look: the order as it now
    /// is, at `version`.
    fn expect_one(&mut self, redis: &mut NativeRedis, v: VoucherId, id: OrderId, version: i64) {
        let now = block_on(order::change(redis, v, id, Change::Read, None, ON)).unwrap();
        assert_eq!(self.new_events(), [snapshot(&now, version)], "{now:?}");
        assert_eq!(version_of(self.server, v, id), version);
    }

    fn expect_none(&mut self, what: &str) {
        assert_eq!(self.new_events(), Vec::<Fields>::new(), "{what}");
    }
}

/// The `version` field of an order's record.
fn version_of(server: &RedisServer, v: VoucherId, id: OrderId) -> i64 {
    redis::cmd("HGET")
        .arg(keys::voucher_order(v, id))
        .arg("version")
        .query(&mut server.conn())
        .unwrap()
}

fn exists(server: &RedisServer, key: &str) -> bool {
    redis::cmd("EXISTS")
        .arg(key)
        .query(&mut server.conn())
        .unwrap()
}

#[test]
fn every_change_appends_one_event_with_the_order_after_it() {
    let server = RedisServer::start();
    let mut redis = server.native();
    let v = on_sale(&mut redis, 10);
    let mut outbox = Outbox::of(&server, v);

    // Bought, then cancelled by its buyer.
    let a = block_on(voucher::buy(
        &mut redis,
        v,
        user(1),
        order_id(1),
        PAY_SECS,
        ON,
        Shards::ONE,
        &mut 1,
    ))
    .unwrap();
    outbox.expect_one(&mut redis, v, a.id, 1);
    assert_eq!(outbox.all()[0].1, snapshot(&a, 1), "the order as bought");
    block_on(order::change(
        &mut redis,
        v,
        a.id,
        Change::Cancel,
        Some(user(1)),
        ON,
    ))
    .unwrap();
    outbox.expect_one(&mut redis, v, a.id, 2);

    // Bought, paid, used.
    let b = block_on(voucher::buy(
        &mut redis,
        v,
        user(2),
        order_id(2),
        PAY_SECS,
        ON,
        Shards::ONE,
        &mut 1,
    ))
    .unwrap();
    outbox.expect_one(&mut redis, v, b.id, 1);
    block_on(order::change(&mut redis, v, b.id, pay(PAY_VALUE), None, ON)).unwrap();
    outbox.expect_one(&mut redis, v, b.id, 2);
    block_on(order::change(&mut redis, v, b.id, Change::Use, None, ON)).unwrap();
    outbox.expect_one(&mut redis, v, b.id, 3);

    // Bought, paid and refunded through the webhook.
    let c = block_on(voucher::buy(
        &mut redis,
        v,
        user(3),
        order_id(3),
        PAY_SECS,
        ON,
        Shards::ONE,
        &mut 1,
    ))
    .unwrap();
    outbox.expect_one(&mut redis, v, c.id, 1);
    let paid = EventId::parse("evt_pay").unwrap();
    block_on(order::settle(&mut redis, v, c.id, &paid, PAID, ON)).unwrap();
    outbox.expect_one(&mut redis, v, c.id, 2);
    let refunded = EventId::parse("evt_refund").unwrap();
    block_on(order::settle(
        &mut redis,
        v,
        c.id,
        &refunded,
        Money::Refunded,
        ON,
    ))
    .unwrap();
    outbox.expect_one(&mut redis, v, c.id, 3);

    // Entries in the order of the changes, each order's versions rising.
    let all = outbox.all();
    assert_eq!(all.len(), 8);
    let mut last: HashMap<String, i64> = HashMap::new();
    for (_, fields) in &all {
        let field = |name: &str| fields.iter().find(|(k, _)| k == name).unwrap().1.clone();
        let version: i64 = field("version").parse().unwrap();
        let before = last.insert(field("id"), version).unwrap_or(0);
        assert_eq!(version, before + 1, "{fields:?}");
    }
    let statuses: Vec<String> = all.iter().map(|(_, f)| f[3].1.clone()).collect();
    assert_eq!(
        statuses,
        [
            "unpaid",
            "cancelled",
            "unpaid",
            "paid",
            "used",
            "unpaid",
            "paid",
            "refunded"
        ]
    );
    // Stream ids are Redis's own, rising.
    let ids: Vec<&String> = all.iter().map(|(id, _)| id).collect();
    assert!(ids.windows(2).all(|w| {
        let n = |id: &str| -> (u64, u64) {
            let (ms, seq) = id.split_once('-').unwrap();
            (ms.parse().unwrap(), seq.parse().unwrap())
        };
        n(w[0]) < n(w[1])
    }));
}

#[test]
fn an_expiry_appends_its_event_wherever_it_is_found() {
    let server = RedisServer::start();
    let mut redis = server.native();
    // One unit each, expired by a read of the voucher, by a change of the
    // order and by the next purchase.
    let by_read = on_sale(&mut redis, 1);
    let by_change = on_sale(&mut redis, 1);
    let by_sale = on_sale(&mut redis, 1);
    let mut outboxes: Vec<Outbox<'_>> = [by_read, by_change, by_sale]
        .iter()
        .map(|&v| Outbox::of(&server, v))
        .collect();
    let mut orders = Vec::new();
    for (i, &v) in [by_read, by_change, by_sale].iter().enumerate() {
        let o = block_on(voucher::buy(
            &mut redis,
            v,
            user(1),
            order_id(i as u32 + 1),
            1,
            ON,
            Shards::ONE,
            &mut 1,
        ))
        .unwrap();
        outboxes[i].expect_one(&mut redis, v, o.id, 1);
        orders.push(o);
    }
    sleep_past(orders[2].pay_deadline_ms.unwrap());
    for outbox in &mut outboxes {
        outbox.expect_none("nothing runs at the deadline");
    }

    let expired = |o: &Order| Order {
        status: OrderStatus::Expired,
        update_ms: o.pay_deadline_ms.unwrap(),
        ..o.clone()
    };
    // The read reclaims the unit.
    assert_eq!(
        block_on(voucher::get(&mut redis, by_read, ON))
            .unwrap()
            .unwrap()
            .remaining,
        1
    );
    assert_eq!(
        outboxes[0].new_events(),
        [snapshot(&expired(&orders[0]), 2)]
    );
    block_on(voucher::get(&mut redis, by_read, ON)).unwrap();
    outboxes[0].expect_none("a second read");

    // A late payment expires the order itself, and is refused.
    assert_eq!(
        block_on(order::change(
            &mut redis,
            by_change,
            orders[1].id,
            pay(PAY_VALUE),
            None,
            ON
        )),
        Err(ApiError::Conflict(Conflict::InvalidState))
    );
    assert_eq!(
        outboxes[1].new_events(),
        [snapshot(&expired(&orders[1]), 2)]
    );

    // The next purchase expires the order, then places its own.
    let next = block_on(voucher::buy(
        &mut redis,
        by_sale,
        user(2),
        order_id(9),
        PAY_SECS,
        ON,
        Shards::ONE,
        &mut 1,
    ))
    .unwrap();
    assert_eq!(
        outboxes[2].new_events(),
        [snapshot(&expired(&orders[2]), 2), snapshot(&next, 1)]
    );
    for (i, v) in [by_read, by_change, by_sale].into_iter().enumerate() {
        assert_eq!(version_of(&server, v, orders[i].id), 2);
    }
}

/// A buyer's own due order that the purchase's reclaim left (it reclaims
/// at most `RECLAIM_LIMIT`) is expired by the purchase, with its event.
#[test]
fn a_buyers_own_due_order_expires_with_its_event_when_they_buy_again() {
    let server = RedisServer::start();
    let mut redis = server.native();
    let limit = order::RECLAIM_LIMIT;
    let v = on_sale(&mut redis, limit + 1);
    for i in 0..limit {
        block_on(voucher::buy(
            &mut redis,
            v,
            user(1 + i as u64),
            order_id(1 + i as u32),
            1,
            ON,
            Shards::ONE,
            &mut 1,
        ))
        .unwrap();
    }
    thread::sleep(Duration::from_millis(5));
    let late = block_on(voucher::buy(
        &mut redis,
        v,
        user(1000),
        order_id(1000),
        1,
        ON,
        Shards::ONE,
        &mut 1,
    ))
    .unwrap();
    let mut outbox = Outbox::of(&server, v);
    assert_eq!(outbox.new_events().len(), limit as usize + 1);
    sleep_past(late.pay_deadline_ms.unwrap());
    let again = block_on(voucher::buy(
        &mut redis,
        v,
        user(1000),
        order_id(1001),
        PAY_SECS,
        ON,
        Shards::ONE,
        &mut 1,
    ))
    .unwrap();
    let events = outbox.new_events();
    // The reclaim's expiries, the buyer's own, then the new order.
    assert_eq!(events.len(), limit as usize + 2);
    let expired_late = Order {
        status: OrderStatus::Expired,
        update_ms: late.pay_deadline_ms.unwrap(),
        ..late.clone()
    };
    assert_eq!(events[limit as usize], snapshot(&expired_late, 2));
    assert_eq!(events[limit as usize + 1], snapshot(&again, 1));
    assert!(
        events[..limit as usize]
            .iter()
            .all(|e| e[3].1 == "expired" && e[1].1 == "2")
    );
}

#[test]
fn a_refused_change_or_a_read_appends_nothing() {
    let server = RedisServer::start();
    let mut redis = server.native();
    let v = on_sale(&mut redis, 2);
    let mut outbox = Outbox::of(&server, v);
    let a = block_on(voucher::buy(
        &mut redis,
        v,
        user(1),
        order_id(1),
        PAY_SECS,
        ON,
        Shards::ONE,
        &mut 1,
    ))
    .unwrap();
    let b = block_on(voucher::buy(
        &mut redis,
        v,
        user(2),
        order_id(2),
        PAY_SECS,
        ON,
        Shards::ONE,
        &mut 1,
    ))
    .unwrap();
    assert_eq!(outbox.new_events().len(), 2);

    // Purchases refused: sold out, already bought, not started, over, no
    // such voucher.
    assert_eq!(
        block_on(voucher::buy(
            &mut redis,
            v,
            user(3),
            order_id(3),
            PAY_SECS,
            ON,
            Shards::ONE,
            &mut 1
        )),
        Err(ApiError::Conflict(Conflict::SoldOut))
    );
    assert!(matches!(
        block_on(voucher::buy(
            &mut redis,
            v,
            user(1),
            order_id(4),
            PAY_SECS,
            ON,
            Shards::ONE,
            &mut 1
        )),
        Err(ApiError::AlreadyPurchased(_))
    ));
    outbox.expect_none("refused purchases");
    let later = sale(&mut redis, 5, now_ms() + 60_000, now_ms() + 120_000);
    let over = sale(&mut redis, 5, now_ms() - 120_000, now_ms() - 60_000);
    let missing = VoucherId::new(999).unwrap();
    for (v, error) in [
        (later, ApiError::Conflict(Conflict::SaleNotStarted)),
        (over, ApiError::Conflict(Conflict::SaleEnded)),
        (missing, ApiError::NotFound),
    ] {
        assert_eq!(
            block_on(voucher::buy(
                &mut redis,
                v,
                user(1),
                order_id(5),
                PAY_SECS,
                ON,
                Shards::ONE,
                &mut 1
            )),
            Err(error)
        );
        assert!(!exists(&server, &keys::voucher_outbox(v)), "{v}");
        assert!(!exists(&server, &keys::voucher_export_wake(v)), "{v}");
    }

    // Changes refused, and reads.
    let refused = [
        (Change::Read, None, None),
        (Change::Cancel, Some(user(2)), Some(ApiError::NotFound)),
        (
            pay(PAY_VALUE - 1),
            None,
            Some(ApiError::Conflict(Conflict::AmountMismatch)),
        ),
        (
            Change::Use,
            None,
            Some(ApiError::Conflict(Conflict::InvalidState)),
        ),
        (
            Change::Refund,
            None,
            Some(ApiError::Conflict(Conflict::InvalidState)),
        ),
    ];
    for (change, owner, error) in refused {
        let result = block_on(order::change(&mut redis, v, a.id, change, owner, ON));
        match error {
            None => assert!(result.is_ok(), "{change:?}"),
            Some(error) => assert_eq!(result, Err(error), "{change:?}"),
        }
        outbox.expect_none(&format!("{change:?}"));
        assert_eq!(version_of(&server, v, a.id), 1);
    }
    assert_eq!(
        block_on(order::change(
            &mut redis,
            v,
            order_id(99),
            Change::Cancel,
            None,
            ON
        )),
        Err(ApiError::NotFound)
    );
    block_on(voucher::get(&mut redis, v, ON)).unwrap();
    block_on(voucher::list_by_shop(
        &mut redis,
        ShopId::new(1).unwrap(),
        10,
        ON,
    ))
    .unwrap();
    outbox.expect_none("not found, reads");

    // Paying a cancelled order.
    block_on(order::change(
        &mut redis,
        v,
        a.id,
        Change::Cancel,
        Some(user(1)),
        ON,
    ))
    .unwrap();
    outbox.expect_one(&mut redis, v, a.id, 2);
    for change in [pay(PAY_VALUE), Change::Cancel, Change::Use, Change::Refund] {
        assert_eq!(
            block_on(order::change(&mut redis, v, a.id, change, None, ON)),
            Err(ApiError::Conflict(Conflict::InvalidState)),
            "{change:?}"
        );
    }
    outbox.expect_none("changes of a cancelled order");

    // A webhook event answered again changes nothing and appends nothing.
    let e = EventId::parse("evt_1").unwrap();
    for _ in 0..3 {
        block_on(order::settle(&mut redis, v, b.id, &e, PAID, ON)).unwrap();
    }
    outbox.expect_one(&mut redis, v, b.id, 2);
}

#[test]
fn with_export_off_no_outbox_is_written_and_versions_still_count() {
    let server = RedisServer::start();
    let mut redis = server.native();
    let v = on_sale(&mut redis, 3);
    let a = block_on(voucher::buy(
        &mut redis,
        v,
        user(1),
        order_id(1),
        PAY_SECS,
        OFF,
        Shards::ONE,
        &mut 1,
    ))
    .unwrap();
    assert_eq!(version_of(&server, v, a.id), 1);
    block_on(order::change(
        &mut redis,
        v,
        a.id,
        pay(PAY_VALUE),
        None,
        OFF,
    ))
    .unwrap();
    assert_eq!(version_of(&server, v, a.id), 2);
    block_on(order::change(&mut redis, v, a.id, Change::Use, None, OFF)).unwrap();
    assert_eq!(version_of(&server, v, a.id), 3);
    let b = block_on(voucher::buy(
        &mut redis,
        v,
        user(2),
        order_id(2),
        PAY_SECS,
        OFF,
        Shards::ONE,
        &mut 1,
    ))
    .unwrap();
    block_on(order::change(
        &mut redis,
        v,
        b.id,
        Change::Cancel,
        Some(user(2)),
        OFF,
    ))
    .unwrap();
    assert_eq!(version_of(&server, v, b.id), 2);
    // Expired by a read.
    let c = block_on(voucher::buy(
        &mut redis,
        v,
        user(3),
        order_id(3),
        1,
        OFF,
        Shards::ONE,
        &mut 1,
    ))
    .unwrap();
    sleep_past(c.pay_deadline_ms.unwrap());
    assert_eq!(
        block_on(voucher::get(&mut redis, v, OFF))
            .unwrap()
            .unwrap()
            .remaining,
        2
    );
    assert_eq!(version_of(&server, v, c.id), 2);
    assert_eq!(
        block_on(order::change(&mut redis, v, c.id, Change::Read, None, OFF))
            .unwrap()
            .status,
        OrderStatus::Expired
    );

    assert!(!exists(&server, &keys::voucher_outbox(v)));
    assert!(!exists(&server, &keys::voucher_export_wake(v)));
    // Turned on later, an order's next event carries its true version.
    block_on(order::change(&mut redis, v, a.id, Change::Refund, None, ON)).unwrap_err();
    let d = block_on(voucher::buy(
        &mut redis,
        v,
        user(4),
        order_id(4),
        PAY_SECS,
        OFF,
        Shards::ONE,
        &mut 1,
    ))
    .unwrap();
    block_on(order::change(&mut redis, v, d.id, pay(PAY_VALUE), None, ON)).unwrap();
    let mut outbox = Outbox::of(&server, v);
    outbox.expect_one(&mut redis, v, d.id, 2);
}

/// The next message on the subscription, within a few seconds.
fn next_message(pubsub: &mut redis::PubSub<'_>) -> String {
    let msg = pubsub.get_message().expect("a message within the timeout");
    assert_eq!(msg.get_channel_name(), keys::ORDER_EXPORT_CHANNEL);
    msg.get_payload().unwrap()
}

#[test]
fn the_exporter_is_woken_once_while_its_flag_lives() {
    let server = RedisServer::start();
    let mut redis = server.native();
    let v = on_sale(&mut redis, 10);
    let other = on_sale(&mut redis, 10);
    let wake = keys::voucher_export_wake(v);

    let mut subscriber = server.conn();
    let mut pubsub = subscriber.as_pubsub();
    pubsub.subscribe(keys::ORDER_EXPORT_CHANNEL).unwrap();
    pubsub
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // Nothing else published in between: this marker comes next.
    let marker = |n: u32| {
        let text = format!("marker {n}");
        let _: i64 = redis::cmd("PUBLISH")
            .arg(keys::ORDER_EXPORT_CHANNEL)
            .arg(&text)
            .query(&mut server.conn())
            .unwrap();
        text
    };

    // The first change wakes the exporter, with the voucher's id, and
    // raises the flag for a second.
    let a = block_on(voucher::buy(
        &mut redis,
        v,
        user(1),
        order_id(1),
        PAY_SECS,
        ON,
        Shards::ONE,
        &mut 1,
    ))
    .unwrap();
    assert_eq!(next_message(&mut pubsub), v.to_string());
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&wake)
        .query(&mut server.conn())
        .unwrap();
    assert!(0 < ttl && ttl <= 1000, "{ttl}");

    // While it lives, changes append but do not publish. (Made to live a
    // minute, so that a slow machine does not race the second.)
    let _: i64 = redis::cmd("PEXPIRE")
        .arg(&wake)
        .arg(60_000)
        .query(&mut server.conn())
        .unwrap();
    block_on(order::change(&mut redis, v, a.id, pay(PAY_VALUE), None, ON)).unwrap();
    block_on(voucher::buy(
        &mut redis,
        v,
        user(2),
        order_id(2),
        PAY_SECS,
        ON,
        Shards::ONE,
        &mut 1,
    ))
    .unwrap();
    let m = marker(1);
    assert_eq!(next_message(&mut pubsub), m);
    // Another voucher's flag is its own.
    block_on(voucher::buy(
        &mut redis,
        other,
        user(1),
        order_id(3),
        PAY_SECS,
        ON,
        Shards::ONE,
        &mut 1,
    ))
    .unwrap();
    assert_eq!(next_message(&mut pubsub), other.to_string());

    // The exporter deletes the flag when it wakes: the next change wakes
    // it again.
    let _: i64 = redis::cmd("DEL")
        .arg(&wake)
        .query(&mut server.conn())
        .unwrap();
    block_on(order::change(&mut redis, v, a.id, Change::Use, None, ON)).unwrap();
    assert_eq!(next_message(&mut pubsub), v.to_string());

    // A wake-up nobody acted on is tried again once the flag has expired.
    thread::sleep(Duration::from_millis(1100));
    assert!(!exists(&server, &wake));
    block_on(voucher::buy(
        &mut redis,
        v,
        user(3),
        order_id(4),
        PAY_SECS,
        ON,
        Shards::ONE,
        &mut 1,
    ))
    .unwrap();
    assert_eq!(next_message(&mut pubsub), v.to_string());

    // With export off, nothing is published even without a flag.
    let _: i64 = redis::cmd("DEL")
        .arg(&wake)
        .query(&mut server.conn())
        .unwrap();
    block_on(voucher::buy(
        &mut redis,
        v,
        user(4),
        order_id(5),
        PAY_SECS,
        OFF,
        Shards::ONE,
        &mut 1,
    ))
    .unwrap();
    let m = marker(2);
    assert_eq!(next_message(&mut pubsub), m);
    assert!(!exists(&server, &wake));
    assert_eq!(Outbox::of(&server, v).all().len(), 5);
}
