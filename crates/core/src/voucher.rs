//! Flash-sale vouchers: creating them, reading them, and buying one.
//!
//! Each voucher's data lives under its own hash tag `{v:<id>}` (its record
//! with the remaining stock, and its buyers), so one script can buy
//! atomically and vouchers shard freely. The list of a shop's vouchers lives
//! under `{catalog}`.

use serde_json::{Value, json};

use crate::body::JsonObject;
use crate::catalog::allocate_listed_id;
use crate::error::{ApiError, Conflict};
use crate::ids::{OrderId, ShopId, UserId, VoucherId};
use crate::keys;
use crate::order::{Order, OrderExport, OrderStatus, RECLAIM_LIMIT};
use crate::part::{MAX_PARTS, VoucherPart};
use crate::redis::{Arg, Redis, RedisError, Reply};
use crate::script::ReplyReader;
use crate::scripts::{buy_voucher, lend, part_drained, receive, voucher_read};
use crate::shard::Shards;
use crate::time::{format_rfc3339, parse_rfc3339};

/// Largest money amount accepted, in cents (one billion yuan).
const MAX_MONEY: i64 = 100_000_000_000;
/// Largest stock accepted.
const MAX_STOCK: i64 = 10_000_000;
const MAX_TITLE: usize = 200;
const MAX_TEXT: usize = 4000;

/// A voucher to create, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewVoucher {
    pub shop_id: ShopId,
    pub title: String,
    pub sub_title: String,
    pub rules: String,
    pub pay_value: i64,
    pub actual_value: i64,
    pub stock: i64,
    pub begin_ms: i64,
    pub end_ms: i64,
    /// How many parts the stock is split into, each its own hash slot
    /// (`part.rs`): 1, the default, for all but the hottest vouchers.
    pub parts: u8,
}

impl NewVoucher {
    /// Parses and checks the admin's JSON body.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let mut b = JsonObject::parse(body)?;
        let shop_id = b.string("shop_id")?;
        let title = b.string("title")?;
        let sub_title = b.optional_string("sub_title")?.unwrap_or_default();
        let rules = b.optional_string("rules")?.unwrap_or_default();
        let pay_value = b.integer("pay_value")?;
        let actual_value = b.integer("actual_value")?;
        let stock = b.integer("stock")?;
        let begin_time = b.string("begin_time")?;
        let end_time = b.string("end_time")?;
        let parts = b.optional_integer("parts")?.unwrap_or(1);
        b.finish()?;

        let shop_id = ShopId::parse(&shop_id)
            .ok_or_else(|| ApiError::invalid("shop_id must be a decimal id"))?;
        let title = title.trim().to_string();
        if title.is_empty() || title.chars().count() > MAX_TITLE {
            return Err(ApiError::invalid(format!(
                "title must have 1 to {MAX_TITLE} characters"
            )));
        }
        for (name, text) in [("sub_title", &sub_title), ("rules", &rules)] {
            if text.chars().count() > MAX_TEXT {
                return Err(ApiError::invalid(format!(
                    "{name} must have at most {MAX_TEXT} characters"
                )));
            }
        }
        for (name, value) in [("pay_value", pay_value), ("actual_value", actual_value)] {
            if !(0..=MAX_MONEY).contains(&value) {
                return Err(ApiError::invalid(format!(
                    "{name} must be 0 to {MAX_MONEY} cents"
                )));
            }
        }
        if !(1..=MAX_STOCK).contains(&stock) {
            return Err(ApiError::invalid(format!("stock must be 1 to {MAX_STOCK}")));
        }
        if !(1..=i64::from(MAX_PARTS)).contains(&parts) || parts > stock {
            return Err(ApiError::invalid(format!(
                "parts must be 1 to {MAX_PARTS}, and at most the stock"
            )));
        }
        let begin_ms = parse_rfc3339(&begin_time)
            .ok_or_else(|| ApiError::invalid("begin_time must be an RFC 3339 time"))?;
        let end_ms = parse_rfc3339(&end_time)
            .ok_or_else(|| ApiError::invalid("end_time must be an RFC 3339 time"))?;
        if end_ms <= begin_ms {
            return Err(ApiError::invalid("end_time must be after begin_time"));
        }
        Ok(Self {
            shop_id,
            title,
            sub_title,
            rules,
            pay_value,
            actual_value,
            stock,
            begin_ms,
            end_ms,
            parts: parts as u8,
        })
    }
}

