//! Voucher orders after the purchase: paid, used or refunded, cancelled by
//! their buyer, or expired when the pay deadline passes, which puts the
//! unit back on sale (docs/ORDERS.md has the diagram).
//!
//! An order lives in its voucher's slot, beside the stock, so that every
//! change of the order and the stock is one script (`order_change.lua`,
//! with `orders.lua`). Its id does not name the voucher, so routes that
//! have only the id look the voucher up first in an index in the gate's
//! slot (`order_locate.lua`), which the purchase's last step writes
//! (`record_order.lua`).

use serde_json::{Value, json};

use crate::config::{Variables, missing};
use crate::error::{ApiError, Conflict};
use crate::ids::{OrderId, UserId, VoucherId};
use crate::keys;
use crate::part::VoucherPart;
use crate::redis::{Arg, Redis, RedisError};
use crate::script::ReplyReader;
use crate::scripts::{order_change, order_locate, record_order};
use crate::shard::Shards;
use crate::time::format_rfc3339;

/// The most expired orders one script puts back on sale: bounded work per
/// call, and enough that the stock comes back on the first read or sale
/// after the deadline even when a whole sale's worth of orders expires at
/// once (each read or sale reclaims this many more).
pub const RECLAIM_LIMIT: i64 = 64;

/// How long a webhook event's outcome is kept, so that a repeat is
/// answered alike: a week.
pub const EVENT_TTL_MS: i64 = 7 * 24 * 3600 * 1000;

/// Whether the scripts that create and change orders also append each
/// change to the voucher's outbox for the exporter to PostgreSQL (on), or
/// only count the order's `version` (off: orders stay in Redis only).
/// See docs/ORDERS.md, "The outbox". A component decides it from its
/// variable [`VARIABLE`](Self::VARIABLE), which `spin.toml` sets to the
/// PostgreSQL address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderExport {
    /// Every change of an order goes to its voucher's outbox, and wakes
    /// the exporter.
    On,
    /// No outbox is written and nothing is published.
    Off,
}

impl OrderExport {
    /// The component variable it is read from: `"{{ pg_address }}"`.
    pub const VARIABLE: &'static str = "order_export";

    /// On when the component's [`VARIABLE`](Self::VARIABLE) is set (a
    /// PostgreSQL URL), off when it is empty or blank. The value, a secret,
    /// is only tested for emptiness: neither kept nor logged. A component
    /// not given the variable gets an error naming it, never a default.
    pub fn from_vars(vars: &impl Variables) -> Result<Self, ApiError> {
        let value = vars
            .get(Self::VARIABLE)
            .map_err(|why| missing(Self::VARIABLE, &why))?;
        Ok(if value.trim().is_empty() {
            OrderExport::Off
        } else {
            OrderExport::On
        })
    }

    pub fn is_on(self) -> bool {
        self == OrderExport::On
    }
}

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderStatus {
    Unpaid,
    Paid,
    Used,
    Refunded,
    Cancelled,
    Expired,
}

impl OrderStatus {
    pub fn name(self) -> &'static str {
        match self {
            OrderStatus::Unpaid => "unpaid",
            OrderStatus::Paid => "paid",
            OrderStatus::Used => "used",
            OrderStatus::Refunded => "refunded",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            OrderStatus::Unpaid,
            OrderStatus::Paid,
            OrderStatus::Used,
            OrderStatus::Refunded,
            OrderStatus::Cancelled,
            OrderStatus::Expired,
        ]
        .into_iter()
        .find(|status| status.name() == s)
    }
}

/// How an order was paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayType {
    Alipay,
    Wechat,
    Card,
}

impl PayType {
    pub fn name(self) -> &'static str {
        match self {
            PayType::Alipay => "alipay",
            PayType::Wechat => "wechat",
            PayType::Card => "card",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [PayType::Alipay, PayType::Wechat, PayType::Card]
            .into_iter()
            .find(|t| t.name() == s)
    }
}

