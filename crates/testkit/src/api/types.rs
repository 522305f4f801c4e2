//! The API's JSON bodies as Rust types: what the routes take and what they
//! answer, field for field as the components write them (the `to_json`
//! functions of `flashspin-core` and `flashspin-spin`'s `http`), and the one
//! error body, [`ApiError`].
//!
//! Answers come in the envelope the API puts them in (`{"voucher": ...}`
//! is a [`VoucherBody`]), so a type is exactly one JSON object. The types
//! the tests compare whole deny unknown fields: comparing two of them is
//! then comparing the whole objects, as comparing the JSON did.

use serde::{Deserialize, Deserializer, Serialize};

/// `GET /api/health`, both when healthy (200) and degraded (503).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    pub status: String,
    pub redis: String,
}

/// `POST /api/auth/code` (202). The code itself never comes back.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeSent {
    pub expires_in: u64,
    pub resend_after: u64,
}

/// A user as answers show one: the id as a string, the phone masked.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub id: String,
    pub phone: String,
    pub nickname: String,
}

/// `POST /api/auth/login` (200): a new session.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Session {
    pub token: String,
    pub expires_in: u64,
    pub user: User,
}

/// `GET /api/me`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Me {
    pub user: User,
}

/// `POST /api/auth/refresh`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Refreshed {
    pub expires_in: u64,
    pub user: User,
}

/// The body of `POST /api/admin/vouchers`. Ids are strings and times
/// RFC 3339, as the API takes them; `sub_title` and `rules` may be left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewVoucher {
    pub shop_id: String,
    pub title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub_title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules: Option<String>,
    pub pay_value: i64,
    pub actual_value: i64,
    pub stock: i64,
    pub begin_time: String,
    pub end_time: String,
    /// How many parts the stock is split into; left out: 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parts: Option<u8>,
}

/// A voucher, as the admin route and the catalogue show it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Voucher {
    pub id: String,
    pub shop_id: String,
    pub title: String,
    pub sub_title: String,
    pub rules: String,
    pub pay_value: i64,
    pub actual_value: i64,
    pub stock: i64,
    pub remaining: i64,
    pub begin_time: String,
    pub end_time: String,
    pub status: VoucherStatus,
}

/// Where a voucher's sale stands at the time of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VoucherStatus {
    Upcoming,
    OnSale,
    SoldOut,
    Ended,
}

/// `{"voucher": ...}`: `POST /api/admin/vouchers` (201) and
/// `GET /api/vouchers/:id`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoucherBody {
    pub voucher: Voucher,
}

/// `GET /api/vouchers?shop_id=`: a shop's vouchers, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoucherList {
    pub vouchers: Vec<Voucher>,
}

/// A voucher order. Times are RFC 3339; those not reached are `None`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Order {
    pub id: String,
    pub voucher_id: String,
    pub user_id: String,
    pub status: OrderStatus,
    /// Cents: the voucher's `pay_value` when bought.
    pub amount: i64,
    pub pay_type: Option<PayType>,
    pub pay_deadline: Option<String>,
    pub pay_time: Option<String>,
    pub use_time: Option<String>,
    pub refund_time: Option<String>,
    pub create_time: String,
    pub update_time: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Unpaid,
    Paid,
    Used,
    Refunded,
    Cancelled,
    Expired,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PayType {
    Alipay,
    Wechat,
    Card,
}

/// `POST /api/vouchers/:id/orders` (201).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct OrderBody {
    pub order: Order,
}

/// `POST /api/payments/webhook` (200): the order as it now is and what
/// became of the event's money.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookBody {
    pub order: Order,
    /// `paid`, `refunded`, `late_payment`... (docs/ORDERS.md).
    pub outcome: String,
    /// Whether the shop must act on it by hand.
    pub needs_attention: bool,
    /// The answer to an event seen before.
    pub replayed: bool,
}

/// `GET /api/admin/payments/attention` (200).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttentionBody {
    /// All such events, over every voucher.
    pub count: u64,
    /// The newest, newest first.
    pub events: Vec<AttentionEvent>,
}

/// A money event the shop must act on by hand.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttentionEvent {
    pub voucher_id: String,
    pub order_id: String,
    pub event_id: String,
    pub outcome: String,
    pub amount: Option<i64>,
    pub time: String,
}