/// A stored voucher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voucher {
    pub id: VoucherId,
    pub new: NewVoucher,
    pub remaining: i64,
}

/// Where a sale stands at a given time.
pub fn status(v: &Voucher, now_ms: i64) -> &'static str {
    if now_ms >= v.new.end_ms {
        "ended"
    } else if now_ms < v.new.begin_ms {
        "upcoming"
    } else if v.remaining <= 0 {
        "sold_out"
    } else {
        "on_sale"
    }
}

impl Voucher {
    /// The voucher as the API shows it, with its status at `now_ms`.
    pub fn to_json(&self, now_ms: i64) -> Value {
        let n = &self.new;
        json!({
            "id": self.id.to_string(),
            "shop_id": n.shop_id.to_string(),
            "title": n.title,
            "sub_title": n.sub_title,
            "rules": n.rules,
            "pay_value": n.pay_value,
            "actual_value": n.actual_value,
            "stock": n.stock,
            "remaining": self.remaining.max(0),
            "begin_time": format_rfc3339(n.begin_ms),
            "end_time": format_rfc3339(n.end_ms),
            "status": status(self, now_ms),
        })
    }
}

/// Creates a voucher: lists a new id under the shop, then writes each part
/// of its stock (one command each), part 0 last: a voucher exists once its
/// part 0 does. The stock is shared out evenly, the first parts taking one
/// more when it does not divide. Returns the stored voucher.
pub async fn create(redis: &mut impl Redis, new: NewVoucher) -> Result<Voucher, ApiError> {
    let shop_key = keys::shop_vouchers(new.shop_id);
    let id = VoucherId::new(allocate_listed_id(redis, keys::VOUCHER_SEQUENCE, &shop_key).await?)
        .ok_or_else(|| ApiError::Internal("voucher sequence gave 0".into()))?;
    let count = new.parts.clamp(1, MAX_PARTS);
    if count > 1 {
        let (id_text, count_text) = (id.to_string(), count.to_string());
        redis
            .execute(
                "HSET",
                &[
                    Arg::from(keys::SPLIT_VOUCHERS),
                    Arg::from(id_text.as_str()),
                    Arg::from(count_text.as_str()),
                ],
            )
            .await?;
    }
    let parts: Vec<VoucherPart> = VoucherPart::all(id, count).collect();
    for part in parts.iter().rev() {
        let share = new.stock / i64::from(count)
            + i64::from(i64::from(part.index()) < new.stock % i64::from(count));
        let info_key = keys::voucher_info(*part);
        let numbers = [
            new.shop_id.get().to_string(),
            new.pay_value.to_string(),
            new.actual_value.to_string(),
            new.stock.to_string(),
            share.to_string(),
            new.begin_ms.to_string(),
            new.end_ms.to_string(),
            count.to_string(),
        ];
        let mut args: Vec<Arg<'_>> = vec![
            Arg::from(info_key.as_str()),
            Arg::from("shop_id"),
            Arg::from(numbers[0].as_str()),
            Arg::from("title"),
            Arg::from(new.title.as_str()),
            Arg::from("sub_title"),
            Arg::from(new.sub_title.as_str()),
            Arg::from("rules"),
            Arg::from(new.rules.as_str()),
            Arg::from("pay_value"),
            Arg::from(numbers[1].as_str()),
            Arg::from("actual_value"),
            Arg::from(numbers[2].as_str()),
            Arg::from("stock"),
            Arg::from(numbers[3].as_str()),
            Arg::from("remaining"),
            Arg::from(numbers[4].as_str()),
            Arg::from("begin"),
            Arg::from(numbers[5].as_str()),
            Arg::from("end"),
            Arg::from(numbers[6].as_str()),
        ];
        // An unsplit voucher's record is as it always was.
        if count > 1 {
            args.extend([Arg::from("parts"), Arg::from(numbers[7].as_str())]);
        }
        redis.execute("HSET", &args).await?;
    }
    let remaining = new.stock;
    Ok(Voucher { id, new, remaining })
}

