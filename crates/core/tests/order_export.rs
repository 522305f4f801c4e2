//! The order exporter's core (`order_export`: `outbox_take.lua`,
//! `outbox_done.lua`, the upsert by version and the run that joins them)
//! against a real Redis and a real PostgreSQL, with the orders written by
//! the real scripts.
//!
//! It covers taking and acknowledging on their own (the wake flag cleared
//! by a run's first take only, the consumer group made on first use,
//! batches of at most `BATCH` with one row per order at its highest
//! version, entries deleted once acknowledged, nothing handed out by an
//! empty or absent outbox, idle consumers removed from the group); entries
//! of a consumer that never acknowledged them taken over after
//! `CLAIM_IDLE_MS` and not before (at once by the operator's drain);
//! orders exported end to end as they are, into a table the run creates,
//! and not again; versions that never go backwards, within a batch, in a
//! later batch or a later run; PostgreSQL down (nothing acknowledged, then
//! everything written exactly once, or the same run carried through by
//! `try_again`); events whose data PostgreSQL refuses (a constraint, a
//! trigger) isolated, parked and exported once moved back, the rest of
//! their batch and the later vouchers exported; a refusal of another kind,
//! which ends its voucher's run with its batch pending and no other's; and
//! the operator's drain taking over every pending entry, not one batch.

use flashspin_testkit::block_on;
use std::collections::HashMap;
use std::thread;
use std::time::{Duration, Instant};

use flashspin_core::ApiError;
use flashspin_core::database::DatabaseError;
use flashspin_core::ids::VoucherId;
use flashspin_core::keys;
use flashspin_core::order::{self, Change, Order, OrderExport, PayType};
use flashspin_core::order_export::{
    self, BATCH, Batch, CLAIM_IDLE_MS, ExportError, Exported, GROUP, MIGRATIONS, Runner, Step,
};
use flashspin_core::shard::Shards;
use flashspin_core::voucher::{self};
use flashspin_testkit::{NativePostgres, NativeRedis, PostgresServer, RedisServer};

mod common;
use common::*;

const ON: OrderExport = OrderExport::On;
const PAY_SECS: u32 = 900;

/// Order `n` of a test, bought by user `n`.
fn buy(redis: &mut NativeRedis, v: VoucherId, n: u32) -> Order {
    block_on(voucher::buy(
        redis,
        v,
        user(n.into()),
        order_id(n),
        PAY_SECS,
        ON,
        Shards::ONE,
        &mut 1,
    ))
    .unwrap()
}

fn change(redis: &mut NativeRedis, v: VoucherId, o: &Order, change: Change) -> Order {
    block_on(order::change(redis, v, o.id, change, None, ON)).unwrap()
}

fn pay() -> Change {
    Change::Pay {
        amount: PAY_VALUE,
        pay_type: PayType::Wechat,
    }
}

fn read(redis: &mut NativeRedis, v: VoucherId, o: &Order) -> Order {
    change(redis, v, o, Change::Read)
}

fn wait_claim_idle() {
    thread::sleep(Duration::from_millis(CLAIM_IDLE_MS as u64 + 100));
}

/// A woken run's take: its first, or a later one reading new entries.
fn take(redis: &mut NativeRedis, v: VoucherId, consumer: &str, first_take: bool) -> Batch {
    let step = if first_take { Step::First } else { Step::Read };
    block_on(order_export::take(redis, v, consumer, Runner::Woken, &step)).unwrap()
}

fn export(
    redis: &mut NativeRedis,
    db: &mut NativePostgres,
    v: VoucherId,
    consumer: &str,
) -> Result<Exported, ExportError> {
    block_on(order_export::export_voucher(
        redis,
        db,
        v,
        consumer,
        Runner::Woken,
        &mut || false,
    ))
}

fn exported(events: u64, claimed: u64) -> Exported {
    Exported {
        events,
        claimed,
        parked: 0,
    }
}

// What Redis holds, read around the core.

fn xlen(server: &RedisServer, v: VoucherId) -> i64 {
    redis::cmd("XLEN")
        .arg(keys::voucher_outbox(v))
        .query(&mut server.conn())
        .unwrap()
}

fn exists(server: &RedisServer, key: &str) -> bool {
    redis::cmd("EXISTS")
        .arg(key)
        .query(&mut server.conn())
        .unwrap()
}

/// Raises the wake flag, for good, as a script would for a second.
fn raise_wake(server: &RedisServer, v: VoucherId) {
    let _: () = redis::cmd("SET")
        .arg(keys::voucher_export_wake(v))
        .arg("1")
        .query(&mut server.conn())
        .unwrap();
}

/// The outbox's consumer groups, by name.
fn groups(server: &RedisServer, v: VoucherId) -> Vec<String> {
    let groups: Vec<HashMap<String, redis::Value>> = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(keys::voucher_outbox(v))
        .query(&mut server.conn())
        .unwrap();
    groups
        .iter()
        .map(|g| redis::from_redis_value_ref(&g["name"]).unwrap())
        .collect()
}

