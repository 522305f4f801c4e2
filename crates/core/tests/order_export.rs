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
//! `try_again`); and a statement PostgreSQL refuses, which ends the run
//! with its batch pending.

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
use flashspin_core::voucher::{self};
use flashspin_testkit::{NativePostgres, NativeRedis, PostgresServer, RedisServer};

mod common;
use common::*;

const ON: OrderExport = OrderExport::On;
const PAY_SECS: u32 = 900;

/// Order `n` of a test, bought by user `n`.
fn buy(redis: &mut NativeRedis, v: VoucherId, n: u32) -> Order {
    voucher::buy(redis, v, user(n.into()), order_id(n), PAY_SECS, ON).unwrap()
}

fn change(redis: &mut NativeRedis, v: VoucherId, o: &Order, change: Change) -> Order {
    order::change(redis, v, o.id, change, None, ON).unwrap()
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
    order_export::take(redis, v, consumer, Runner::Woken, &step).unwrap()
}

fn export(
    redis: &mut NativeRedis,
    db: &mut NativePostgres,
    v: VoucherId,
    consumer: &str,
) -> Result<Exported, ExportError> {
    order_export::export_voucher(redis, db, v, consumer, Runner::Woken, &mut || false)
}

fn exported(events: u64, claimed: u64) -> Exported {
    Exported { events, claimed }
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
    order::change(
        &mut redis,
        v,
        orders[1].id,
        Change::Cancel,
        Some(user(2)),
        ON,
    )
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
    let done = order_export::done(&mut redis, v, &first.entry_ids).unwrap();
    assert_eq!(done, 100);
    assert_eq!((xlen(&server, v), pending(&server, v)), (13, 13));
    assert_eq!(
        order_export::done(&mut redis, v, &first.entry_ids).unwrap(),
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
        order_export::done(&mut redis, v, &second.entry_ids).unwrap(),
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
    let drain = order_export::take(&mut redis, v, "c", Runner::Operator, &Step::First).unwrap();
    assert_eq!((drain.entry_ids.len(), drain.claimed), (4, 4));
    assert_eq!(
        consumers(&server, v),
        named(&[("a", 0), ("b", 0), ("c", 4)])
    );
    assert_eq!(
        order_export::done(&mut redis, v, &drain.entry_ids).unwrap(),
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
    order::change(
        &mut redis,
        v,
        cancelled.id,
        Change::Cancel,
        Some(user(2)),
        ON,
    )
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
    let result =
        order_export::export_voucher(&mut redis, &mut pg, v, "run-1", Runner::Woken, &mut || {
            asked += 1;
            asked < 3
        });
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
    let result =
        order_export::export_voucher(&mut redis, &mut pg, v, "run-3", Runner::Woken, &mut || {
            asked += 1;
            if asked == 1 {
                db.restart();
            }
            true
        });
    assert_eq!(result.unwrap(), exported(1, 0));
    assert_eq!(asked, 1);
    assert_eq!(writes(&db)[3..], [write("INSERT", &o4, 1, "unpaid")]);
    assert_eq!(table(&db).len(), 4);
    assert_eq!((xlen(&server, v), pending(&server, v)), (0, 0));
}

#[test]
fn a_statement_postgresql_refuses_ends_the_run_with_its_batch_pending() {
    let server = RedisServer::start();
    let mut redis = server.native();
    let db = PostgresServer::start();
    let mut pg = db.native();
    let v = on_sale(&mut redis, 200);
    let first = buy(&mut redis, v, 1);
    assert_eq!(
        export(&mut redis, &mut pg, v, "run-0").unwrap(),
        exported(1, 0)
    );

    // A table that refuses paid orders; 100 purchases, then a payment: the
    // first batch goes in, the second is refused.
    db.psql("ALTER TABLE voucher_order ADD CONSTRAINT no_paid CHECK (status <> 'paid')");
    for n in 2..=101 {
        buy(&mut redis, v, n);
    }
    change(&mut redis, v, &first, pay());
    let mut asked = 0;
    let result =
        order_export::export_voucher(&mut redis, &mut pg, v, "run-1", Runner::Woken, &mut || {
            asked += 1;
            true
        });
    let e = match result {
        Err(ExportError::Database(e)) => e,
        other => panic!("{other:?}"),
    };
    assert!(
        matches!(&e, DatabaseError::Refused { code, .. } if code == "23514"),
        "{e:?}"
    );
    assert!(!e.is_transient());
    assert_eq!(asked, 0, "a refusal is not tried again");
    assert!(matches!(
        ApiError::from(ExportError::Database(e)),
        ApiError::Internal(_)
    ));
    assert_eq!(table(&db).len(), 101);
    assert_eq!((xlen(&server, v), pending(&server, v)), (1, 1));
    assert_eq!(consumers(&server, v), named(&[("run-1", 1)]));
    assert!(table(&db).contains(&row(&first, 1)));

    // Once the table takes it, the next run carries it over.
    db.psql("ALTER TABLE voucher_order DROP CONSTRAINT no_paid");
    wait_claim_idle();
    assert_eq!(
        export(&mut redis, &mut pg, v, "run-2").unwrap(),
        exported(1, 1)
    );
    let paid = read(&mut redis, v, &first);
    assert!(table(&db).contains(&row(&paid, 2)));
    assert_eq!((xlen(&server, v), pending(&server, v)), (0, 0));
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
    let drained =
        order_export::export(&mut redis, &mut pg, &[v], Runner::Operator, || false).unwrap();
    assert_eq!(drained, exported(250, 250));
    assert_eq!(table(&db).len(), 250);
    assert_eq!((xlen(&server, v), pending(&server, v)), (0, 0));
    assert_eq!(consumers(&server, v), named(&[]));
}