/// `POST /api/admin/orders/export` (200): what one run of the order
/// exporter moved to PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ExportBody {
    /// Whether `pg_address` is set at all.
    pub enabled: bool,
    pub vouchers: u64,
    /// Order events written and acknowledged.
    #[serde(default)]
    pub events: u64,
    /// Of which taken over from a run that did not finish.
    #[serde(default)]
    pub claimed: u64,
    /// Events PostgreSQL refused for their data, parked.
    #[serde(default)]
    pub parked: u64,
    /// Vouchers whose export PostgreSQL refused for another reason.
    #[serde(default)]
    pub failed: Vec<FailedVoucher>,
}

/// A voucher whose export stopped at a statement PostgreSQL refused; its
/// events wait in Redis.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailedVoucher {
    pub voucher_id: String,
    pub error: SqlError,
}

/// What PostgreSQL said when it refused a statement.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlError {
    /// The SQLSTATE, e.g. `23514` for a check constraint.
    pub sqlstate: String,
    pub message: String,
}

/// `GET /api/admin/orders/export/parked` (200): a page of parked events.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParkedPage {
    pub parked: Vec<ParkedEvent>,
    /// Where the next page starts; none when nothing can be left.
    pub next_cursor: Option<String>,
}

/// An order event PostgreSQL refused, waiting to be retried.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParkedEvent {
    pub voucher_id: String,
    /// Its id among the voucher's parked events.
    pub id: String,
    pub parked_at: String,
    pub error: SqlError,
    pub order: ParkedOrder,
}

/// The order as a parked event carries it: its state after one change.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParkedOrder {
    pub id: String,
    pub version: i64,
    pub voucher_id: String,
    pub user_id: String,
    pub status: OrderStatus,
    pub amount: i64,
    pub pay_type: Option<PayType>,
    pub pay_deadline: Option<String>,
    pub pay_time: Option<String>,
    pub use_time: Option<String>,
    pub refund_time: Option<String>,
    pub create_time: String,
    pub update_time: String,
}

/// `POST /api/admin/orders/export/parked/retry` (200): what was moved back
/// and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryBody {
    pub enabled: bool,
    /// Vouchers looked at.
    pub vouchers: u64,
    /// Parked events moved back into their outboxes.
    pub moved: u64,
    /// Events then written and acknowledged.
    pub events: u64,
    #[serde(default)]
    pub claimed: u64,
    /// Events parked again, PostgreSQL still refusing them.
    #[serde(default)]
    pub parked: u64,
    #[serde(default)]
    pub failed: Vec<FailedVoucher>,
}

/// `GET /api/me/orders`: a page of the user's orders, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct OrderPage {
    pub orders: Vec<Order>,
    /// Where the next page starts; none on the last page.
    pub next_cursor: Option<String>,
}

/// The body of `POST /api/admin/lottery`; `code_base` and `max_periods`
/// may be left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewGoods {
    pub title: String,
    pub total_shares: i64,
    pub share_price: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code_base: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_periods: Option<i64>,
}

/// A lottery goods with a summary of its open (or last) period.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Goods {
    pub id: String,
    pub title: String,
    pub total_shares: u64,
    pub share_price: i64,
    pub code_base: u64,
    /// None: periods follow one another for ever.
    pub max_periods: Option<u64>,
    pub period: PeriodSummary,
}

/// A period as a goods shows it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeriodSummary {
    pub number: u64,
    pub sold: u64,
    pub remaining: u64,
    pub status: PeriodStatus,
    /// `sha256_hex(seed)`, published before the first share is sold.
    pub commitment: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeriodStatus {
    Selling,
    Drawn,
}

/// `{"goods": ...}`: `POST /api/admin/lottery` (201) and
/// `GET /api/lottery/:goods_id`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GoodsBody {
    pub goods: Goods,
}

/// `GET /api/lottery`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GoodsList {
    pub goods: Vec<Goods>,
}

/// `GET /api/lottery/:goods_id/periods/:n`: one period, with its draw
/// once it sold out.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Period {
    pub goods_id: String,
    pub number: u64,
    pub sold: u64,
    pub remaining: u64,
    pub status: PeriodStatus,
    pub commitment: String,
    pub opened_at: String,
    /// Absent until the draw (a `null` is refused, not read as absent).
    #[serde(default, deserialize_with = "present")]
    pub draw: Option<Draw>,
}