/// The group's consumers and how many entries each holds, by name.
fn consumers(server: &RedisServer, v: VoucherId) -> Vec<(String, i64)> {
    let consumers: Vec<HashMap<String, redis::Value>> = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(keys::voucher_outbox(v))
        .arg(GROUP)
        .query(&mut server.conn())
        .unwrap();
    let mut list: Vec<(String, i64)> = consumers
        .iter()
        .map(|c| {
            (
                redis::from_redis_value_ref(&c["name"]).unwrap(),
                redis::from_redis_value_ref(&c["pending"]).unwrap(),
            )
        })
        .collect();
    list.sort();
    list
}

fn named(list: &[(&str, i64)]) -> Vec<(String, i64)> {
    list.iter().map(|&(n, p)| (n.to_string(), p)).collect()
}

/// Entries pending in the group, whoever holds them.
fn pending(server: &RedisServer, v: VoucherId) -> i64 {
    let (count, ..): (i64, Option<String>, Option<String>, redis::Value) = redis::cmd("XPENDING")
        .arg(keys::voucher_outbox(v))
        .arg(GROUP)
        .query(&mut server.conn())
        .unwrap();
    count
}

/// Every entry of the outbox: its stream id and its fields, flat.
fn entries(server: &RedisServer, v: VoucherId) -> Vec<(String, Vec<String>)> {
    redis::cmd("XRANGE")
        .arg(keys::voucher_outbox(v))
        .arg("-")
        .arg("+")
        .query(&mut server.conn())
        .unwrap()
}

/// Appends an event with `fields`, as a script would.
fn append(server: &RedisServer, v: VoucherId, fields: &[String]) {
    let _: String = redis::cmd("XADD")
        .arg(keys::voucher_outbox(v))
        .arg("*")
        .arg(fields)
        .query(&mut server.conn())
        .unwrap();
}

// What PostgreSQL holds.

fn ms(column: &str) -> String {
    format!("trim_scale(extract(epoch FROM {column}) * 1000)")
}

/// Every row of `voucher_order`, by id: its columns, times in ms as
/// PostgreSQL reads its `timestamptz` values back ('' for NULL).
fn table(db: &PostgresServer) -> Vec<String> {
    let sql = format!(
        "SELECT id, user_id, voucher_id, status, amount, pay_type, {}, {}, {}, {}, {}, {}, \
         version FROM voucher_order ORDER BY id",
        ms("pay_deadline"),
        ms("pay_time"),
        ms("use_time"),
        ms("refund_time"),
        ms("create_time"),
        ms("update_time"),
    );
    db.psql(&sql).lines().map(str::to_string).collect()
}

/// The row `order` at `version` must be.
fn row(o: &Order, version: i64) -> String {
    let ms = |t: Option<i64>| t.map(|t| t.to_string()).unwrap_or_default();
    format!(
        "{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}",
        o.id.raw() as i64,
        o.user_id,
        o.voucher_id,
        o.status.name(),
        o.amount,
        o.pay_type.map(PayType::name).unwrap_or(""),
        ms(o.pay_deadline_ms),
        ms(o.pay_ms),
        ms(o.use_ms),
        ms(o.refund_ms),
        o.create_ms,
        o.update_ms,
        version
    )
}

fn rows(orders: &[(&Order, i64)]) -> Vec<String> {
    let mut rows: Vec<(i64, String)> = orders
        .iter()
        .map(|&(o, version)| (o.id.raw() as i64, row(o, version)))
        .collect();
    rows.sort();
    rows.into_iter().map(|(_, r)| r).collect()
}

/// Creates the table and logs every row PostgreSQL writes into it, so
/// that a test sees how often each version was written.
fn log_writes(db: &PostgresServer) {
    for (_, sql) in MIGRATIONS {
        db.psql(sql);
    }
    db.psql(
        "CREATE TABLE writes (n bigserial, op text, id bigint, version bigint, status text);
         CREATE FUNCTION log_write() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           INSERT INTO writes (op, id, version, status)
             VALUES (TG_OP, NEW.id, NEW.version, NEW.status);
           RETURN NULL;
         END $$;
         CREATE TRIGGER log_write AFTER INSERT OR UPDATE ON voucher_order
           FOR EACH ROW EXECUTE FUNCTION log_write();",
    );
}

/// The rows written since [`log_writes`], in order, as [`write`] spells
/// them: the operation, the order's id, its version and status.
fn writes(db: &PostgresServer) -> Vec<String> {
    db.psql("SELECT op, id, version, status FROM writes ORDER BY n")
        .lines()
        .map(str::to_string)
        .collect()
}

fn write(op: &str, o: &Order, version: i64, status: &str) -> String {
    format!("{op}|{}|{version}|{status}", o.id.raw() as i64)
}