/// Reads one voucher; `None` when there is no such voucher. Units of
/// orders whose pay deadline has passed are put back on sale first, so
/// `remaining` counts them as soon as they are due; each order expired so
/// goes to the outbox when `export` is on. A split voucher's `remaining`
/// is the sum over its parts, units in transfer between them included: one
/// round trip per part.
pub async fn get(
    redis: &mut impl Redis,
    id: VoucherId,
    export: OrderExport,
) -> Result<Option<Voucher>, RedisError> {
    let Some(v) = read_part(redis, id.into(), export).await? else {
        return Ok(None);
    };
    let count = u8::try_from(v.parts).unwrap_or(1).clamp(1, MAX_PARTS);
    let mut remaining = v.remaining + v.lent;
    for part in VoucherPart::all(id, count).skip(1) {
        if let Some(other) = read_part(redis, part, export).await? {
            remaining += other.remaining + other.lent;
        }
    }
    let shop_id = ShopId::new(v.shop_id)
        .ok_or_else(|| RedisError::UnexpectedReply(format!("voucher {id}: no shop")))?;
    Ok(Some(Voucher {
        id,
        new: NewVoucher {
            shop_id,
            title: v.title,
            sub_title: v.sub_title,
            rules: v.rules,
            pay_value: v.pay_value,
            actual_value: v.actual_value,
            stock: v.stock,
            begin_ms: v.begin,
            end_ms: v.end,
            parts: count,
        },
        remaining,
    }))
}

/// Reads one part of a voucher (`voucher_read.lua`); `None` when it has no
/// record.
async fn read_part(
    redis: &mut impl Redis,
    part: VoucherPart,
    export: OrderExport,
) -> Result<Option<voucher_read::Reply>, RedisError> {
    let k = keys::VoucherKeys::of(part);
    let v = voucher_read::run(
        redis,
        &voucher_read::Keys {
            info: &k.info,
            buyers: &k.buyers,
            unpaid: &k.unpaid,
            outbox: &k.outbox,
            export_wake: &k.export_wake,
            lent: &k.lent,
        },
        &voucher_read::Args {
            order_prefix: &k.order_prefix,
            reclaim_limit: RECLAIM_LIMIT,
            part_ref: &k.part_ref,
            export: export.is_on(),
        },
    )
    .await?;
    Ok((v.outcome == voucher_read::Outcome::Found).then_some(v))
}

/// A shop's vouchers, newest first (at most `limit`), each read as [`get`]
/// reads it.
pub async fn list_by_shop(
    redis: &mut impl Redis,
    shop_id: ShopId,
    limit: usize,
    export: OrderExport,
) -> Result<Vec<Voucher>, RedisError> {
    let key = keys::shop_vouchers(shop_id);
    let ids = redis
        .execute(
            "ZRANGE",
            &[
                Arg::from(key.as_str()),
                Arg::Int(0),
                Arg::Int(limit as i64 - 1),
                Arg::from("REV"),
            ],
        )
        .await?;
    let mut vouchers = Vec::with_capacity(ids.len());
    for id in ids {
        let Reply::Bytes(b) = id else {
            return Err(RedisError::UnexpectedReply(format!("voucher list: {id:?}")));
        };
        let Some(id) = std::str::from_utf8(&b).ok().and_then(VoucherId::parse) else {
            continue;
        };
        // An id listed without a voucher is a creation that did not finish.
        if let Some(v) = get(redis, id, export).await? {
            vouchers.push(v);
        }
    }
    Ok(vouchers)
}

