//! Orders in the shop's PostgreSQL. The scripts that change an order also
//! append the order's new state to its voucher's outbox stream (see
//! `orders.lua`); this module moves those events into the `voucher_order`
//! table, created by the migrations below (`src/sql`).
//!
//! Delivery is at least once: a batch is acknowledged in Redis only after
//! PostgreSQL took it, and entries a crashed or failed run left pending are
//! taken over by the next run. The upsert only replaces a row with a later
//! `version` of the same order, so a replayed or late event never moves an
//! order backwards, and the table ends up as if each change had been
//! written exactly once.
//!
//! An event PostgreSQL refuses for its data (a constraint or a trigger of
//! the shop's) is parked: moved with the error to its voucher's parked
//! stream, so that it does not hold back the events after it, until the
//! operator moves it back. Every wait on PostgreSQL is bounded
//! ([`session_setup`], [`connection_string`]).

use std::collections::HashMap;

use crate::database::{Database, DatabaseError, SqlValue};
use crate::ids::VoucherId;
use crate::keys;
use crate::part::VoucherPart;
use crate::redis::{Redis, RedisError};
use crate::script::ReplyReader;
use crate::scripts::{outbox_done, outbox_park, outbox_parked, outbox_take, outbox_unpark};
use crate::time::format_rfc3339;

/// Every migration, oldest first: its name and its SQL. Each one can be
/// applied again without harm (`IF NOT EXISTS`).
pub const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_voucher_order",
        include_str!("sql/0001_voucher_order.sql"),
    ),
    ("0002_exported_at", include_str!("sql/0002_exported_at.sql")),
];

/// The consumer group every exporter reads the outbox streams in.
pub const GROUP: &str = "order-export";

/// Events taken per round trip, and so rows per upsert at most.
pub const BATCH: i64 = 100;

/// How long an entry must have been pending with another consumer before
/// a woken run takes it over. A consumer that is alive finishes a batch in
/// far less; taking one over from a slow consumer only writes a row twice,
/// which the version check makes harmless.
pub const CLAIM_IDLE_MS: i64 = 1_000;

/// How long the exporter waits for PostgreSQL to accept a connection, in
/// seconds (`connect_timeout` of the connection string, which bounds the
/// TCP connect), unless `pg_address` says otherwise.
pub const CONNECT_TIMEOUT_SECS: u32 = 5;

/// How long one of the exporter's statements may wait for a lock (a shop
/// tool holding `voucher_order`), in ms; then it fails with SQLSTATE
/// 55P03, the batch stays pending and the run ends or tries again.
pub const LOCK_TIMEOUT_MS: u32 = 5_000;

/// How long one of the exporter's statements may take in all, in ms
/// (SQLSTATE 57014 past it). An upsert of a hundred rows takes
/// milliseconds.
pub const STATEMENT_TIMEOUT_MS: u32 = 10_000;

/// The statement each of the exporter's sessions begins with: the
/// timeouts above, for the session (a pooled connection is reset when it
/// goes back to the pool, in Spin and in flashspin alike).
pub fn session_setup() -> String {
    format!(
        "SELECT set_config('statement_timeout', '{STATEMENT_TIMEOUT_MS}', false), \
         set_config('lock_timeout', '{LOCK_TIMEOUT_MS}', false)"
    )
}

/// `pg_address` with a connect timeout of [`CONNECT_TIMEOUT_SECS`] added,
/// in the address's own form (a URL's query, or one more `key=value`),
/// unless it sets `connect_timeout` itself. Without one, a connect to a
/// host that drops packets waits for the operating system's TCP timeout,
/// minutes.
pub fn connection_string(pg_address: &str) -> String {
    if pg_address.contains("connect_timeout=") {
        return pg_address.to_string();
    }
    let setting = format!("connect_timeout={CONNECT_TIMEOUT_SECS}");
    let is_url = pg_address.starts_with("postgres://") || pg_address.starts_with("postgresql://");
    match (is_url, pg_address.contains('?')) {
        (true, true) => format!("{pg_address}&{setting}"),
        (true, false) => format!("{pg_address}?{setting}"),
        (false, _) => format!("{} {setting}", pg_address.trim_end()),
    }
}