#[test]
fn take_hands_out_batches_and_done_acknowledges_and_deletes_them() {
    let server = RedisServer::start();
    let mut redis = server.native();
    let v = on_sale(&mut redis, 200);
    let wake = keys::voucher_export_wake(v);

    // No outbox at all: nothing to hand out, no group, but the first take
    // still clears the wake flag.
    raise_wake(&server, v);
    let none = take(&mut redis, v, "a", true);
    assert!(none.entry_ids.is_empty() && none.rows.is_empty());
    assert_eq!(none.claimed, 0);
    assert!(!exists(&server, &wake));
    assert!(!exists(&server, &keys::voucher_outbox(v)));

    // 113 events: orders 1 to 50, order 1 paid and used, order 2
    // cancelled, orders 51 to 110.
    let mut orders: Vec<Order> = (1..=50).map(|n| buy(&mut redis, v, n)).collect();
    change(&mut redis, v, &orders[0], pay());
    change(&mut redis, v, &orders[0], Change::Use);
    block_on(order::change(
        &mut redis,
        v,
        orders[1].id,
        Change::Cancel,
        Some(user(2)),
        ON,
    ))
    .unwrap();
    orders.extend((51..=110).map(|n| buy(&mut redis, v, n)));
    assert_eq!(xlen(&server, v), 113);
    assert!(
        groups(&server, v).is_empty(),
        "no group before the first take"
    );
    let stream_ids: Vec<String> = entries(&server, v).into_iter().map(|(id, _)| id).collect();

    // The first take: the first BATCH entries, one row per order (97 of
    // them), each at its highest version; the flag cleared, the group made.
    raise_wake(&server, v);
    let first = take(&mut redis, v, "a", true);
    assert!(!exists(&server, &wake), "cleared by the first take");
    assert_eq!(groups(&server, v), [GROUP]);
    assert_eq!(first.entry_ids.len(), BATCH as usize);
    assert_eq!(first.entry_ids, stream_ids[..100]);
    assert_eq!(first.claimed, 0);
    assert_eq!(first.rows.len(), 97);
    let ids: Vec<u64> = first.rows.iter().map(|r| r.id).collect();
    let expected: Vec<u64> = orders[..97].iter().map(|o| o.id.raw()).collect();
    assert_eq!(ids, expected, "in the order of their first event");
    let used = read(&mut redis, v, &orders[0]);
    let r = &first.rows[0];
    assert_eq!((r.version, r.status.as_str()), (3, "used"));
    assert_eq!(r.pay_type.as_deref(), Some("wechat"));
    assert_eq!(
        (r.pay_ms, r.use_ms, r.refund_ms),
        (used.pay_ms, used.use_ms, None)
    );
    assert_eq!(
        (first.rows[1].version, first.rows[1].status.as_str()),
        (2, "cancelled")
    );
    let b = &orders[2];
    let r = &first.rows[2];
    assert_eq!(
        (
            r.version,
            r.status.as_str(),
            r.user_id,
            r.amount,
            r.pay_type.clone()
        ),
        (1, "unpaid", 3, PAY_VALUE, None)
    );
    assert_eq!(
        (
            r.created_ms,
            r.deadline_ms,
            r.pay_ms,
            r.updated_ms,
            r.voucher_id
        ),
        (b.create_ms, b.pay_deadline_ms, None, b.update_ms, v)
    );
    assert!(first.rows[3..].iter().all(|r| r.version == 1));

    // A later take leaves the flag alone: the rest, 13 entries.
    raise_wake(&server, v);
    let second = take(&mut redis, v, "a", false);
    assert!(
        exists(&server, &wake),
        "only the run's first take clears it"
    );
    assert_eq!(second.entry_ids, stream_ids[100..]);
    assert_eq!(second.rows.len(), 13);
    assert_eq!((xlen(&server, v), pending(&server, v)), (113, 113));
    assert_eq!(consumers(&server, v), named(&[("a", 113)]));

    // Done acknowledges and deletes; again, it acknowledges nothing more.
    let done = block_on(order_export::done(&mut redis, v, &first.entry_ids)).unwrap();
    assert_eq!(done, 100);
    assert_eq!((xlen(&server, v), pending(&server, v)), (13, 13));
    assert_eq!(
        block_on(order_export::done(&mut redis, v, &first.entry_ids)).unwrap(),
        0
    );
    assert_eq!(xlen(&server, v), 13);

    // Nothing to hand out (what is pending is not idle yet): consumers
    // with nothing pending leave the group, one holding entries stays.
    let nothing = take(&mut redis, v, "b", false);
    assert!(nothing.entry_ids.is_empty() && nothing.rows.is_empty());
    assert_eq!(consumers(&server, v), named(&[("a", 13)]));

    // Once everything is done, the outbox is empty but there, and a take
    // hands out nothing and empties the group.
    assert_eq!(
        block_on(order_export::done(&mut redis, v, &second.entry_ids)).unwrap(),
        13
    );
    assert_eq!((xlen(&server, v), pending(&server, v)), (0, 0));
    assert!(exists(&server, &keys::voucher_outbox(v)));
    assert!(take(&mut redis, v, "a", false).entry_ids.is_empty());
    assert_eq!(consumers(&server, v), named(&[]));
    raise_wake(&server, v);
    assert!(take(&mut redis, v, "c", true).entry_ids.is_empty());
    assert!(!exists(&server, &wake));
    assert_eq!(consumers(&server, v), named(&[]));
    assert_eq!(groups(&server, v), [GROUP]);
}