/// Buys voucher `voucher_id` for `user_id` as order `order_id`, unpaid
/// until `pay_secs` from now. Due orders of the voucher are expired first,
/// in the same script, so their units can be bought again at once. With
/// `export` on, the new order and each one expired go to the outbox.
///
/// A split voucher is bought in the buyer's home part (`part.rs`).
/// `parts` is what the caller knows of the voucher's parts (1 when it
/// knows nothing); a wrong guess costs a round trip, and `parts` is then
/// set to the count, for the caller to remember: it never changes. A home
/// part that ran out borrows from the others ([`borrow`]) and sells again.
///
/// The order is then filed under its buyer (`order::record`, a second
/// round trip: another slot). Only a filed order is reported bought, since
/// an unfiled one cannot be read or paid by its id; when filing fails the
/// error is returned, and the buyer's retry, answered `AlreadyPurchased`,
/// files it.
#[allow(clippy::too_many_arguments)]
pub async fn buy(
    redis: &mut impl Redis,
    voucher_id: VoucherId,
    user_id: UserId,
    order_id: OrderId,
    pay_secs: u32,
    export: OrderExport,
    shards: Shards,
    parts: &mut u8,
) -> Result<Order, ApiError> {
    use buy_voucher::Outcome;
    let mut borrowed = false;
    // A guess, a correction, a borrowing: never more than this.
    for _ in 0..4 {
        let count = (*parts).clamp(1, MAX_PARTS);
        let home = VoucherPart::home(voucher_id, count, user_id);
        let (outcome, detail, order) =
            buy_in(redis, home, user_id, order_id, pay_secs, export).await?;
        match (outcome, order) {
            (Outcome::WrongParts, _) => {
                *parts = u8::try_from(detail)
                    .ok()
                    .filter(|n| (1..=MAX_PARTS).contains(n) && *n != count)
                    .ok_or_else(|| {
                        RedisError::UnexpectedReply(format!(
                            "voucher {voucher_id}: has {detail} parts"
                        ))
                    })?;
            }
            // A stale guess named a part that does not exist: ask part 0.
            (Outcome::NotFound, _) if count > 1 => *parts = 1,
            (Outcome::SoldOut, _) if detail == 1 && !borrowed => {
                if !borrow(redis, home, order_id, export).await? {
                    return Err(ApiError::Conflict(Conflict::SoldOut));
                }
                borrowed = true;
            }
            (Outcome::Bought, Some(order)) => {
                redis.confirm_durable().await?;
                crate::order::record(redis, shards, &order).await?;
                return Ok(order);
            }
            // Filed again: if filing failed the first time (the buyer was
            // told 503), the retry mends it; filing is idempotent.
            (Outcome::AlreadyBought, Some(order)) => {
                crate::order::record(redis, shards, &order).await?;
                return Err(ApiError::AlreadyPurchased(order.to_json()));
            }
            (Outcome::NotFound, _) => return Err(ApiError::NotFound),
            (Outcome::NotStarted, _) => return Err(ApiError::Conflict(Conflict::SaleNotStarted)),
            (Outcome::Ended, _) => return Err(ApiError::Conflict(Conflict::SaleEnded)),
            (Outcome::SoldOut, _) => return Err(ApiError::Conflict(Conflict::SoldOut)),
            (outcome, None) => {
                return Err(RedisError::UnexpectedReply(format!(
                    "script buy_voucher: {outcome:?} without its order"
                ))
                .into());
            }
        }
    }
    Err(
        RedisError::UnexpectedReply(format!("voucher {voucher_id}: its parts kept changing"))
            .into(),
    )
}

/// One try of `buy_voucher.lua` in `part`: its outcome, its detail and the
/// order it answered with.
async fn buy_in(
    redis: &mut impl Redis,
    part: VoucherPart,
    user_id: UserId,
    order_id: OrderId,
    pay_secs: u32,
    export: OrderExport,
) -> Result<(buy_voucher::Outcome, i64, Option<Order>), ApiError> {
    use buy_voucher::Outcome;
    let k = keys::VoucherKeys::of(part);
    let count = part.count().to_string();
    let reply = buy_voucher::run(
        redis,
        &buy_voucher::Keys {
            info: &k.info,
            buyers: &k.buyers,
            unpaid: &k.unpaid,
            outbox: &k.outbox,
            export_wake: &k.export_wake,
        },
        &buy_voucher::Args {
            user_id: user_id.get() as i64,
            order_id: order_id.raw() as i64,
            pay_ms: i64::from(pay_secs) * 1000,
            order_prefix: &k.order_prefix,
            reclaim_limit: RECLAIM_LIMIT,
            part_ref: &k.part_ref,
            export: export.is_on(),
            parts: &count,
        },
    )
    .await?;
    let mut rest = reply.order;
    let order = match reply.outcome {
        Outcome::Bought | Outcome::AlreadyBought => Some(Order::read(&mut rest, part, i64::MIN)?),
        _ => None,
    };
    rest.finish()?;
    Ok((reply.outcome, reply.detail, order))
}

/// How long a part that found every other part empty refuses without
/// searching again (`part_drained.lua`): the longest a buyer can be told
/// "sold out" while a unit that came back is waiting in another part.
pub const DRAINED_MS: i64 = 1_000;