/// An order as stored. Times are ms since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub id: OrderId,
    pub voucher_id: VoucherId,
    /// The part of the voucher's stock it was bought from (`part.rs`).
    pub part: VoucherPart,
    pub user_id: UserId,
    pub status: OrderStatus,
    /// What the buyer pays, cents: the voucher's `pay_value` when bought.
    pub amount: i64,
    pub pay_type: Option<PayType>,
    pub create_ms: i64,
    /// `None` for orders placed before orders had a deadline.
    pub pay_deadline_ms: Option<i64>,
    pub pay_ms: Option<i64>,
    pub use_ms: Option<i64>,
    pub refund_ms: Option<i64>,
    pub update_ms: i64,
}

impl Order {
    /// Reads an order as `orders.lua` writes it into a reply: id, user id,
    /// status, amount, pay type, then created, deadline, pay, use, refund and
    /// update times ('' for none). An unpaid order past its deadline at
    /// `now_ms` reads expired, updated at its deadline.
    pub(crate) fn read(
        reader: &mut ReplyReader,
        part: VoucherPart,
        now_ms: i64,
    ) -> Result<Self, RedisError> {
        let voucher_id = part.voucher();
        let id = OrderId::from_raw(reader.id()?);
        let user_id = UserId::new(reader.id()?)
            .ok_or_else(|| RedisError::UnexpectedReply(format!("order {id}: no user")))?;
        let status = reader.string()?;
        let status = OrderStatus::parse(&status)
            .ok_or_else(|| RedisError::UnexpectedReply(format!("order {id}: status {status:?}")))?;
        let amount = reader.num()?;
        let pay_type = PayType::parse(&reader.string()?);
        let create_ms = reader.num()?;
        let mut time = || reader.num().map(|ms| (ms > 0).then_some(ms));
        let pay_deadline_ms = time()?;
        let pay_ms = time()?;
        let use_ms = time()?;
        let refund_ms = time()?;
        let mut update_ms = time()?.unwrap_or(create_ms);
        let expired = status == OrderStatus::Unpaid && pay_deadline_ms.is_some_and(|d| now_ms >= d);
        if expired {
            // It expired at its deadline, whether or not a script has
            // written that yet.
            update_ms = pay_deadline_ms.unwrap_or(update_ms);
        }
        Ok(Order {
            id,
            voucher_id,
            part,
            user_id,
            status: if expired {
                OrderStatus::Expired
            } else {
                status
            },
            amount,
            pay_type,
            create_ms,
            pay_deadline_ms,
            pay_ms,
            use_ms,
            refund_ms,
            update_ms,
        })
    }

    /// The order as the API shows it; times not reached are `null`.
    pub fn to_json(&self) -> Value {
        let time = |ms: Option<i64>| ms.map(format_rfc3339);
        json!({
            "id": self.id.to_string(),
            "voucher_id": self.voucher_id.to_string(),
            "user_id": self.user_id.to_string(),
            "status": self.status.name(),
            "amount": self.amount,
            "pay_type": self.pay_type.map(PayType::name),
            "pay_deadline": time(self.pay_deadline_ms),
            "pay_time": time(self.pay_ms),
            "use_time": time(self.use_ms),
            "refund_time": time(self.refund_ms),
            "create_time": format_rfc3339(self.create_ms),
            "update_time": format_rfc3339(self.update_ms),
        })
    }
}

/// A webhook event's id, as the payment provider names it: 1 to 64
/// visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventId(String);

impl EventId {
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        crate::body::visible_token(s, "event_id").map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What to do with an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Nothing: read it.
    Read,
    /// `unpaid` to `cancelled`, by its buyer; the unit goes back on sale.
    Cancel,
    /// `unpaid` to `paid`, for exactly the order's amount.
    Pay { amount: i64, pay_type: PayType },
    /// `paid` to `refunded`.
    Refund,
    /// `paid` to `used`: redeemed in the shop.
    Use,
}

impl Change {
    fn action(self) -> &'static str {
        match self {
            Change::Read => "read",
            Change::Cancel => "cancel",
            Change::Pay { .. } => "pay",
            Change::Refund => "refund",
            Change::Use => "use",
        }
    }
}

/// Where an order lives and whose it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Located {
    pub part: VoucherPart,
    pub user_id: UserId,
}