/// Who runs an export, which decides what it takes over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runner {
    /// A run woken by a change: takes over entries pending for
    /// [`CLAIM_IDLE_MS`], leaving a run in progress its batch.
    Woken,
    /// The operator's drain: takes over everything pending at once (a
    /// failed or dead run's entries included), since it is asked for now.
    Operator,
}

impl Runner {
    fn claim_idle_ms(self) -> i64 {
        match self {
            Runner::Woken => CLAIM_IDLE_MS,
            Runner::Operator => 0,
        }
    }
}

/// Errors of an export run. Either way nothing was acknowledged that did
/// not reach PostgreSQL.
#[derive(Debug)]
pub enum ExportError {
    Redis(RedisError),
    Database(DatabaseError),
}

impl From<RedisError> for ExportError {
    fn from(e: RedisError) -> Self {
        ExportError::Redis(e)
    }
}

impl From<DatabaseError> for ExportError {
    fn from(e: DatabaseError) -> Self {
        ExportError::Database(e)
    }
}

impl std::fmt::Display for ExportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExportError::Redis(e) => write!(f, "Redis: {e}"),
            ExportError::Database(e) => write!(f, "PostgreSQL: {e}"),
        }
    }
}

/// Redis trouble is what it always is (503 or 500); PostgreSQL out of
/// reach is 503; a statement PostgreSQL refuses is a bug of ours, 500.
impl From<ExportError> for crate::ApiError {
    fn from(e: ExportError) -> Self {
        match e {
            ExportError::Redis(e) => e.into(),
            ExportError::Database(e) if e.is_transient() => {
                crate::ApiError::DatabaseUnavailable(e.to_string())
            }
            ExportError::Database(e) => crate::ApiError::Internal(e.to_string()),
        }
    }
}

/// An order as one of its events carries it: its whole state after a
/// change. Times are ms since the epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRow {
    pub id: u64,
    pub version: i64,
    pub voucher_id: VoucherId,
    pub user_id: u64,
    pub status: String,
    pub amount: i64,
    pub pay_type: Option<String>,
    pub created_ms: i64,
    pub deadline_ms: Option<i64>,
    pub pay_ms: Option<i64>,
    pub use_ms: Option<i64>,
    pub refund_ms: Option<i64>,
    pub updated_ms: i64,
}

/// Where a run is in a voucher's outbox: it first takes over what other
/// runs left pending, all of it, then reads what is new.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The run's first take: clears the wake flag and starts taking over
    /// at the head of the pending list.
    First,
    /// Taking over, from this point of the pending list on.
    Claim(String),
    /// Reading entries no run has had yet.
    Read,
}

impl OrderRow {
    /// The order as the admin API shows an event: the fields of the API's
    /// orders, and the version the event carries.
    pub fn to_json(&self) -> serde_json::Value {
        let time = |ms: Option<i64>| ms.map(format_rfc3339);
        serde_json::json!({
            "id": self.id.to_string(),
            "version": self.version,
            "voucher_id": self.voucher_id.to_string(),
            "user_id": self.user_id.to_string(),
            "status": self.status,
            "amount": self.amount,
            "pay_type": self.pay_type,
            "pay_deadline": time(self.deadline_ms),
            "pay_time": time(self.pay_ms),
            "use_time": time(self.use_ms),
            "refund_time": time(self.refund_ms),
            "create_time": format_rfc3339(self.created_ms),
            "update_time": format_rfc3339(self.updated_ms),
        })
    }
}

/// One batch handed out by the outbox: the entries' stream ids, to
/// acknowledge, and the latest state of each order among them.
#[derive(Debug)]
pub struct Batch {
    pub entry_ids: Vec<String>,
    pub rows: Vec<OrderRow>,
    /// For each row, the index in `entry_ids` of the entry it comes from.
    pub row_entries: Vec<usize>,
    /// Entries taken over from another consumer.
    pub claimed: i64,
    /// Where the run's next take starts.
    pub next: Step,
}

/// What a run exported.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Exported {
    /// Events this run wrote and acknowledged (a batch that another run,
    /// having taken it over, acknowledged first counts here too).
    pub events: u64,
    /// Of which taken over from a run that did not finish.
    pub claimed: u64,
    /// Events PostgreSQL refused for their data, parked (not in `events`).
    pub parked: u64,
}