/// How old a noted transfer must be before a borrower completes it for
/// the part that lent it: far longer than a transfer takes.
const STALE_TRANSFER_MS: i64 = 5_000;

/// Borrows units for `home`, which ran out, from the other parts in turn:
/// the first that has any lends half of them (`lend.lua`), `home` receives
/// them (`receive.lua`), and the lender's note is cleared. Each step is
/// made durable before the next (`Redis::confirm_durable`), and each can
/// be repeated: a crash between them leaves the units noted at the lender,
/// where the next borrower from it finds the note stale and completes it.
/// So units move, they are never made or lost. `false` when every other
/// part was empty: `home` then refuses for [`DRAINED_MS`] without asking.
pub async fn borrow(
    redis: &mut impl Redis,
    home: VoucherPart,
    order_id: OrderId,
    export: OrderExport,
) -> Result<bool, ApiError> {
    // A second pass only when the first completed stale transfers, whose
    // units are now in a part already passed.
    let mut completed = false;
    for _pass in 0..2 {
        for lender in home.others() {
            // Unique to this try: a replay of the same lend finds its note.
            let mut nonce = [0u8; 4];
            getrandom::fill(&mut nonce).expect("the CSPRNG is available");
            let transfer = format!(
                "{order_id}.{}.{}",
                lender.index(),
                u32::from_le_bytes(nonce)
            );
            let (units, stale) = lend(redis, lender, home, &transfer, export).await?;
            for (id, to, units) in stale {
                complete(redis, lender, to, &id, units).await?;
                completed = true;
            }
            if units > 0 {
                complete(redis, lender, home, &transfer, units).await?;
                return Ok(true);
            }
        }
        if !std::mem::take(&mut completed) {
            break;
        }
    }
    let info = keys::voucher_info(home);
    part_drained::run(
        redis,
        &part_drained::Keys { info: &info },
        &part_drained::Args { for_ms: DRAINED_MS },
    )
    .await?;
    Ok(false)
}

/// A stale transfer a lender answered: its id, receiving part and units.
type Transfer = (String, VoucherPart, i64);

async fn lend(
    redis: &mut impl Redis,
    lender: VoucherPart,
    to: VoucherPart,
    transfer: &str,
    export: OrderExport,
) -> Result<(i64, Vec<Transfer>), ApiError> {
    let k = keys::VoucherKeys::of(lender);
    let to = to.reference();
    let reply = lend::run(
        redis,
        &lend::Keys {
            info: &k.info,
            buyers: &k.buyers,
            unpaid: &k.unpaid,
            outbox: &k.outbox,
            export_wake: &k.export_wake,
            lent: &k.lent,
        },
        &lend::Args {
            order_prefix: &k.order_prefix,
            reclaim_limit: RECLAIM_LIMIT,
            part_ref: &k.part_ref,
            export: export.is_on(),
            transfer_id: transfer,
            to: &to,
            stale_ms: STALE_TRANSFER_MS,
        },
    )
    .await?;
    let mut stale = Vec::new();
    let mut rest = reply.stale;
    while !rest.at_end() {
        let id = rest.string()?;
        let to = rest.string()?;
        let units = rest.int()?;
        let to = VoucherPart::parse_reference(&to)
            .ok_or_else(|| RedisError::UnexpectedReply(format!("lent to {to:?}")))?;
        stale.push((id, to, units));
    }
    Ok((reply.units, stale))
}

/// Completes transfer `id` of `units` from `lender` to `to`: durable at
/// the lender, received (once) by `to`, durable there, then the lender's
/// note cleared.
async fn complete(
    redis: &mut impl Redis,
    lender: VoucherPart,
    to: VoucherPart,
    id: &str,
    units: i64,
) -> Result<(), ApiError> {
    redis.confirm_durable().await?;
    let info = keys::voucher_info(to);
    let received = keys::voucher_received(to);
    receive::run(
        redis,
        &receive::Keys {
            info: &info,
            received: &received,
        },
        &receive::Args {
            transfer_id: id,
            units,
        },
    )
    .await?;
    redis.confirm_durable().await?;
    let lent = keys::voucher_lent(lender);
    redis
        .execute("HDEL", &[Arg::from(lent.as_str()), Arg::from(id)])
        .await?;
    Ok(())
}