/// Finds order `id`'s voucher and buyer (`None`: no such order), with
/// Redis's clock in seconds.
pub async fn locate(
    redis: &mut impl Redis,
    shards: Shards,
    id: OrderId,
) -> Result<(Option<Located>, u64), RedisError> {
    let index = keys::order_index(shards.of_order(id), id);
    let reply = order_locate::run(
        redis,
        &order_locate::Keys { index: &index },
        &order_locate::Args::NONE,
    )
    .await?;
    let located = reply.entry.split_once(':').and_then(|(part, user)| {
        Some(Located {
            part: VoucherPart::parse_reference(part)?,
            user_id: UserId::parse(user)?,
        })
    });
    Ok((located, reply.unix_secs.max(0) as u64))
}

/// Applies `change` to order `id` of voucher `voucher_id`, for `owner`
/// when given (another user's order is not found). A change the order's
/// status does not allow is refused and changes nothing. With `export` on,
/// the change and any expiry it finds due go to the outbox. The payment
/// provider's events go through [`settle`] instead, which refuses nothing.
pub async fn change(
    redis: &mut impl Redis,
    part: impl Into<VoucherPart>,
    id: OrderId,
    change: Change,
    owner: Option<UserId>,
    export: OrderExport,
) -> Result<Order, ApiError> {
    use order_change::Outcome;
    let (outcome, _, order) =
        run_change(redis, part.into(), id, change, owner, None, export).await?;
    match outcome {
        Outcome::Done | Outcome::PaidAndRefunded => Ok(order),
        Outcome::AmountMismatch => Err(ApiError::Conflict(Conflict::AmountMismatch)),
        // Without an event, what the webhook would take note of is a
        // change from the wrong state.
        Outcome::InvalidState
        | Outcome::RefundPending
        | Outcome::RefundRecorded
        | Outcome::AlreadyRefunded
        | Outcome::LateRefunded
        | Outcome::LatePayment
        | Outcome::DuplicatePayment
        | Outcome::RefundAfterUse => Err(ApiError::Conflict(Conflict::InvalidState)),
        // `run_change` answers these itself.
        Outcome::NotFound => Err(ApiError::NotFound),
        Outcome::BadAction => Err(ApiError::Internal("script order_change: bad action".into())),
    }
}

/// What became of the money of a payment provider's event
/// (docs/ORDERS.md, "Events in any order"). Every one is handled: the
/// webhook answers 200 with its name, so that the provider stops retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// The payment paid the order.
    Paid,
    /// The refund refunded the paid order.
    Refunded,
    /// The payment came after its refund: the order went from unpaid to
    /// refunded, and the money in and out match.
    PaidAndRefunded,
    /// A refund before its payment, noted on the order; the payment, when
    /// it comes, refunds the order. The only outcome that is not final:
    /// a retry is looked at afresh.
    RefundPending,
    /// A refund of an order that expired or was cancelled unpaid: noted,
    /// so that its late payment is known to be returned already.
    RefundRecorded,
    /// A refund of an order that another refund event refunded.
    AlreadyRefunded,
    /// A payment after expiry or cancel whose refund came first.
    LateRefunded,
    /// A payment after the order expired or was cancelled: the shop must
    /// refund it.
    LatePayment,
    /// A payment of another amount than the order's: the shop must refund
    /// it (the order stays unpaid).
    AmountMismatch,
    /// A second payment of an order already paid: the shop must refund it.
    DuplicatePayment,
    /// Money returned for an order already redeemed in the shop.
    RefundAfterUse,
}

impl Settlement {
    pub fn name(self) -> &'static str {
        match self {
            Settlement::Paid => "paid",
            Settlement::Refunded => "refunded",
            Settlement::PaidAndRefunded => "paid_and_refunded",
            Settlement::RefundPending => "refund_pending",
            Settlement::RefundRecorded => "refund_recorded",
            Settlement::AlreadyRefunded => "already_refunded",
            Settlement::LateRefunded => "late_refunded",
            Settlement::LatePayment => "late_payment",
            Settlement::AmountMismatch => "amount_mismatch",
            Settlement::DuplicatePayment => "duplicate_payment",
            Settlement::RefundAfterUse => "refund_after_use",
        }
    }

    /// Whether the shop must act by hand: these are logged and listed for
    /// the operator once per event.
    pub fn needs_attention(self) -> bool {
        matches!(
            self,
            Settlement::LatePayment
                | Settlement::AmountMismatch
                | Settlement::DuplicatePayment
                | Settlement::RefundAfterUse
        )
    }
}