impl std::ops::AddAssign for Exported {
    fn add_assign(&mut self, other: Self) {
        self.events += other.events;
        self.claimed += other.claimed;
        self.parked += other.parked;
    }
}

fn optional_ms(reader: &mut ReplyReader) -> Result<Option<i64>, RedisError> {
    Ok(Some(reader.num()?).filter(|&ms| ms > 0))
}

/// An order event as the scripts hand it out (`outbox_event.lua`).
fn read_row(events: &mut ReplyReader, voucher: VoucherId) -> Result<OrderRow, RedisError> {
    Ok(OrderRow {
        id: events.id()?,
        version: events.num()?,
        voucher_id: voucher,
        user_id: events.id()?,
        status: events.string()?,
        amount: events.num()?,
        pay_type: Some(events.string()?).filter(|t| !t.is_empty()),
        created_ms: events.num()?,
        deadline_ms: optional_ms(events)?,
        pay_ms: optional_ms(events)?,
        use_ms: optional_ms(events)?,
        refund_ms: optional_ms(events)?,
        updated_ms: events.num()?,
    })
}

/// Takes the next batch of `voucher`'s events for `consumer`, at `step`
/// of its run.
pub async fn take(
    redis: &mut impl Redis,
    voucher: impl Into<VoucherPart>,
    consumer: &str,
    runner: Runner,
    step: &Step,
) -> Result<Batch, RedisError> {
    let voucher = voucher.into();
    let outbox = keys::voucher_outbox(voucher);
    let wake = keys::voucher_export_wake(voucher);
    let claim_from = match step {
        Step::First => "0-0",
        Step::Claim(cursor) => cursor.as_str(),
        Step::Read => "",
    };
    let reply = outbox_take::run(
        redis,
        &outbox_take::Keys {
            outbox: &outbox,
            wake: &wake,
        },
        &outbox_take::Args {
            group: GROUP,
            consumer,
            claim_idle_ms: runner.claim_idle_ms(),
            count: BATCH,
            first_take: *step == Step::First,
            claim_from,
        },
    )
    .await?;
    let mut events = reply.events;
    let mut batch = Batch {
        entry_ids: Vec::new(),
        rows: Vec::new(),
        row_entries: Vec::new(),
        claimed: reply.claimed,
        next: match reply.cursor {
            cursor if cursor.is_empty() => Step::Read,
            cursor => Step::Claim(cursor),
        },
    };
    let mut latest: HashMap<u64, usize> = HashMap::new();
    while !events.at_end() {
        let entry_id = events.string()?;
        let row = read_row(&mut events, voucher.voucher())?;
        let entry = batch.entry_ids.len();
        batch.entry_ids.push(entry_id);
        // One row per order in a statement (PostgreSQL refuses to update a
        // row twice in one upsert): the latest version wins.
        match latest.get(&row.id) {
            Some(&i) if batch.rows[i].version >= row.version => {}
            Some(&i) => {
                batch.rows[i] = row;
                batch.row_entries[i] = entry;
            }
            None => {
                latest.insert(row.id, batch.rows.len());
                batch.rows.push(row);
                batch.row_entries.push(entry);
            }
        }
    }
    events.finish()?;
    Ok(batch)
}

/// Acknowledges entries that reached PostgreSQL, and drops them.
pub async fn done(
    redis: &mut impl Redis,
    voucher: impl Into<VoucherPart>,
    entry_ids: &[String],
) -> Result<i64, RedisError> {
    let outbox = keys::voucher_outbox(voucher.into());
    let ids: Vec<crate::redis::Arg<'_>> = entry_ids.iter().map(|id| id.as_str().into()).collect();
    let reply = outbox_done::run(
        redis,
        &outbox_done::Keys { outbox: &outbox },
        &outbox_done::Args {
            group: GROUP,
            ids: &ids,
        },
    )
    .await?;
    Ok(reply.acknowledged)
}