/// A period's draw, with all that is needed to check it by hand (see
/// docs/LOTTERY.md).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Draw {
    pub winning_code: u64,
    pub winner: User,
    pub winner_purchase_id: String,
    pub drawn_at: String,
    pub participants: u64,
    pub calculation: Calculation,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Calculation {
    pub formula: String,
    pub seed: String,
    pub commitment: String,
    pub commitment_formula: String,
    pub purchases_digest: String,
    pub digest_formula: String,
    pub code_formula: String,
    pub code_base: u64,
    pub total_shares: u64,
}

/// `{"period": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PeriodBody {
    pub period: Period,
}

/// A purchase of lottery shares, as `POST /api/lottery/:goods_id/shares`
/// answers it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Purchase {
    pub id: String,
    pub goods_id: String,
    pub period: u64,
    pub requested: u64,
    pub allocated: u64,
    pub codes: Vec<u64>,
    pub period_sold_out: bool,
    pub create_time: String,
    /// The receipt: the period's commitment, published when it opened,
    pub commitment: String,
    /// this purchase's record as hashed into the period's digest,
    pub record: String,
    /// and the digest after it.
    pub digest: String,
}

/// `{"purchase": ...}` (201); a retry with the same idempotency key gets
/// the same body again.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurchaseBody {
    pub purchase: Purchase,
}

/// A purchase as the buyer's own list shows it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MyPurchase {
    pub id: String,
    pub goods_id: String,
    pub period: u64,
    pub codes: Vec<u64>,
    pub create_time: String,
    /// The buyer's pseudonym, as the purchase's public record names them.
    pub pseudonym: String,
}

/// `GET /api/me/lottery`: a page of the user's purchases.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PurchasePage {
    pub purchases: Vec<MyPurchase>,
    /// Where the next page starts; none on the last page.
    pub next_cursor: Option<String>,
}

impl PurchasePage {
    /// Every code of every purchase on the page, in order.
    pub fn codes(&self) -> Vec<u64> {
        self.purchases
            .iter()
            .flat_map(|p| p.codes.iter().copied())
            .collect()
    }
}

/// One purchase record of a period, as the public list shows it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeriodRecord {
    /// `<purchase id>|<pseudonym>|<first share index>|<shares>|<unix ms>`.
    pub record: String,
    /// The period's digest after this record.
    pub digest: String,
    /// The first share index.
    pub codes_from: u64,
    /// Shares.
    pub count: u64,
}

/// `GET /api/lottery/:goods_id/periods/:n/purchases`: a page of a period's
/// records, in chain order.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeriodRecords {
    pub purchases: Vec<PeriodRecord>,
    /// Where the next page starts; none on the last page.
    #[serde(default, deserialize_with = "present")]
    pub next_cursor: Option<String>,
}

/// The API's error body, `{"error": {"code", "message"}}`; a refused second
/// purchase of a voucher (`already_purchased`) also carries the `order`
/// the user already has.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "ErrorBody")]
pub struct ApiError {
    pub code: String,
    pub message: String,
    pub order: Option<Order>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorFields,
    #[serde(default)]
    order: Option<Order>,
}

#[derive(Deserialize)]
struct ErrorFields {
    code: String,
    message: String,
}

impl From<ErrorBody> for ApiError {
    fn from(body: ErrorBody) -> Self {
        ApiError {
            code: body.error.code,
            message: body.error.message,
            order: body.order,
        }
    }
}

/// An optional field that, when present, must hold a value (not `null`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_period_before_its_draw_has_none_and_null_is_refused() {
        let period = r#"{"goods_id":"1","number":1,"sold":0,"remaining":3,"status":"selling",
            "commitment":"c","opened_at":"t"}"#;
        let read: Period = serde_json::from_str(period).unwrap();
        assert!(read.draw.is_none());
        let null = period.replace("\"t\"", "\"t\",\"draw\":null");
        assert!(serde_json::from_str::<Period>(&null).is_err());
    }

    #[test]
    fn an_error_body_reads_with_and_without_an_order() {
        let e: ApiError =
            serde_json::from_str(r#"{"error":{"code":"not_found","message":"no"}}"#).unwrap();
        assert_eq!((e.code.as_str(), e.order), ("not_found", None));
        let e: ApiError = serde_json::from_str(
            r#"{"error":{"code":"already_purchased","message":"m"},"order":{"id":"9",
            "voucher_id":"1","user_id":"2","status":"unpaid","amount":100,"pay_type":null,
            "pay_deadline":"d","pay_time":null,"use_time":null,"refund_time":null,
            "create_time":"t","update_time":"t"}}"#,
        )
        .unwrap();
        assert_eq!(e.order.unwrap().id, "9");
    }
}