/// What the payment provider says happened to an order's money.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Money {
    /// `payment.succeeded`: this much was paid, this way.
    Paid { amount: i64, pay_type: PayType },
    /// `refund.succeeded`.
    Refunded,
}

/// What became of a payment provider's event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    /// The order as it now is.
    pub order: Order,
    pub settlement: Settlement,
    /// The answer to an event seen before: nothing was done now.
    pub replayed: bool,
}

/// Applies the payment provider's event `event` about order `id` of
/// voucher `voucher_id`. Its outcome is kept under the event's id once it
/// can no longer change, and a repeat then changes nothing and gets the
/// same answer; what the shop must act on is appended to the voucher's
/// attention stream in the same script. With `export` on, the change and
/// any expiry it finds due go to the outbox.
pub async fn settle(
    redis: &mut impl Redis,
    part: impl Into<VoucherPart>,
    id: OrderId,
    event: &EventId,
    money: Money,
    export: OrderExport,
) -> Result<Settled, ApiError> {
    use order_change::Outcome;
    let change = match money {
        Money::Paid { amount, pay_type } => Change::Pay { amount, pay_type },
        Money::Refunded => Change::Refund,
    };
    let (outcome, replayed, order) =
        run_change(redis, part.into(), id, change, None, Some(event), export).await?;
    let settlement = match (outcome, money) {
        (Outcome::Done, Money::Paid { .. }) => Settlement::Paid,
        (Outcome::Done, Money::Refunded) => Settlement::Refunded,
        (Outcome::PaidAndRefunded, _) => Settlement::PaidAndRefunded,
        (Outcome::RefundPending, _) => Settlement::RefundPending,
        (Outcome::RefundRecorded, _) => Settlement::RefundRecorded,
        (Outcome::AlreadyRefunded, _) => Settlement::AlreadyRefunded,
        (Outcome::LateRefunded, _) => Settlement::LateRefunded,
        (Outcome::LatePayment, _) => Settlement::LatePayment,
        (Outcome::AmountMismatch, _) => Settlement::AmountMismatch,
        (Outcome::DuplicatePayment, _) => Settlement::DuplicatePayment,
        (Outcome::RefundAfterUse, _) => Settlement::RefundAfterUse,
        (Outcome::InvalidState | Outcome::NotFound | Outcome::BadAction, _) => {
            return Err(ApiError::Internal(format!(
                "script order_change: {outcome:?} for a {} event",
                change.action()
            )));
        }
    };
    Ok(Settled {
        order,
        settlement,
        replayed,
    })
}