/// Parks the entry `entry_id` of `voucher`'s outbox, which PostgreSQL
/// refused with `error`: it moves, with the error, to the voucher's parked
/// stream and is acknowledged. False when it was no longer pending
/// (another run, having taken it over, acknowledged or parked it first).
pub async fn park(
    redis: &mut impl Redis,
    voucher: impl Into<VoucherPart>,
    entry_id: &str,
    error: &DatabaseError,
) -> Result<bool, RedisError> {
    let (code, message) = match error {
        DatabaseError::Refused { code, message } => (code.as_str(), message.clone()),
        other => ("", other.to_string()),
    };
    let voucher = voucher.into();
    let reply = outbox_park::run(
        redis,
        &outbox_park::Keys {
            outbox: &keys::voucher_outbox(voucher),
            parked: &keys::voucher_outbox_parked(voucher),
        },
        &outbox_park::Args {
            group: GROUP,
            entry_id,
            code,
            message: &message,
        },
    )
    .await?;
    Ok(reply.parked)
}

/// An order event PostgreSQL refused, as it waits parked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkedEvent {
    pub voucher: VoucherId,
    /// The part of a split voucher whose outbox it came from.
    pub part: VoucherPart,
    /// Its stream id in the parked stream: `<ms when parked>-<n>`.
    pub id: String,
    /// The SQLSTATE and message PostgreSQL refused it with.
    pub code: String,
    pub message: String,
    /// The order as the event carries it.
    pub row: OrderRow,
}

impl ParkedEvent {
    /// When it was parked, ms since the epoch (its stream id says).
    pub fn parked_ms(&self) -> i64 {
        self.id
            .split_once('-')
            .and_then(|(ms, _)| ms.parse().ok())
            .unwrap_or(0)
    }
}

impl ParkedEvent {
    /// As `GET /api/admin/orders/export/parked` lists it.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "voucher_id": self.voucher.to_string(),
            "id": self.id,
            "parked_at": format_rfc3339(self.parked_ms()),
            "error": {"sqlstate": self.code, "message": self.message},
            "order": self.row.to_json(),
        })
    }
}

/// Where a page of parked events starts: at the first of a voucher's part,
/// or after its event `after` (a stream id, as two numbers). Clients see it
/// as `<part>` or `<part>.<ms>.<n>`, where part is the voucher id, or for a
/// split voucher `<id>/<part>/<parts>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParkedCursor {
    pub part: VoucherPart,
    after: Option<(u64, u64)>,
}

impl ParkedCursor {
    pub fn parse(raw: &str) -> Result<Self, crate::ApiError> {
        let invalid = || crate::ApiError::invalid("cursor is not one this API handed out");
        let fields: Vec<&str> = raw.split('.').collect();
        let number = |s: &str| crate::ids::digits(s).ok_or_else(invalid);
        let (part, after) = match fields[..] {
            [part] => (part, None),
            [part, ms, n] => (part, Some((number(ms)?, number(n)?))),
            _ => return Err(invalid()),
        };
        Ok(Self {
            part: VoucherPart::parse_reference(part).ok_or_else(invalid)?,
            after,
        })
    }

    fn after_entry(&self) -> Option<String> {
        self.after.map(|(ms, n)| format!("{ms}-{n}"))
    }
}

impl std::fmt::Display for ParkedCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.after {
            Some((ms, n)) => write!(f, "{}.{ms}.{n}", self.part),
            None => write!(f, "{}", self.part),
        }
    }
}

/// The most vouchers one page of parked events looks into (a round trip
/// each), so that a page's cost is bounded however many vouchers there
/// are; a page that reaches it may hold fewer events than asked for, and
/// says where to go on.
pub const PARKED_VOUCHERS_PER_PAGE: u64 = 1_000;

