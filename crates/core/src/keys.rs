//! Every Redis key the app uses, in one place.
//!
//! Keys that one script touches share a hash tag (the part in braces), so a
//! Redis Cluster can shard the data without breaking a script.
//!
//! The gate's keys (what a request passes through before its action: rate
//! limiters, sessions, users, login codes, the order index) live in the
//! gate's shards, each one tag (see `shard.rs`): `{gate}` while there is one
//! shard. A voucher's keys share `{v:<id>}`, a lottery goods' `{g:<id>}`,
//! the catalogue's `{catalog}`.

use crate::ids::{GoodsId, OrderId, ShopId, UserId};
use crate::part::VoucherPart;
use crate::shard::Shard;

/// Key name fragments that scripts join to numbers only they know (a
/// period number), and the channel they publish on. A script or library
/// that mentions one of these names gets it as a Lua constant (see
/// `build.rs`), so the names are still written only here.
pub const SCRIPT_CONSTANTS: &[(&str, &str)] = &[
    ("PERIOD_PURCHASES_SUFFIX", PERIOD_PURCHASES_SUFFIX),
    ("PERIOD_BUYERS_SUFFIX", PERIOD_BUYERS_SUFFIX),
    ("ORDER_EXPORT_CHANNEL", ORDER_EXPORT_CHANNEL),
];

/// A rate limiter: `<shard>:rl:<endpoint>:<subject>`, where subject is
/// `all`, `ip:<address>` or `u:<user id>`. The shard is the request's: its
/// session's, or its client's without one.
pub fn rate_limit(shard: Shard, endpoint: &str, subject: &str) -> String {
    format!("{}:rl:{endpoint}:{subject}", shard.tag())
}

/// A session, by the SHA-256 (hex) of its token, in its user's shard:
/// `<shard>:sess:<hash>`.
pub fn session(shard: Shard, token_hash: &str) -> String {
    format!("{}:sess:{token_hash}", shard.tag())
}

/// The current login code of a phone, in the phone's shard: hash {digest,
/// attempts} plus, for each client that gave a wrong code, a field named by
/// [`login_code_client_field`]. `attempts` counts wrong codes from everyone.
/// The counts live and die with the code.
pub fn login_code(shard: Shard, phone: &str) -> String {
    format!("{}:code:{phone}", shard.tag())
}

/// The field of a login code's hash counting one client's wrong codes:
/// `ip:<client>`, where client is the per-IP limiter's subject (the
/// address, or the /64 for IPv6) or `unknown` when there is none.
pub fn login_code_client_field(client: &str) -> String {
    format!("ip:{client}")
}

/// Present while a new code for the phone would be too early.
pub fn login_code_gap(shard: Shard, phone: &str) -> String {
    format!("{}:code-gap:{phone}", shard.tag())
}

/// Present after too many wrong codes, until a new code is requested.
pub fn login_lock(shard: Shard, phone: &str) -> String {
    format!("{}:code-locked:{phone}", shard.tag())
}

/// The user id of a phone, in the phone's shard.
pub fn user_id_by_phone(shard: Shard, phone: &str) -> String {
    format!("{}:uid:{phone}", shard.tag())
}

/// The last number handed out for new users of the shard: a new user's id
/// is that number times the shard count plus the shard's index, so it
/// names the shard (with one shard, the number is the id).
pub fn user_sequence(shard: Shard) -> String {
    format!("{}:user-seq", shard.tag())
}

/// A user, in shard `user id mod K`: hash {phone, nickname, created}.
pub fn user(shard: Shard, id: UserId) -> String {
    format!("{}{id}", user_prefix(shard))
}

/// What precedes a user id in [`user`]: scripts that read a user id (from a
/// session, from the phone index) are given it.
pub fn user_prefix(shard: Shard) -> String {
    format!("{}:user:", shard.tag())
}

/// What precedes the day number in a shard's order sequence
/// (`<shard>:order-seq:<days since the epoch>`), counted by the gate (see
/// `ids.rs`) and expiring two days after its day.
pub fn order_sequence_prefix(shard: Shard) -> String {
    format!("{}:order-seq:", shard.tag())
}

/// A user's voucher orders: sorted set, member = "<voucher id>:<order id>"
/// (a bare voucher id for orders placed before orders had ids of their own
/// in the list), score = the order's creation time (ms), so it lists newest
/// first. Written only after a purchase succeeded. (Earlier versions kept a
/// plain set `{gate}:user:<id>:vouchers`; nothing reads it any more.)
pub fn user_voucher_orders(shard: Shard, id: UserId) -> String {
    format!("{}{id}:voucher-orders", user_prefix(shard))
}

/// The lottery goods a user has bought shares of: sorted set, member and
/// score = goods id, so it lists the newest goods first and does not
/// reorder while someone pages through it. Written only after a purchase
/// succeeded (formerly a set `{gate}:user:<id>:lottery`).
pub fn user_lottery_goods(shard: Shard, id: UserId) -> String {
    format!("{}{id}:lottery-goods", user_prefix(shard))
}