#[test]
fn entries_never_acknowledged_are_taken_over_once_idle() {
    let server = RedisServer::start();
    let mut redis = server.native();
    let v = on_sale(&mut redis, 10);
    let orders: Vec<Order> = (1..=3).map(|n| buy(&mut redis, v, n)).collect();

    // Consumer a takes three entries and never acknowledges them.
    let taken = Instant::now();
    let a = take(&mut redis, v, "a", true);
    assert_eq!((a.entry_ids.len(), a.claimed), (3, 0));
    // Not idle yet, right away or half way: b gets nothing.
    for wait in [0, CLAIM_IDLE_MS as u64 / 2] {
        thread::sleep(Duration::from_millis(wait));
        let early = take(&mut redis, v, "b", true);
        if taken.elapsed() < Duration::from_millis(CLAIM_IDLE_MS as u64) {
            assert!(early.entry_ids.is_empty(), "after {wait} ms");
            assert_eq!(early.claimed, 0);
        }
    }
    assert_eq!(consumers(&server, v), named(&[("a", 3)]));

    // A new event meanwhile; once a's are idle, b's run takes them over
    // on its first take, and only then reads what is new.
    buy(&mut redis, v, 4);
    wait_claim_idle();
    let claimed = take(&mut redis, v, "b", true);
    assert_eq!(claimed.claimed, 3);
    assert_eq!(claimed.entry_ids, a.entry_ids);
    let ids: Vec<u64> = claimed.rows.iter().map(|r| r.id).collect();
    let expected: Vec<u64> = orders.iter().map(|o| o.id.raw()).collect();
    assert_eq!(ids, expected);
    assert_eq!(consumers(&server, v), named(&[("a", 0), ("b", 3)]));
    let new = take(&mut redis, v, "b", false);
    assert_eq!((new.entry_ids.len(), new.claimed), (1, 0));
    assert_eq!(new.rows[0].id, order_id(4).raw());
    assert_eq!(consumers(&server, v), named(&[("a", 0), ("b", 4)]));

    // The operator's drain takes over everything pending at once.
    let drain = block_on(order_export::take(
        &mut redis,
        v,
        "c",
        Runner::Operator,
        &Step::First,
    ))
    .unwrap();
    assert_eq!((drain.entry_ids.len(), drain.claimed), (4, 4));
    assert_eq!(
        consumers(&server, v),
        named(&[("a", 0), ("b", 0), ("c", 4)])
    );
    assert_eq!(
        block_on(order_export::done(&mut redis, v, &drain.entry_ids)).unwrap(),
        4
    );
    assert!(take(&mut redis, v, "c", false).entry_ids.is_empty());
    assert_eq!(consumers(&server, v), named(&[]));
    assert_eq!((xlen(&server, v), pending(&server, v)), (0, 0));
}

#[test]
fn a_run_exports_the_orders_as_they_are_into_a_table_it_creates() {
    let server = RedisServer::start();
    let mut redis = server.native();
    let db = PostgresServer::start();
    let mut pg = db.native();
    let v = on_sale(&mut redis, 10);

    // Unpaid; cancelled; paid; paid and used: 8 events.
    let unpaid = buy(&mut redis, v, 1);
    let cancelled = buy(&mut redis, v, 2);
    block_on(order::change(
        &mut redis,
        v,
        cancelled.id,
        Change::Cancel,
        Some(user(2)),
        ON,
    ))
    .unwrap();
    let paid = buy(&mut redis, v, 3);
    change(&mut redis, v, &paid, pay());
    let used = buy(&mut redis, v, 4);
    change(&mut redis, v, &used, pay());
    change(&mut redis, v, &used, Change::Use);
    let now: Vec<Order> = [&unpaid, &cancelled, &paid, &used]
        .iter()
        .map(|o| read(&mut redis, v, o))
        .collect();
    assert_eq!(xlen(&server, v), 8);

    assert_eq!(
        db.psql("SELECT to_regclass('voucher_order') IS NULL")
            .trim(),
        "t",
        "no table yet"
    );
    assert_eq!(
        export(&mut redis, &mut pg, v, "run-1").unwrap(),
        exported(8, 0)
    );
    let expected = rows(&[(&now[0], 1), (&now[1], 2), (&now[2], 2), (&now[3], 3)]);
    assert_eq!(table(&db), expected);
    assert_eq!(now[3].status.name(), "used");
    assert!(now[3].pay_ms.is_some() && now[3].use_ms.is_some());
    assert_eq!(
        db.psql(
            "SELECT string_agg(DISTINCT data_type, ',') FROM information_schema.columns \
             WHERE table_name = 'voucher_order' \
             AND (column_name LIKE '%time' OR column_name = 'pay_deadline')"
        )
        .trim(),
        "timestamp with time zone"
    );
    assert_eq!((xlen(&server, v), pending(&server, v)), (0, 0));
    assert_eq!(consumers(&server, v), named(&[]));

    // Again: nothing more.
    assert_eq!(
        export(&mut redis, &mut pg, v, "run-2").unwrap(),
        exported(0, 0)
    );
    assert_eq!(table(&db), expected);
}