/// A page of parked events: of `only` or of every voucher in id order
/// (a split voucher's parts in order), oldest first within a part, from
/// `from` on, at most `limit`; and where the next page starts, if anything
/// may be left.
pub async fn parked_page(
    redis: &mut impl Redis,
    only: Option<VoucherId>,
    from: Option<ParkedCursor>,
    limit: usize,
) -> Result<(Vec<ParkedEvent>, Option<ParkedCursor>), crate::ApiError> {
    let (first, last) = match only {
        Some(v) => (v.get(), v.get()),
        None => (1, last_voucher(redis).await?),
    };
    let start = from.map_or(first, |c| c.part.voucher().get());
    if start < first || (start > last && only.is_some()) {
        return Err(crate::ApiError::invalid(
            "cursor is not one this API handed out",
        ));
    }
    let split = split_vouchers(redis).await?;
    let mut page = Vec::new();
    let end = last.min(start.saturating_add(PARKED_VOUCHERS_PER_PAGE - 1));
    let parts = (start..=end).flat_map(|id| {
        let voucher = VoucherId::new(id).expect("ids from 1 up");
        VoucherPart::all(voucher, split.count(id))
    });
    let parts: Vec<VoucherPart> = parts
        .filter(|p| from.is_none_or(|c| c.part.voucher() != p.voucher() || *p >= c.part))
        .collect();
    for (i, &part) in parts.iter().enumerate() {
        let after = from
            .filter(|c| c.part == part)
            .and_then(|c| c.after_entry());
        let (events, more) = parked(redis, part, after.as_deref(), limit - page.len()).await?;
        page.extend(events);
        if page.len() == limit {
            let next = if more {
                let last_id = &page.last().expect("a full page").id;
                let (ms, n) = last_id.split_once('-').unwrap_or((last_id, "0"));
                Some(ParkedCursor {
                    part,
                    after: Some((ms.parse().unwrap_or(0), n.parse().unwrap_or(0))),
                })
            } else {
                next_start(&parts[i + 1..], end, last)
            };
            return Ok((page, next));
        }
    }
    Ok((page, next_start(&[], end, last)))
}

/// Where the next page starts after a page that looked at every part up to
/// voucher `end`, with `rest` of them still to look at.
fn next_start(rest: &[VoucherPart], end: u64, last: u64) -> Option<ParkedCursor> {
    rest.first()
        .copied()
        .or_else(|| {
            VoucherId::new(end + 1)
                .filter(|_| end < last)
                .map(Into::into)
        })
        .map(|part| ParkedCursor { part, after: None })
}

/// Every split voucher and its number of parts, by voucher id.
pub struct SplitVouchers(Vec<(u64, u8)>);

impl SplitVouchers {
    /// The parts of voucher `id`: 1 unless it is split.
    pub fn count(&self, id: u64) -> u8 {
        self.0
            .binary_search_by_key(&id, |(v, _)| *v)
            .map_or(1, |i| self.0[i].1)
    }
}

/// Reads [`SplitVouchers`] (one round trip).
pub async fn split_vouchers(redis: &mut impl Redis) -> Result<SplitVouchers, RedisError> {
    let reply = redis
        .execute("HGETALL", &[keys::SPLIT_VOUCHERS.into()])
        .await?;
    let mut split = Vec::new();
    for pair in reply.chunks(2) {
        if let [
            crate::redis::Reply::Bytes(id),
            crate::redis::Reply::Bytes(n),
        ] = pair
        {
            let id = std::str::from_utf8(id).ok().and_then(|s| s.parse().ok());
            let n = std::str::from_utf8(n).ok().and_then(|s| s.parse().ok());
            if let (Some(id), Some(n)) = (id, n) {
                split.push((id, n));
            }
        }
    }
    split.sort_unstable();
    Ok(SplitVouchers(split))
}

/// Up to `count` of `voucher`'s parked events after the stream id `after`
/// (from the first when `None`), oldest first, and whether more follow.
pub async fn parked(
    redis: &mut impl Redis,
    part: impl Into<VoucherPart>,
    after: Option<&str>,
    count: usize,
) -> Result<(Vec<ParkedEvent>, bool), RedisError> {
    let part = part.into();
    let voucher = part.voucher();
    let reply = outbox_parked::run(
        redis,
        &outbox_parked::Keys {
            parked: &keys::voucher_outbox_parked(part),
        },
        &outbox_parked::Args {
            after: after.unwrap_or(""),
            count: count as i64,
        },
    )
    .await?;
    let mut events = reply.events;
    let mut list = Vec::new();
    while !events.at_end() {
        list.push(ParkedEvent {
            voucher,
            part,
            id: events.string()?,
            code: events.string()?,
            message: events.string()?,
            row: read_row(&mut events, voucher)?,
        });
    }
    events.finish()?;
    Ok((list, reply.more))
}