/// The last voucher id handed out.
pub const VOUCHER_SEQUENCE: &str = "{catalog}:voucher-seq";

/// The vouchers whose stock is split (`part.rs`): hash voucher id -> parts,
/// written before the parts are, for what goes through every voucher's
/// parts (the exporter's drain, the parked events' pages).
pub const SPLIT_VOUCHERS: &str = "{catalog}:voucher-parts";

/// A shop's voucher ids (sorted set, score = id).
pub fn shop_vouchers(shop_id: ShopId) -> String {
    format!("{{catalog}}:shop:{shop_id}:vouchers")
}

/// A voucher, or a part of one (`part.rs`): hash {shop_id, title, ...,
/// stock, remaining, begin, end}, and for a split voucher `parts` (the
/// count) in every part; `stock` is the voucher's in part 0, the part's
/// share in the others, `remaining` always the part's own. Every key below
/// is per part.
pub fn voucher_info(part: impl Into<VoucherPart>) -> String {
    voucher_key(part.into(), "info")
}

/// A voucher's active orders by buyer: hash user id -> "<order id>:<created
/// ms>". A cancelled or expired order leaves it, so its buyer may buy again.
pub fn voucher_buyers(part: impl Into<VoucherPart>) -> String {
    voucher_key(part.into(), "buyers")
}

/// A voucher's unpaid orders: sorted set "<order id>:<user id>" scored by
/// pay deadline (ms).
pub fn voucher_unpaid(part: impl Into<VoucherPart>) -> String {
    voucher_key(part.into(), "unpaid")
}

/// What precedes an order id in [`voucher_order`].
pub fn voucher_order_prefix(part: impl Into<VoucherPart>) -> String {
    voucher_key(part.into(), "order:")
}

/// An order of a voucher: hash {user_id, status, amount, pay_type, created,
/// deadline, pay_time, use_time, refund_time, updated, version}, where
/// `version` counts its changes (1 when created). It lives in its voucher's
/// slot, so that the order and the stock change together.
pub fn voucher_order(part: impl Into<VoucherPart>, order: OrderId) -> String {
    format!("{}{order}", voucher_order_prefix(part))
}

/// A voucher's order outbox: a stream with one entry per change of one of
/// its orders, written by the script that makes the change, with the
/// order's whole state after it (docs/ORDERS.md, "The outbox"). Only while
/// orders are exported; nothing trims it but the exporter.
pub fn voucher_outbox(part: impl Into<VoucherPart>) -> String {
    voucher_key(part.into(), "outbox")
}

/// Present for a second after a script woke the exporter for the voucher's
/// outbox: while it is, further changes do not publish again. The exporter
/// deletes it when it wakes.
pub fn voucher_export_wake(part: impl Into<VoucherPart>) -> String {
    voucher_key(part.into(), "outbox:wake")
}

/// A voucher's parked order events: a stream of the outbox's events that
/// PostgreSQL refused for their data (a constraint, a trigger), each with
/// the error, taken out of the outbox so that the events after them are
/// exported, until the operator moves them back (docs/EXPORT.md).
pub fn voucher_outbox_parked(part: impl Into<VoucherPart>) -> String {
    voucher_key(part.into(), "outbox:parked")
}

/// The keys of one voucher part that the scripts selling, reading,
/// lending and changing its orders take, named from one tag: a split
/// part's tag is searched for, so it is found once per script, not once
/// per key.
pub struct VoucherKeys {
    pub info: String,
    pub buyers: String,
    pub unpaid: String,
    pub outbox: String,
    pub export_wake: String,
    pub lent: String,
    pub order_prefix: String,
    /// The part as a wake-up of the exporter names it.
    pub part_ref: String,
}

impl VoucherKeys {
    pub fn of(part: impl Into<VoucherPart>) -> Self {
        let part = part.into();
        let tag = part.tag();
        let key = |suffix: &str| format!("{tag}:{suffix}");
        Self {
            info: key("info"),
            buyers: key("buyers"),
            unpaid: key("unpaid"),
            outbox: key("outbox"),
            export_wake: key("outbox:wake"),
            lent: key("lent"),
            order_prefix: key("order:"),
            part_ref: part.reference(),
        }
    }
}

/// One of a voucher part's keys: its tag, then `suffix`. Not generic, so
/// that the formatting is compiled once for all the functions above.
fn voucher_key(part: VoucherPart, suffix: &str) -> String {
    let mut key = part.tag();
    key.push(':');
    key.push_str(suffix);
    key
}

/// The pub/sub channel on which a script that appended to an outbox wakes
/// the exporter; the message names the voucher's part (`VoucherPart::reference`:
/// the voucher id for a voucher not split).
pub const ORDER_EXPORT_CHANNEL: &str = "flashspin:order-export";