/// Where a page of a user's orders ends: the last order's creation time
/// and its entry in the list, "<part>:<order id>", where part is the
/// voucher id or for a split voucher its part (`VoucherPart::reference`),
/// or a bare voucher id for an order filed before orders had ids in the
/// list. Written `<ms>.<part>.<order id>` (or `<ms>.<voucher id>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrdersCursor {
    pub create_ms: u64,
    member: String,
}

impl OrdersCursor {
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        let invalid = || ApiError::invalid("cursor is not one this API handed out");
        let fields: Vec<&str> = raw.split('.').collect();
        let (ms, part, order) = match fields[..] {
            [ms, part] => (ms, part, None),
            [ms, part, order] => (ms, part, Some(order)),
            _ => return Err(invalid()),
        };
        let create_ms = crate::ids::digits(ms).ok_or_else(invalid)?;
        let part = VoucherPart::parse_reference(part).ok_or_else(invalid)?;
        let member = match order {
            Some(order) => {
                let order = crate::ids::digits(order).ok_or_else(invalid)?;
                format!("{part}:{order}")
            }
            None if part.count() == 1 => part.to_string(),
            None => return Err(invalid()),
        };
        Ok(Self { create_ms, member })
    }
}

impl std::fmt::Display for OrdersCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.create_ms, self.member.replace(':', "."))
    }
}

/// Orders created in the same millisecond that a page may have to skip
/// past; more than this many ties could repeat an order on the next page.
const TIES: usize = 32;

/// The fields of an order's record, in the order [`Order::read`] takes
/// them after the id.
const ORDER_FIELDS: [&str; 10] = [
    "user_id",
    "status",
    "amount",
    "pay_type",
    "created",
    "deadline",
    "pay_time",
    "use_time",
    "refund_time",
    "updated",
];

/// One page of the user's orders, newest first, after `after`: at most
/// `limit` orders of the list, of which those with `status` when given
/// (so a filtered page may be short, even empty, and still have a next
/// one). One round trip for the list and one per order; `now_ms` is
/// Redis's clock, by which an unpaid order past its deadline reads expired.
pub async fn orders_page(
    redis: &mut impl Redis,
    shards: Shards,
    user_id: UserId,
    status: Option<OrderStatus>,
    after: Option<&OrdersCursor>,
    limit: usize,
    now_ms: i64,
) -> Result<(Vec<Order>, Option<OrdersCursor>), RedisError> {
    let key = keys::user_voucher_orders(shards.of_user(user_id), user_id);
    let fetch = limit + 1 + if after.is_some() { TIES } else { 0 };
    let max = after.map(|c| c.create_ms);
    let reply = crate::page::newest_first(redis, &key, max, fetch, true).await?;
    let mut entries = Vec::new();
    for pair in reply.chunks(2) {
        let [Reply::Bytes(member), Reply::Bytes(score)] = pair else {
            return Err(RedisError::UnexpectedReply(format!(
                "ZRANGE of {key}: {pair:?}"
            )));
        };
        let member = String::from_utf8_lossy(member).into_owned();
        let score: u64 = String::from_utf8_lossy(score).parse().unwrap_or(0);
        // Equal scores come in reverse order of their members' bytes.
        let already_seen =
            after.is_some_and(|c| score == c.create_ms && member.as_str() >= c.member.as_str());
        if !already_seen {
            entries.push((score, member));
        }
    }
    let more = entries.len() > limit;
    entries.truncate(limit);
    let next = match (more, entries.last()) {
        (true, Some((ms, member))) => Some(OrdersCursor {
            create_ms: *ms,
            member: member.clone(),
        }),
        _ => None,
    };
    let mut orders = Vec::with_capacity(entries.len());
    for (_, member) in &entries {
        let (part, order) = member.split_once(':').unwrap_or((member, ""));
        let Some(part) = VoucherPart::parse_reference(part) else {
            continue;
        };
        let order_id = match order.parse() {
            Ok(raw) => OrderId::from_raw(raw),
            Err(_) => match legacy_order_id(redis, part.voucher(), user_id).await? {
                Some(id) => id,
                None => continue,
            },
        };
        if let Some(order) = read_order(redis, part, order_id, now_ms).await?
            && status.is_none_or(|s| s == order.status)
        {
            orders.push(order);
        }
    }
    Ok((orders, next))
}