#[test]
fn versions_never_go_backwards() {
    let server = RedisServer::start();
    let mut redis = server.native();
    let db = PostgresServer::start();
    log_writes(&db);
    let mut pg = db.native();
    let v = on_sale(&mut redis, 10);

    // A later run replaces a row with a later version.
    let a = buy(&mut redis, v, 1);
    assert_eq!(
        export(&mut redis, &mut pg, v, "run-1").unwrap(),
        exported(1, 0)
    );
    assert_eq!(table(&db), rows(&[(&a, 1)]));
    let bought = entries(&server, v);
    assert!(bought.is_empty(), "deleted once done");
    change(&mut redis, v, &a, pay());
    change(&mut redis, v, &a, Change::Use);
    let events: Vec<Vec<String>> = entries(&server, v).into_iter().map(|(_, f)| f).collect();
    assert_eq!(
        export(&mut redis, &mut pg, v, "run-2").unwrap(),
        exported(2, 0)
    );
    let used = read(&mut redis, v, &a);
    assert_eq!(table(&db), rows(&[(&used, 3)]));
    assert_eq!(
        writes(&db),
        [
            write("INSERT", &a, 1, "unpaid"),
            write("UPDATE", &a, 3, "used")
        ]
    );

    // An old event appended again: taken, acknowledged, and no write.
    append(&server, v, &events[0]);
    assert_eq!(
        export(&mut redis, &mut pg, v, "run-3").unwrap(),
        exported(1, 0)
    );
    assert_eq!(table(&db), rows(&[(&used, 3)]));
    assert_eq!(writes(&db).len(), 2);
    assert_eq!(xlen(&server, v), 0);

    // Within one batch: an older event after a newer one, one row at the
    // newer version.
    let b = buy(&mut redis, v, 2);
    change(&mut redis, v, &b, pay());
    let b_events: Vec<Vec<String>> = entries(&server, v).into_iter().map(|(_, f)| f).collect();
    let _: i64 = redis::cmd("DEL")
        .arg(keys::voucher_outbox(v))
        .query(&mut server.conn())
        .unwrap();
    append(&server, v, &b_events[1]);
    append(&server, v, &b_events[0]);
    let batch = take(&mut redis, v, "peek", true);
    assert_eq!(batch.entry_ids.len(), 2);
    assert_eq!(batch.rows.len(), 1);
    assert_eq!(
        (batch.rows[0].version, batch.rows[0].status.as_str()),
        (2, "paid")
    );
    let _: i64 = redis::cmd("DEL")
        .arg(keys::voucher_outbox(v))
        .query(&mut server.conn())
        .unwrap();

    // In one run, the older event in the batch after the newer one's: 100
    // entries of version 2, then version 1.
    for _ in 0..BATCH {
        append(&server, v, &b_events[1]);
    }
    append(&server, v, &b_events[0]);
    assert_eq!(
        export(&mut redis, &mut pg, v, "run-4").unwrap(),
        exported(BATCH as u64 + 1, 0)
    );
    let b_paid = read(&mut redis, v, &b);
    assert_eq!(table(&db), rows(&[(&used, 3), (&b_paid, 2)]));
    assert_eq!(writes(&db)[2..], [write("INSERT", &b, 2, "paid")]);
    assert_eq!(xlen(&server, v), 0);
}