/// The outcome of payment webhook event `event_id` (a payment or a
/// refund, `kind`) about an order of the voucher, kept for a week so that a
/// repeat is answered alike.
pub fn voucher_payment_event(
    part: impl Into<VoucherPart>,
    order: OrderId,
    kind: &str,
    event_id: &str,
) -> String {
    voucher_key(part.into(), &format!("event:{order}:{kind}:{event_id}"))
}

/// The voucher's money events the shop must act on by hand (a late or a
/// second payment, one of another amount, a refund of a used order): a
/// stream, one entry per event, read by the operator
/// (`GET /api/admin/payments/attention`).
pub fn voucher_payment_attention(part: impl Into<VoucherPart>) -> String {
    voucher_key(part.into(), "payments:attention")
}

/// Units a part of a split voucher lent to another part and that the other
/// has not yet been seen to receive: hash transfer id -> "<to part>|<units>|<ms>"
/// (see `voucher::buy`).
pub fn voucher_lent(part: VoucherPart) -> String {
    voucher_key(part, "lent")
}

/// The transfers a part of a split voucher has received, by id: a set, so
/// that receiving again adds nothing.
pub fn voucher_received(part: VoucherPart) -> String {
    voucher_key(part, "received")
}

/// Which voucher (and part) an order belongs to and who bought it: "<part
/// reference>:<user id>" (the reference is the voucher id for a voucher not
/// split), in the order's shard (`Shards::of_order`). An order id does not
/// name its voucher, so routes that only have the id (the payment webhook,
/// cancel, redeem) look here first.
pub fn order_index(shard: Shard, order: OrderId) -> String {
    format!("{}:order:{order}", shard.tag())
}

/// The last lottery goods id handed out.
pub const GOODS_SEQUENCE: &str = "{catalog}:goods-seq";

/// Every lottery goods id (sorted set, score = id).
pub const GOODS_LIST: &str = "{catalog}:goods";

/// A lottery goods: hash {title, total, price, base, max_periods, period,
/// state, root}. Its other keys share its tag.
pub fn goods_info(id: GoodsId) -> String {
    format!("{{g:{id}}}:info")
}

/// What precedes a period number in [`goods_period`]: scripts that find
/// the period number in the goods' record are given this prefix.
pub fn goods_period_prefix(id: GoodsId) -> String {
    format!("{{g:{id}}}:p:")
}

/// Period `n` of a goods: hash {sold, perm, commitment, digest, opened,
/// status, and once drawn seed, winning_code, winner, ...}.
pub fn goods_period(id: GoodsId, n: u64) -> String {
    format!("{}{n}", goods_period_prefix(id))
}

/// A period's purchases: the period's key and this suffix.
pub const PERIOD_PURCHASES_SUFFIX: &str = ":purchases";
/// A period's set of buyers while it sells: the period's key and this suffix.
pub const PERIOD_BUYERS_SUFFIX: &str = ":users";

/// A period's purchases: sorted set of "<record>|<digest>|<user id>" scored
/// by the first share index, where record is the public
/// "pid|pseudonym|start|count|ms" hashed into the period's digest and digest
/// the chain's value after it. The user id is for the draw only: the public
/// list (`lottery_purchases.lua`) returns record and digest.
pub fn goods_period_purchases(id: GoodsId, n: u64) -> String {
    format!("{}{PERIOD_PURCHASES_SUFFIX}", goods_period(id, n))
}

/// A user's purchases of a goods: list of
/// "period|pid|start|count|ms|pseudonym".
pub fn goods_user_purchases(id: GoodsId, user_id: UserId) -> String {
    format!("{{g:{id}}}:u:{user_id}")
}

/// The stored answer to a purchase with an idempotency key (24 h).
pub fn goods_idempotency(id: GoodsId, user_id: UserId, key: &str) -> String {
    format!("{{g:{id}}}:idem:{user_id}:{key}")
}

/// The idempotency key slot a purchase without a key names: never written.
pub fn goods_no_idempotency(id: GoodsId) -> String {
    format!("{{g:{id}}}:idem:-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_shard_keeps_the_gate_tag() {
        let gate = crate::shard::Shards::ONE.shard(0);
        assert_eq!(rate_limit(gate, "catalog", "all"), "{gate}:rl:catalog:all");
        assert_eq!(user(gate, UserId::new(7).unwrap()), "{gate}:user:7");
        assert_eq!(user_sequence(gate), "{gate}:user-seq");
    }

    #[test]
    fn a_vouchers_keys_share_its_tag() {
        use crate::ids::VoucherId;
        assert_eq!(voucher_info(VoucherId::new(42).unwrap()), "{v:42}:info");
        assert_eq!(voucher_buyers(VoucherId::new(42).unwrap()), "{v:42}:buyers");
        assert_eq!(voucher_outbox(VoucherId::new(42).unwrap()), "{v:42}:outbox");
        assert_eq!(
            voucher_export_wake(VoucherId::new(42).unwrap()),
            "{v:42}:outbox:wake"
        );
        assert_eq!(
            voucher_outbox_parked(VoucherId::new(42).unwrap()),
            "{v:42}:outbox:parked"
        );
    }
}