/// The order a user holds for a voucher, from its buyers: for list entries
/// filed before they named their order.
async fn legacy_order_id(
    redis: &mut impl Redis,
    voucher_id: VoucherId,
    user_id: UserId,
) -> Result<Option<OrderId>, RedisError> {
    let buyers = keys::voucher_buyers(voucher_id);
    let uid = user_id.to_string();
    let reply = redis
        .execute(
            "HGET",
            &[Arg::from(buyers.as_str()), Arg::from(uid.as_str())],
        )
        .await?;
    Ok(match reply.first() {
        Some(Reply::Bytes(record)) => String::from_utf8_lossy(record)
            .split(':')
            .next()
            .and_then(|oid| oid.parse().ok())
            .map(OrderId::from_raw),
        _ => None,
    })
}

/// Reads one order's record with a plain `HMGET`; `None` when it has none.
async fn read_order(
    redis: &mut impl Redis,
    part: VoucherPart,
    order_id: OrderId,
    now_ms: i64,
) -> Result<Option<Order>, RedisError> {
    let key = keys::voucher_order(part, order_id);
    let mut args = vec![Arg::from(key.as_str())];
    args.extend(ORDER_FIELDS.iter().map(|f| Arg::from(*f)));
    let fields = redis.execute_replayable("HMGET", &args).await?;
    if fields.first().is_none_or(|f| *f == Reply::Nil) {
        return Ok(None);
    }
    let mut items = vec![Reply::Bytes(order_id.to_string().into_bytes())];
    items.extend(fields.into_iter().map(|f| match f {
        Reply::Nil => Reply::Bytes(Vec::new()),
        other => other,
    }));
    let mut reader = ReplyReader::named("HMGET of an order", items);
    let order = Order::read(&mut reader, part, now_ms)?;
    reader.finish()?;
    Ok(Some(order))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(overrides: &[(&str, Value)]) -> Vec<u8> {
        let mut b = json!({
            "shop_id": "1", "title": "Ten off", "sub_title": "s", "rules": "r",
            "pay_value": 8000, "actual_value": 10000, "stock": 100,
            "begin_time": "2026-11-22T10:00:00Z", "end_time": "2026-11-22T12:00:00Z",
        });
        for (k, v) in overrides {
            b[*k] = v.clone();
        }
        serde_json::to_vec(&b).unwrap()
    }

    #[test]
    fn a_good_voucher_parses() {
        let v = NewVoucher::parse(&body(&[])).unwrap();
        assert_eq!((v.shop_id.get(), v.stock, v.pay_value), (1, 100, 8000));
        assert_eq!(v.end_ms - v.begin_ms, 2 * 3600 * 1000);
    }

    #[test]
    fn bad_vouchers_name_the_field() {
        for (field, value, mentions) in [
            ("stock", json!(0), "stock"),
            ("stock", json!(-5), "stock"),
            ("stock", json!(1.5), "stock"),
            ("pay_value", json!(-1), "pay_value"),
            ("actual_value", json!("10"), "actual_value"),
            ("shop_id", json!("abc"), "shop_id"),
            ("shop_id", json!(1), "shop_id"),
            ("title", json!(""), "title"),
            ("begin_time", json!("tomorrow"), "begin_time"),
            ("end_time", json!("2026-11-22T10:00:00Z"), "end_time"),
            ("surprise", json!(1), "surprise"),
        ] {
            let err = NewVoucher::parse(&body(&[(field, value.clone())])).unwrap_err();
            let ApiError::InvalidRequest(message) = &err else {
                panic!("{field}={value}: {err:?}");
            };
            assert!(message.contains(mentions), "{field}={value}: {message}");
        }
    }

    #[test]
    fn status_follows_time_and_stock() {
        let mut v = Voucher {
            id: VoucherId::new(1).unwrap(),
            new: NewVoucher::parse(&body(&[])).unwrap(),
            remaining: 5,
        };
        let begin = v.new.begin_ms;
        assert_eq!(status(&v, begin - 1), "upcoming");
        assert_eq!(status(&v, begin), "on_sale");
        v.remaining = 0;
        assert_eq!(status(&v, begin), "sold_out");
        assert_eq!(status(&v, v.new.end_ms), "ended");
    }
}