/// Runs `order_change.lua`: the outcome, whether it is a replayed event's,
/// and the order as it now is. No such order is `NotFound`; the other
/// outcomes are the caller's to read.
async fn run_change(
    redis: &mut impl Redis,
    part: VoucherPart,
    id: OrderId,
    change: Change,
    owner: Option<UserId>,
    event: Option<&EventId>,
    export: OrderExport,
) -> Result<(order_change::Outcome, bool, Order), ApiError> {
    let k = keys::VoucherKeys::of(part);
    let attention = keys::voucher_payment_attention(part);
    let event_key = keys::voucher_payment_event(
        part,
        id,
        change.action(),
        event.map_or("-", EventId::as_str),
    );
    let order_id = id.to_string();
    let owner = owner.map(|u| u.to_string()).unwrap_or_default();
    let (amount, pay_type) = match change {
        Change::Pay { amount, pay_type } => (amount, pay_type.name()),
        _ => (0, ""),
    };
    let reply = order_change::run(
        redis,
        &order_change::Keys {
            info: &k.info,
            buyers: &k.buyers,
            unpaid: &k.unpaid,
            event: &event_key,
            outbox: &k.outbox,
            export_wake: &k.export_wake,
            attention: &attention,
        },
        &order_change::Args {
            order_id: &order_id,
            action: change.action(),
            owner: &owner,
            amount,
            pay_type,
            event_id: event.map_or("", EventId::as_str),
            event_ttl_ms: EVENT_TTL_MS,
            order_prefix: &k.order_prefix,
            reclaim_limit: RECLAIM_LIMIT,
            part_ref: &k.part_ref,
            export: export.is_on(),
        },
    )
    .await?;
    use order_change::Outcome;
    let mut rest = reply.order;
    match reply.outcome {
        Outcome::NotFound => {
            rest.finish()?;
            return Err(ApiError::NotFound);
        }
        Outcome::BadAction => {
            rest.finish()?;
            return Err(ApiError::Internal(format!(
                "script order_change: unknown action {}",
                change.action()
            )));
        }
        _ => {}
    }
    // The script already reads a due order as expired.
    let order = Order::read(&mut rest, part, i64::MIN)?;
    rest.finish()?;
    // A change the caller is told of (a payment, a refund) survives a
    // failover; a replay changed nothing.
    if !reply.replayed {
        redis.confirm_durable().await?;
    }
    Ok((reply.outcome, reply.replayed, order))
}

/// Files a placed order under its buyer: in their list (newest first) and
/// in the index [`locate`] reads. A round trip after the purchase: these
/// live in the buyer's shard, the order in its voucher's slot. An order
/// placed before the shard count changed has its index entry in another
/// shard than its buyer: then two commands, each idempotent.
pub async fn record(
    redis: &mut impl Redis,
    shards: Shards,
    order: &Order,
) -> Result<(), RedisError> {
    let home = shards.of_user(order.user_id);
    let list = keys::user_voucher_orders(home, order.user_id);
    let index = keys::order_index(shards.of_order(order.id), order.id);
    let member = format!("{}:{}", order.part, order.id);
    let entry = format!("{}:{}", order.part, order.user_id);
    if shards.of_order(order.id) != home {
        crate::page::record(redis, &list, order.create_ms, &member).await?;
        redis
            .execute(
                "SET",
                &[Arg::from(index.as_str()), Arg::from(entry.as_str())],
            )
            .await?;
        return Ok(());
    }
    record_order::run(
        redis,
        &record_order::Keys {
            list: &list,
            index: &index,
        },
        &record_order::Args {
            created_ms: order.create_ms,
            member: &member,
            entry: &entry,
        },
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_pay_types_have_one_name_each() {
        for status in ["unpaid", "paid", "used", "refunded", "cancelled", "expired"] {
            assert_eq!(
                OrderStatus::parse(status).map(OrderStatus::name),
                Some(status)
            );
        }
        assert_eq!(OrderStatus::parse("Paid"), None);
        for pay_type in ["alipay", "wechat", "card"] {
            assert_eq!(PayType::parse(pay_type).map(PayType::name), Some(pay_type));
        }
        assert_eq!(PayType::parse("cash"), None);
    }

    #[test]
    fn export_is_on_when_the_address_is_set() {
        use std::collections::HashMap;
        let vars = |value| HashMap::from([(OrderExport::VARIABLE, value)]);
        assert_eq!(
            OrderExport::from_vars(&vars("postgres://u:secret@db:5432/shop")),
            Ok(OrderExport::On)
        );
        for off in ["", "  "] {
            assert_eq!(OrderExport::from_vars(&vars(off)), Ok(OrderExport::Off));
        }
        // Not given to the component: an error naming the variable.
        let err = OrderExport::from_vars(&HashMap::new()).unwrap_err();
        assert!(
            matches!(&err, ApiError::Internal(m) if m.contains("order_export")),
            "{err}"
        );
    }

    #[test]
    fn event_ids_are_short_visible_ascii() {
        assert!(EventId::parse("evt_1NwQ2xL").is_ok());
        for bad in ["", "evt 1", &"e".repeat(65), "évt"] {
            assert!(EventId::parse(bad).is_err(), "{bad:?}");
        }
    }
}