/// Moves all of `voucher`'s parked events back into its outbox, where the
/// next run takes them as new ones; returns how many.
pub async fn unpark(
    redis: &mut impl Redis,
    voucher: impl Into<VoucherPart>,
) -> Result<u64, RedisError> {
    let voucher = voucher.into();
    let (parked, outbox) = (
        keys::voucher_outbox_parked(voucher),
        keys::voucher_outbox(voucher),
    );
    let mut moved = 0;
    loop {
        let reply = outbox_unpark::run(
            redis,
            &outbox_unpark::Keys {
                parked: &parked,
                outbox: &outbox,
            },
            &outbox_unpark::Args { count: BATCH },
        )
        .await?;
        moved += reply.moved.max(0) as u64;
        if reply.left <= 0 || reply.moved <= 0 {
            return Ok(moved);
        }
    }
}

/// The upsert of a batch: a new order is inserted, a known one replaced
/// only by a later version. The batch travels as one array per column, so
/// the statement's text and its 13 parameters are the same whatever the
/// batch's size (PostgreSQL parses it as quickly for a hundred rows as for one);
/// times go as ms and become `timestamptz` in SQL, since Spin's parameters
/// carry no time to the millisecond.
pub const UPSERT: &str = "\
    INSERT INTO voucher_order (id, user_id, voucher_id, status, amount, pay_type, \
      pay_deadline, pay_time, use_time, refund_time, create_time, update_time, version) \
    SELECT id, user_id, voucher_id, status, amount, pay_type, \
      to_timestamp(deadline / 1000.0), to_timestamp(pay_time / 1000.0), \
      to_timestamp(use_time / 1000.0), to_timestamp(refund_time / 1000.0), \
      to_timestamp(created / 1000.0), to_timestamp(updated / 1000.0), version \
    FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::bigint[], \
      $6::text[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[], \
      $12::bigint[], $13::bigint[]) \
      AS batch (id, user_id, voucher_id, status, amount, pay_type, deadline, pay_time, \
        use_time, refund_time, created, updated, version) \
    ON CONFLICT (id) DO UPDATE SET user_id = EXCLUDED.user_id, \
      voucher_id = EXCLUDED.voucher_id, status = EXCLUDED.status, \
      amount = EXCLUDED.amount, pay_type = EXCLUDED.pay_type, \
      pay_deadline = EXCLUDED.pay_deadline, pay_time = EXCLUDED.pay_time, \
      use_time = EXCLUDED.use_time, refund_time = EXCLUDED.refund_time, \
      create_time = EXCLUDED.create_time, update_time = EXCLUDED.update_time, \
      version = EXCLUDED.version, exported_at = now() \
    WHERE voucher_order.version < EXCLUDED.version";

/// The upsert's parameters: one array per column of `UPSERT`'s `batch`.
fn upsert_params(rows: &[OrderRow]) -> Vec<SqlValue> {
    let ints =
        |f: &dyn Fn(&OrderRow) -> Option<i64>| SqlValue::IntArray(rows.iter().map(f).collect());
    let texts =
        |f: &dyn Fn(&OrderRow) -> Option<String>| SqlValue::TextArray(rows.iter().map(f).collect());
    vec![
        ints(&|r| Some(r.id as i64)),
        ints(&|r| Some(r.user_id as i64)),
        ints(&|r| Some(r.voucher_id.get() as i64)),
        texts(&|r| Some(r.status.clone())),
        ints(&|r| Some(r.amount)),
        texts(&|r| r.pay_type.clone()),
        ints(&|r| r.deadline_ms),
        ints(&|r| r.pay_ms),
        ints(&|r| r.use_ms),
        ints(&|r| r.refund_ms),
        ints(&|r| Some(r.created_ms)),
        ints(&|r| Some(r.updated_ms)),
        ints(&|r| Some(r.version)),
    ]
}

/// Writes `rows`; on a database without the table (or a column a later
/// migration adds), applies the migrations first, so a fresh or older
/// database needs no set-up step.
pub async fn upsert(db: &mut impl Database, rows: &[OrderRow]) -> Result<u64, DatabaseError> {
    if rows.is_empty() {
        return Ok(0);
    }
    let params = upsert_params(rows);
    match db.execute(UPSERT, &params).await {
        Err(e) if e.is_missing_schema() => {
            migrate(db).await?;
            db.execute(UPSERT, &params).await
        }
        other => other,
    }
}

/// Applies every migration, in order.
pub async fn migrate(db: &mut impl Database) -> Result<(), DatabaseError> {
    for (_, sql) in MIGRATIONS {
        for statement in sql.split(';').filter(|s| !sql_is_blank(s)) {
            db.execute(statement, &[]).await?;
        }
    }
    Ok(())
}

