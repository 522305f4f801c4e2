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
use crate::redis::{Arg, Redis, RedisError, Reply};
use crate::script::ReplyReader;
use crate::scripts::{buy_voucher, voucher_read};
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

/// Creates a voucher: lists a new id under the shop, then writes the
/// voucher in one command. Returns the stored voucher.
pub async fn create(redis: &mut impl Redis, new: NewVoucher) -> Result<Voucher, ApiError> {
    let shop_key = keys::shop_vouchers(new.shop_id);
    let id = VoucherId::new(allocate_listed_id(redis, keys::VOUCHER_SEQUENCE, &shop_key).await?)
        .ok_or_else(|| ApiError::Internal("voucher sequence gave 0".into()))?;
    let info_key = keys::voucher_info(id);
    let numbers = [
        new.shop_id.get().to_string(),
        new.pay_value.to_string(),
        new.actual_value.to_string(),
        new.stock.to_string(),
        new.begin_ms.to_string(),
        new.end_ms.to_string(),
    ];
    let args: Vec<Arg<'_>> = vec![
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
        Arg::from(numbers[3].as_str()),
        Arg::from("begin"),
        Arg::from(numbers[4].as_str()),
        Arg::from("end"),
        Arg::from(numbers[5].as_str()),
    ];
    redis.execute("HSET", &args).await?;
    let remaining = new.stock;
    Ok(Voucher { id, new, remaining })
}

/// Reads one voucher; `None` when there is no such voucher. Units of
/// orders whose pay deadline has passed are put back on sale first, so
/// `remaining` counts them as soon as they are due; each order expired so
/// goes to the outbox when `export` is on.
pub async fn get(
    redis: &mut impl Redis,
    id: VoucherId,
    export: OrderExport,
) -> Result<Option<Voucher>, RedisError> {
    let info = keys::voucher_info(id);
    let buyers = keys::voucher_buyers(id);
    let unpaid = keys::voucher_unpaid(id);
    let outbox = keys::voucher_outbox(id);
    let export_wake = keys::voucher_export_wake(id);
    let order_prefix = keys::voucher_order_prefix(id);
    let v = voucher_read::run(
        redis,
        &voucher_read::Keys {
            info: &info,
            buyers: &buyers,
            unpaid: &unpaid,
            outbox: &outbox,
            export_wake: &export_wake,
        },
        &voucher_read::Args {
            order_prefix: &order_prefix,
            reclaim_limit: RECLAIM_LIMIT,
            voucher_id: id.get() as i64,
            export: export.is_on(),
        },
    )
    .await?;
    if v.outcome == voucher_read::Outcome::NotFound {
        return Ok(None);
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
        },
        remaining: v.remaining,
    }))
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
/// The order is then filed under its buyer (`order::record`, a second
/// round trip: another slot). Only a filed order is reported bought, since
/// an unfiled one cannot be read or paid by its id; when filing fails the
/// error is returned, and the buyer's retry, answered `AlreadyPurchased`,
/// files it.
pub async fn buy(
    redis: &mut impl Redis,
    voucher_id: VoucherId,
    user_id: UserId,
    order_id: OrderId,
    pay_secs: u32,
    export: OrderExport,
    shards: Shards,
) -> Result<Order, ApiError> {
    let info = keys::voucher_info(voucher_id);
    let buyers = keys::voucher_buyers(voucher_id);
    let unpaid = keys::voucher_unpaid(voucher_id);
    let outbox = keys::voucher_outbox(voucher_id);
    let export_wake = keys::voucher_export_wake(voucher_id);
    let order_prefix = keys::voucher_order_prefix(voucher_id);
    let reply = buy_voucher::run(
        redis,
        &buy_voucher::Keys {
            info: &info,
            buyers: &buyers,
            unpaid: &unpaid,
            outbox: &outbox,
            export_wake: &export_wake,
        },
        &buy_voucher::Args {
            user_id: user_id.get() as i64,
            order_id: order_id.raw() as i64,
            pay_ms: i64::from(pay_secs) * 1000,
            order_prefix: &order_prefix,
            reclaim_limit: RECLAIM_LIMIT,
            voucher_id: voucher_id.get() as i64,
            export: export.is_on(),
        },
    )
    .await?;
    use buy_voucher::Outcome;
    if matches!(reply.outcome, Outcome::Bought) {
        redis.confirm_durable().await?;
    }
    let mut rest = reply.order;
    let order = match reply.outcome {
        Outcome::Bought | Outcome::AlreadyBought => {
            Some(Order::read(&mut rest, voucher_id, i64::MIN)?)
        }
        _ => None,
    };
    rest.finish()?;
    match (reply.outcome, order) {
        (Outcome::Bought, Some(order)) => {
            crate::order::record(redis, shards, &order).await?;
            Ok(order)
        }
        // Filed again: if filing failed the first time (the buyer was told
        // 503), the retry mends it; filing is idempotent.
        (Outcome::AlreadyBought, Some(order)) => {
            crate::order::record(redis, shards, &order).await?;
            Err(ApiError::AlreadyPurchased(order.to_json()))
        }
        (Outcome::NotFound, _) => Err(ApiError::NotFound),
        (Outcome::NotStarted, _) => Err(ApiError::Conflict(Conflict::SaleNotStarted)),
        (Outcome::Ended, _) => Err(ApiError::Conflict(Conflict::SaleEnded)),
        (Outcome::SoldOut, _) => Err(ApiError::Conflict(Conflict::SoldOut)),
        (outcome, None) => Err(RedisError::UnexpectedReply(format!(
            "script buy_voucher: {outcome:?} without its order"
        ))
        .into()),
    }
}

/// Where a page of a user's orders ends: the last order's creation time
/// and its entry in the list, "<voucher id>:<order id>" (a bare voucher id
/// for an order filed before orders had ids in the list). Written
/// `<ms>.<voucher id>.<order id>` (or `<ms>.<voucher id>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrdersCursor {
    pub create_ms: u64,
    member: String,
}

impl OrdersCursor {
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        let n = crate::page::cursor_numbers(raw, &[2, 3])?;
        let member = match n[..] {
            [_, voucher, order] => format!("{voucher}:{order}"),
            _ => n[1].to_string(),
        };
        Ok(Self {
            create_ms: n[0],
            member,
        })
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
        let (voucher, order) = member.split_once(':').unwrap_or((member, ""));
        let Some(voucher_id) = VoucherId::parse(voucher) else {
            continue;
        };
        let order_id = match order.parse() {
            Ok(raw) => OrderId::from_raw(raw),
            Err(_) => match legacy_order_id(redis, voucher_id, user_id).await? {
                Some(id) => id,
                None => continue,
            },
        };
        if let Some(order) = read_order(redis, voucher_id, order_id, now_ms).await?
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
    voucher_id: VoucherId,
    order_id: OrderId,
    now_ms: i64,
) -> Result<Option<Order>, RedisError> {
    let key = keys::voucher_order(voucher_id, order_id);
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
    let order = Order::read(&mut reader, voucher_id, now_ms)?;
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