#[test]
fn with_postgresql_down_nothing_is_acknowledged_and_everything_arrives_once_later() {
    let server = RedisServer::start();
    let mut redis = server.native();
    let mut db = PostgresServer::start();
    log_writes(&db);
    let mut pg = db.native();
    let v = on_sale(&mut redis, 10);
    let o1 = buy(&mut redis, v, 1);
    assert_eq!(
        export(&mut redis, &mut pg, v, "run-0").unwrap(),
        exported(1, 0)
    );

    // Down: the run tries again while try_again says so (the connection it
    // had is closed, then none can be opened), and gives up when it says
    // no, with everything it took still pending.
    let o2 = buy(&mut redis, v, 2);
    change(&mut redis, v, &o2, pay());
    let o3 = buy(&mut redis, v, 3);
    db.stop();
    let mut asked = 0;
    let result = block_on(order_export::export_voucher(
        &mut redis,
        &mut pg,
        v,
        "run-1",
        Runner::Woken,
        &mut || {
            asked += 1;
            asked < 3
        },
    ));
    match result {
        Err(ExportError::Database(e @ DatabaseError::Unreachable(_))) => {
            assert!(e.is_transient());
            assert!(matches!(
                ApiError::from(ExportError::Database(e)),
                ApiError::DatabaseUnavailable(_)
            ));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(asked, 3);
    assert_eq!((xlen(&server, v), pending(&server, v)), (3, 3));
    assert_eq!(consumers(&server, v), named(&[("run-1", 3)]));

    // Back: a new run takes the failed run's entries over once idle and
    // writes each order once.
    db.restart();
    wait_claim_idle();
    assert_eq!(
        export(&mut redis, &mut pg, v, "run-2").unwrap(),
        exported(3, 3)
    );
    let (o2, o3) = (read(&mut redis, v, &o2), read(&mut redis, v, &o3));
    assert_eq!(table(&db), rows(&[(&o1, 1), (&o2, 2), (&o3, 1)]));
    assert_eq!(
        writes(&db),
        [
            write("INSERT", &o1, 1, "unpaid"),
            write("INSERT", &o2, 2, "paid"),
            write("INSERT", &o3, 1, "unpaid")
        ]
    );
    assert_eq!((xlen(&server, v), pending(&server, v)), (0, 0));
    assert_eq!(consumers(&server, v), named(&[]));

    // Down again, and back while the run waits in try_again: one run.
    let o4 = buy(&mut redis, v, 4);
    db.stop();
    let mut asked = 0;
    let result = block_on(order_export::export_voucher(
        &mut redis,
        &mut pg,
        v,
        "run-3",
        Runner::Woken,
        &mut || {
            asked += 1;
            if asked == 1 {
                db.restart();
            }
            true
        },
    ));
    assert_eq!(result.unwrap(), exported(1, 0));
    assert_eq!(asked, 1);
    assert_eq!(writes(&db)[3..], [write("INSERT", &o4, 1, "unpaid")]);
    assert_eq!(table(&db).len(), 4);
    assert_eq!((xlen(&server, v), pending(&server, v)), (0, 0));
}

/// The voucher's parked events, oldest first: (order id, version, SQLSTATE).
fn parked(redis: &mut NativeRedis, v: VoucherId) -> Vec<(u64, i64, String)> {
    let (events, more) = block_on(order_export::parked(redis, v, None, 100)).unwrap();
    assert!(!more);
    events
        .into_iter()
        .map(|e| (e.row.id, e.row.version, e.code))
        .collect()
}

fn parked_len(server: &RedisServer, v: VoucherId) -> i64 {
    redis::cmd("XLEN")
        .arg(keys::voucher_outbox_parked(v))
        .query(&mut server.conn())
        .unwrap()
}

fn drain(
    redis: &mut NativeRedis,
    pg: &mut NativePostgres,
    vouchers: &[VoucherId],
) -> order_export::Report {
    let parts: Vec<_> = vouchers.iter().map(|v| (*v).into()).collect();
    block_on(order_export::export(
        redis,
        pg,
        &parts,
        Runner::Operator,
        || false,
    ))
    .unwrap()
}

#[test]
fn an_event_postgresql_refuses_is_parked_and_the_rest_exported() {
    let server = RedisServer::start();
    let mut redis = server.native();
    let db = PostgresServer::start();
    log_writes(&db);
    let mut pg = db.native();
    let (v1, v2) = (on_sale(&mut redis, 200), on_sale(&mut redis, 10));

    // The shop's table refuses user 3's orders (a constraint) and user 120's
    // (a trigger). Voucher 1: 150 orders in two batches, one refused in
    // each; then order 3 paid, which is refused again. Voucher 2: 4 orders
    // of other users.
    db.psql(
        "ALTER TABLE voucher_order ADD CONSTRAINT not_user_3 CHECK (user_id <> 3);
         CREATE FUNCTION refuse_120() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF NEW.user_id = 120 THEN RAISE EXCEPTION 'user 120 is blocked'; END IF;
           RETURN NEW;
         END $$;
         CREATE TRIGGER refuse_120 BEFORE INSERT OR UPDATE ON voucher_order
           FOR EACH ROW EXECUTE FUNCTION refuse_120();",
    );
    let orders: Vec<Order> = (1..=150).map(|n| buy(&mut redis, v1, n)).collect();
    change(&mut redis, v1, &orders[2], pay());
    let others: Vec<Order> = (201..=204).map(|n| buy(&mut redis, v2, n)).collect();

    let report = drain(&mut redis, &mut pg, &[v1, v2]);
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(
        report.exported,
        Exported {
            events: 148 + 4,
            claimed: 0,
            parked: 3
        }
    );
    let (o3, o120) = (orders[2].id.raw(), orders[119].id.raw());
    assert_eq!(
        parked(&mut redis, v1),
        [
            (o3, 1, "23514".to_string()),
            (o120, 1, "P0001".to_string()),
            (o3, 2, "23514".to_string())
        ]
    );
    assert!(parked(&mut redis, v2).is_empty());
    let good: Vec<(&Order, i64)> = orders
        .iter()
        .filter(|o| ![3, 120].contains(&o.user_id.get()))
        .chain(&others)
        .map(|o| (o, 1))
        .collect();
    assert_eq!(table(&db), rows(&good));
    assert_eq!(writes(&db).len(), 152, "each good order written once");
    for v in [v1, v2] {
        assert_eq!((xlen(&server, v), pending(&server, v)), (0, 0));
        assert_eq!(consumers(&server, v), named(&[]));
    }
    let (first, _) = block_on(order_export::parked(&mut redis, v1, None, 1)).unwrap();
    assert!(first[0].message.contains("not_user_3"), "{first:?}");
    assert!(first[0].parked_ms() > 0);

    // Refused again: moved back, parked again, nothing written. Back in one
    // batch, order 3's first event is superseded by its second, and only
    // that one is parked.
    assert_eq!(block_on(order_export::unpark(&mut redis, v1)).unwrap(), 3);
    let again = drain(&mut redis, &mut pg, &[v1, v2]);
    assert_eq!((again.exported.events, again.exported.parked), (1, 2));
    assert_eq!(
        parked(&mut redis, v1),
        [(o3, 2, "23514".to_string()), (o120, 1, "P0001".to_string())]
    );
    assert_eq!(writes(&db).len(), 152);

    // The cause fixed, they are moved back and each order written once, at
    // its latest version.
    db.psql("ALTER TABLE voucher_order DROP CONSTRAINT not_user_3; DROP TRIGGER refuse_120 ON voucher_order");
    assert_eq!(block_on(order_export::unpark(&mut redis, v1)).unwrap(), 2);
    assert_eq!(parked_len(&server, v1), 0);
    let retried = drain(&mut redis, &mut pg, &[v1, v2]);
    assert_eq!(retried.exported, exported(2, 0));
    let paid = read(&mut redis, v1, &orders[2]);
    assert!(table(&db).contains(&row(&paid, 2)));
    assert!(table(&db).contains(&row(&orders[119], 1)));
    assert_eq!(table(&db).len(), 154);
    assert_eq!(
        writes(&db)[152..],
        [
            write("INSERT", &orders[2], 2, "paid"),
            write("INSERT", &orders[119], 1, "unpaid")
        ]
    );
    assert_eq!((xlen(&server, v1), pending(&server, v1)), (0, 0));
    assert_eq!(
        drain(&mut redis, &mut pg, &[v1, v2]).exported,
        exported(0, 0)
    );
}

#[test]
fn a_refusal_of_another_kind_stops_its_voucher_only_with_its_batch_pending() {
    let server = RedisServer::start();
    let mut redis = server.native();
    let db = PostgresServer::start();
    let mut pg = db.native();
    let (v1, v2) = (on_sale(&mut redis, 10), on_sale(&mut redis, 10));
    for (_, sql) in MIGRATIONS {
        db.psql(sql);
    }

    // Voucher 1's rows meet a trigger that refuses them for a reason no
    // event's data is to blame for (a privilege, as a shop's policy might
    // say): nothing is parked, its batch stays pending, voucher 2 goes on.
    db.psql(&format!(
        "CREATE FUNCTION closed() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF NEW.voucher_id = {v1} THEN
             RAISE EXCEPTION 'voucher closed' USING ERRCODE = 'insufficient_privilege';
           END IF;
           RETURN NEW;
         END $$;
         CREATE TRIGGER closed BEFORE INSERT ON voucher_order
           FOR EACH ROW EXECUTE FUNCTION closed();"
    ));
    for n in 1..=3 {
        buy(&mut redis, v1, n);
        buy(&mut redis, v2, 10 + n);
    }
    let report = drain(&mut redis, &mut pg, &[v1, v2]);
    assert_eq!(report.exported, exported(3, 0));
    assert_eq!(report.failed.len(), 1);
    let (voucher, e) = &report.failed[0];
    assert_eq!(*voucher, v1.into());
    assert!(
        matches!(e, DatabaseError::Refused { code, .. } if code == "42501"),
        "{e:?}"
    );
    assert!(!e.is_transient() && !e.is_refused_data());
    assert!(matches!(
        ApiError::from(ExportError::Database(e.clone())),
        ApiError::Internal(_)
    ));
    assert_eq!((xlen(&server, v1), pending(&server, v1)), (3, 3));
    assert_eq!(parked_len(&server, v1), 0);
    assert_eq!((xlen(&server, v2), pending(&server, v2)), (0, 0));
    assert_eq!(table(&db).len(), 3);

    // Once the table takes them, the next drain carries them over.
    db.psql("DROP TRIGGER closed ON voucher_order");
    let report = drain(&mut redis, &mut pg, &[v1, v2]);
    assert!(report.failed.is_empty());
    assert_eq!(report.exported, exported(3, 3));
    assert_eq!(table(&db).len(), 6);
    assert_eq!((xlen(&server, v1), pending(&server, v1)), (0, 0));
}

#[test]
fn the_operators_drain_takes_over_everything_pending_not_one_batch() {
    let server = RedisServer::start();
    let mut redis = server.native();
    let db = PostgresServer::start();
    let mut pg = db.native();
    let v = on_sale(&mut redis, 300);
    for n in 1..=250 {
        buy(&mut redis, v, n);
    }

    // Three runs die holding a batch each: 100, 100 and 50 entries.
    for consumer in ["a", "b", "c"] {
        take(&mut redis, v, consumer, true);
    }
    assert_eq!(
        consumers(&server, v),
        named(&[("a", 100), ("b", 100), ("c", 50)])
    );

    // The drain takes over all of them at once and writes each order once.
    let drained = block_on(order_export::export(
        &mut redis,
        &mut pg,
        &[v.into()],
        Runner::Operator,
        || false,
    ))
    .unwrap();
    assert_eq!(drained.exported, exported(250, 250));
    assert!(drained.failed.is_empty());
    assert_eq!(table(&db).len(), 250);
    assert_eq!((xlen(&server, v), pending(&server, v)), (0, 0));
    assert_eq!(consumers(&server, v), named(&[]));
}

#[test]
fn parked_events_are_listed_page_by_page_across_vouchers() {
    let server = RedisServer::start();
    let mut redis = server.native();
    let db = PostgresServer::start();
    let mut pg = db.native();
    let vouchers: Vec<VoucherId> = (0..3).map(|_| on_sale(&mut redis, 10)).collect();
    let [v1, v2, v3] = vouchers[..] else {
        unreachable!()
    };
    for (_, sql) in MIGRATIONS {
        db.psql(sql);
    }
    db.psql(&format!(
        "ALTER TABLE voucher_order ADD CONSTRAINT shut CHECK (voucher_id NOT IN ({v1}, {v3}))"
    ));
    let mut bought = HashMap::new();
    for (v, users) in [(v1, 1..=2), (v2, 3..=3), (v3, 4..=6)] {
        for n in users {
            bought.insert(buy(&mut redis, v, n).id.raw(), (v, n));
        }
    }
    let report = drain(&mut redis, &mut pg, &vouchers);
    assert_eq!((report.exported.events, report.exported.parked), (1, 5));

    // Two at a time: voucher 1's two, then voucher 3's first two (voucher 2
    // has none), then its last.
    let page = |redis: &mut NativeRedis, only, from| {
        let (events, next) = block_on(order_export::parked_page(redis, only, from, 2)).unwrap();
        let users: Vec<u32> = events.iter().map(|e| bought[&e.row.id].1).collect();
        (users, next)
    };
    let (users, next) = page(&mut redis, None, None);
    assert_eq!(users, [1, 2]);
    assert_eq!(next.unwrap().to_string(), v2.to_string());
    let (users, next) = page(&mut redis, None, next);
    assert_eq!(users, [4, 5]);
    let next = next.unwrap();
    let again = order_export::ParkedCursor::parse(&next.to_string()).unwrap();
    assert_eq!(again, next);
    let (users, next) = page(&mut redis, None, Some(again));
    assert_eq!(users, [6]);
    assert_eq!(next, None);

    // One voucher's only; a cursor of another voucher is refused.
    let (users, next) = page(&mut redis, Some(v3), None);
    assert_eq!(users, [4, 5]);
    let (users, next) = page(&mut redis, Some(v3), next);
    assert_eq!((users, next), (vec![6], None));
    let (users, next) = page(&mut redis, Some(v2), None);
    assert_eq!((users, next), (vec![], None));
    let elsewhere = order_export::ParkedCursor::parse(&v1.to_string()).unwrap();
    assert!(matches!(
        block_on(order_export::parked_page(
            &mut redis,
            Some(v3),
            Some(elsewhere),
            2
        )),
        Err(ApiError::InvalidRequest(_))
    ));
    for bad in ["", "0", "1.2", "x", "1.2.3.4"] {
        assert!(order_export::ParkedCursor::parse(bad).is_err(), "{bad}");
    }

    // Each event as the admin API shows it.
    let (events, _) = block_on(order_export::parked(&mut redis, v1, None, 1)).unwrap();
    let json = events[0].to_json();
    assert_eq!(json["voucher_id"], v1.to_string());
    assert_eq!(json["error"]["sqlstate"], "23514");
    assert_eq!(json["order"]["status"], "unpaid");
    assert_eq!(json["order"]["version"], 1);
    assert_eq!(json["order"]["user_id"], "1");
    assert!(json["parked_at"].as_str().unwrap().ends_with('Z'));
}