/// Whether a piece of a migration holds only comments and blanks.
fn sql_is_blank(s: &str) -> bool {
    s.lines()
        .map(str::trim)
        .all(|l| l.is_empty() || l.starts_with("--"))
}

/// Writes `rows` (the first of them is row `first` of its batch); when
/// PostgreSQL refuses the data of some of them, writes each half on its own,
/// and so on, until each refused row is alone, and adds those to
/// `refused` with their error. Every other row is written. A batch with one
/// bad row costs about twice the log of its size in statements; each
/// statement is all or nothing, so a refused one wrote nothing.
async fn write_isolating(
    db: &mut impl Database,
    rows: &[OrderRow],
    first: usize,
    refused: &mut Vec<(usize, DatabaseError)>,
) -> Result<(), DatabaseError> {
    match upsert(db, rows).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_refused_data() && rows.len() == 1 => {
            refused.push((first, e));
            Ok(())
        }
        Err(e) if e.is_refused_data() => {
            let half = rows.len() / 2;
            // Boxed: an async fn that calls itself needs a known size.
            Box::pin(write_isolating(db, &rows[..half], first, refused)).await?;
            Box::pin(write_isolating(db, &rows[half..], first + half, refused)).await
        }
        Err(e) => Err(e),
    }
}

/// Whether a run tries a batch again after PostgreSQL could not be
/// reached; it may wait first. Async, so that a WASI 0.3 instance's other
/// requests run while it waits. A closure answers at once.
#[allow(async_fn_in_trait)] // Wasm is single-threaded: no `Send` to promise.
pub trait Retry {
    async fn again(&mut self) -> bool;
}

impl<F: FnMut() -> bool> Retry for F {
    async fn again(&mut self) -> bool {
        self()
    }
}

/// Moves every pending event of `voucher` to PostgreSQL: batch after batch
/// until the outbox has nothing more to hand out. `consumer` names this run
/// in the consumer group; it must be unique to the run. When PostgreSQL
/// cannot be reached the batch is tried again as long as `try_again` (which
/// may wait) says so; the run then ends with the batch still pending. An
/// event whose data PostgreSQL refuses ([`DatabaseError::is_refused_data`])
/// is parked and the rest of its batch written; any other refusal ends the
/// run with the batch pending.
pub async fn export_voucher(
    redis: &mut impl Redis,
    db: &mut impl Database,
    voucher: impl Into<VoucherPart>,
    consumer: &str,
    runner: Runner,
    try_again: &mut impl Retry,
) -> Result<Exported, ExportError> {
    let mut exported = Exported::default();
    export_voucher_into(
        redis,
        db,
        voucher.into(),
        consumer,
        runner,
        try_again,
        &mut exported,
    )
    .await?;
    Ok(exported)
}

/// [`export_voucher`], adding to `exported` batch by batch, so that what
/// was done before an error is counted.
async fn export_voucher_into(
    redis: &mut impl Redis,
    db: &mut impl Database,
    voucher: VoucherPart,
    consumer: &str,
    runner: Runner,
    try_again: &mut impl Retry,
    exported: &mut Exported,
) -> Result<(), ExportError> {
    let mut step = Step::First;
    loop {
        let batch = take(redis, voucher, consumer, runner, &step).await?;
        step = batch.next.clone();
        if batch.entry_ids.is_empty() {
            return Ok(());
        }
        let refused = loop {
            let mut refused = Vec::new();
            match write_isolating(db, &batch.rows, 0, &mut refused).await {
                Ok(()) => break refused,
                Err(e) if e.is_transient() => {
                    if !try_again.again().await {
                        return Err(e.into());
                    }
                }
                Err(e) => return Err(e.into()),
            }
        };
        // A refused row's entry is parked; the batch's older events of the
        // same order are acknowledged with the rest, superseded by it as in
        // any batch.
        let mut acknowledge = vec![true; batch.entry_ids.len()];
        for (row, error) in &refused {
            let entry = batch.row_entries[*row];
            acknowledge[entry] = false;
            if park(redis, voucher, &batch.entry_ids[entry], error).await? {
                exported.parked += 1;
            }
        }
        let written: Vec<String> = batch
            .entry_ids
            .into_iter()
            .zip(acknowledge)
            .filter_map(|(id, ack)| ack.then_some(id))
            .collect();
        if !written.is_empty() {
            done(redis, voucher, &written).await?;
        }
        exported.events += written.len() as u64;
        exported.claimed += batch.claimed.max(0) as u64;
    }
}

/// What a run over several vouchers did.
#[derive(Debug, Default)]
pub struct Report {
    /// Summed over the vouchers, those that failed included.
    pub exported: Exported,
    /// The vouchers whose export stopped at a statement PostgreSQL refused
    /// for another reason than an event's data (a privilege taken away, a
    /// table changed under the exporter): their batch stays pending.
    pub failed: Vec<(VoucherPart, DatabaseError)>,
}

/// One run over `vouchers`, one after the other, under a fresh consumer
/// name: what the exporter does when woken (one voucher) and what the
/// operator's drain does (all of them). A voucher that fails for a reason
/// of its own is reported and the run goes on with the next; when Redis or
/// PostgreSQL cannot be used at all (a transient error that `try_again`
/// did not outlast), the run stops there with the error.
pub async fn export(
    redis: &mut impl Redis,
    db: &mut impl Database,
    vouchers: &[VoucherPart],
    runner: Runner,
    mut try_again: impl Retry,
) -> Result<Report, ExportError> {
    let consumer = consumer_name();
    let mut report = Report::default();
    for &voucher in vouchers {
        let result = export_voucher_into(
            redis,
            db,
            voucher,
            &consumer,
            runner,
            &mut try_again,
            &mut report.exported,
        )
        .await;
        match result {
            Ok(()) => {}
            Err(ExportError::Database(e)) if !e.is_transient() => report.failed.push((voucher, e)),
            Err(e) => return Err(e),
        }
    }
    Ok(report)
}

/// Every voucher there is, for a run that drains them all: ids are given
/// out in sequence from 1.
pub async fn all_vouchers(redis: &mut impl Redis) -> Result<Vec<VoucherId>, RedisError> {
    Ok((1..=last_voucher(redis).await?)
        .filter_map(VoucherId::new)
        .collect())
}

/// Every part of `vouchers` (one part each but for the split ones).
pub async fn parts_of(
    redis: &mut impl Redis,
    vouchers: &[VoucherId],
) -> Result<Vec<VoucherPart>, RedisError> {
    let split = split_vouchers(redis).await?;
    Ok(vouchers
        .iter()
        .flat_map(|v| VoucherPart::all(*v, split.count(v.get())))
        .collect())
}

/// The last voucher id given out, 0 before the first.
async fn last_voucher(redis: &mut impl Redis) -> Result<u64, RedisError> {
    let reply = redis
        .execute("GET", &[keys::VOUCHER_SEQUENCE.into()])
        .await?;
    match reply.as_slice() {
        [crate::redis::Reply::Nil] => Ok(0),
        _ => ReplyReader::named("GET of the voucher sequence", reply).id(),
    }
}

/// A fresh consumer name for one run of the exporter.
pub fn consumer_name() -> String {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the CSPRNG is available");
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("run-{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_string_gets_a_connect_timeout_in_its_own_form() {
        let cases = [
            (
                "postgres://shop:pw@db:5432/shop",
                "postgres://shop:pw@db:5432/shop?connect_timeout=5",
            ),
            (
                "postgresql://db/shop?sslmode=disable",
                "postgresql://db/shop?sslmode=disable&connect_timeout=5",
            ),
            (
                "host=db port=5432 user=shop dbname=shop ",
                "host=db port=5432 user=shop dbname=shop connect_timeout=5",
            ),
            (
                "postgres://db/shop?connect_timeout=30",
                "postgres://db/shop?connect_timeout=30",
            ),
            ("host=db connect_timeout=1", "host=db connect_timeout=1"),
        ];
        for (given, wanted) in cases {
            assert_eq!(connection_string(given), wanted);
        }
    }

    #[test]
    fn sessions_begin_with_both_timeouts() {
        let setup = session_setup();
        assert!(setup.contains("'statement_timeout', '10000'"), "{setup}");
        assert!(setup.contains("'lock_timeout', '5000'"), "{setup}");
    }
}
