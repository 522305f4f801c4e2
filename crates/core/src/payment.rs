//! The payment provider's webhook: its signature and its events.
//!
//! Signed the way Stripe signs webhooks: the header
//! `flashspin-signature: t=<unix seconds>,v1=<hex>` carries
//! HMAC-SHA256(`payment_webhook_secret`, "<t>.<raw body>"), compared in
//! constant time, and `t` must be within [`TOLERANCE_SECS`] of Redis's
//! clock, so a captured request cannot be replayed later.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::body::JsonObject;
use crate::error::ApiError;
use crate::ids::VoucherId;
use crate::ids::{DecimalId, OrderId};
use crate::keys;
use crate::order::{EventId, Money, PayType};
use crate::page::PageSize;
use crate::part::VoucherPart;
use crate::redis::{Redis, RedisError};
use crate::script::ReplyReader;

/// How far a signature's time may be from Redis's clock.
pub const TOLERANCE_SECS: u64 = 300;

/// The `flashspin-signature` header, parsed: its time and its `v1`
/// signatures (a provider rotating its secret sends two).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub unix_secs: u64,
    v1: Vec<[u8; 32]>,
}

impl Signature {
    /// Parses `t=<secs>,v1=<64 hex digits>[,v1=...]`; other schemes are
    /// ignored. Anything unreadable is an invalid signature.
    pub fn parse(header: Option<&str>) -> Result<Self, ApiError> {
        let header = header.ok_or(ApiError::InvalidSignature)?;
        let mut unix_secs = None;
        let mut v1 = Vec::new();
        for part in header.split(',') {
            match part.trim().split_once('=') {
                Some(("t", t)) => unix_secs = t.parse().ok(),
                Some(("v1", hex)) => v1.push(parse_hex(hex).ok_or(ApiError::InvalidSignature)?),
                _ => {}
            }
        }
        match unix_secs {
            Some(unix_secs) if !v1.is_empty() => Ok(Self { unix_secs, v1 }),
            _ => Err(ApiError::InvalidSignature),
        }
    }

    /// Checks the signature of `body` with `secret`. An empty secret (the
    /// variable not set) accepts nothing.
    pub fn verify(&self, secret: &str, body: &[u8]) -> Result<(), ApiError> {
        if secret.is_empty() {
            return Err(ApiError::InvalidSignature);
        }
        let expected = sign(secret, self.unix_secs, body);
        // Every candidate is compared in full, without an early exit.
        let matched = self
            .v1
            .iter()
            .fold(false, |any, given| any | same(given, &expected));
        if matched {
            Ok(())
        } else {
            Err(ApiError::InvalidSignature)
        }
    }

    /// Whether the signature's time is within the tolerance of `now_secs`.
    pub fn is_fresh(&self, now_secs: u64) -> bool {
        self.unix_secs.abs_diff(now_secs) <= TOLERANCE_SECS
    }
}

/// HMAC-SHA256(secret, "<t>.<body>"), as the provider computes it.
pub fn sign(secret: &str, unix_secs: u64, body: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(unix_secs.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn parse_hex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// A webhook event, parsed: what happened to which order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: EventId,
    pub order_id: OrderId,
    pub money: Money,
}

impl Event {
    /// Parses `{"event_id", "type", "order_id", "amount", "pay_type"}`:
    /// `payment.succeeded` (with amount and pay type) or
    /// `refund.succeeded` (amount and pay type optional, not checked).
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let mut b = JsonObject::parse(body)?;
        let id = EventId::parse(&b.string("event_id")?)?;
        let kind = b.string("type")?;
        let order_id = b.string("order_id")?;
        let amount = b.optional_integer("amount")?;
        let pay_type = b.optional_string("pay_type")?;
        // Other fields are ignored, not refused: the body is signed, and a
        // provider that adds a field must not have every event refused
        // (and retried) from then on.
        drop(b);
        if !crate::ids::is_digits(&order_id) {
            return Err(ApiError::invalid("order_id must be 1 to 20 decimal digits"));
        }
        // Digits that cannot be an id (0, or past 64 bits) name no order.
        let order_id = OrderId::parse_decimal(&order_id).ok_or(ApiError::NotFound)?;
        let money = match kind.as_str() {
            "payment.succeeded" => {
                let amount = amount.ok_or_else(|| ApiError::invalid("amount is required"))?;
                if amount < 0 {
                    return Err(ApiError::invalid("amount must not be negative"));
                }
                let pay_type = pay_type
                    .as_deref()
                    .and_then(PayType::parse)
                    .ok_or_else(|| ApiError::invalid("pay_type must be alipay, wechat or card"))?;
                Money::Paid { amount, pay_type }
            }
            "refund.succeeded" => Money::Refunded,
            _ => {
                return Err(ApiError::invalid(
                    "type must be payment.succeeded or refund.succeeded",
                ));
            }
        };
        Ok(Event {
            id,
            order_id,
            money,
        })
    }
}

/// A money event the shop must act on by hand (a late or second payment,
/// one of another amount, a refund of a used order), as the order script
/// appended it to its voucher's attention stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttentionEntry {
    pub voucher_id: VoucherId,
    pub order_id: OrderId,
    pub event_id: String,
    /// The settlement's name (`order::Settlement::name`).
    pub outcome: String,
    /// What a payment paid, cents; `None` for a refund.
    pub amount: Option<i64>,
    pub time_ms: i64,
}

impl AttentionEntry {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "voucher_id": self.voucher_id.to_string(),
            "order_id": self.order_id.to_string(),
            "event_id": self.event_id,
            "outcome": self.outcome,
            "amount": self.amount,
            "time": crate::time::format_rfc3339(self.time_ms),
        })
    }
}

/// The money events to act on: how many there are in all, and the newest
/// `limit` of them, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attention {
    pub count: u64,
    pub events: Vec<AttentionEntry>,
}

/// Reads the attention streams of `parts` (every part of the vouchers
/// looked at): the length of each, and the newest entries of those that
/// have any; for the operator only.
pub async fn attention(
    redis: &mut impl Redis,
    parts: &[VoucherPart],
    limit: PageSize,
) -> Result<Attention, RedisError> {
    let mut count = 0;
    let mut events = Vec::new();
    for &part in parts {
        let voucher_id = part.voucher();
        let key = keys::voucher_payment_attention(part);
        let len = redis
            .execute_replayable("XLEN", &[key.as_str().into()])
            .await?;
        let len = ReplyReader::named("XLEN of an attention stream", len).id()?;
        count += len;
        if len == 0 {
            // Most vouchers have none: one round trip for them.
            continue;
        }
        let limit = limit.get() as i64;
        let reply = redis
            .execute(
                "XREVRANGE",
                &[
                    key.as_str().into(),
                    "+".into(),
                    "-".into(),
                    "COUNT".into(),
                    limit.into(),
                ],
            )
            .await?;
        let mut reader = ReplyReader::named("an attention stream", reply);
        while !reader.at_end() {
            events.push(read_attention(&mut reader, voucher_id)?);
        }
    }
    events.sort_by_key(|e| std::cmp::Reverse(e.time_ms));
    events.truncate(limit.get());
    Ok(Attention { count, events })
}

/// One stream entry, flattened: its id, then the fields `order_change.lua`
/// writes, in its order.
fn read_attention(
    reader: &mut ReplyReader,
    voucher_id: VoucherId,
) -> Result<AttentionEntry, RedisError> {
    let _entry_id = reader.string()?;
    let mut field = |name: &str| -> Result<String, RedisError> {
        let got = reader.string()?;
        if got != name {
            return Err(RedisError::UnexpectedReply(format!(
                "attention entry: {got:?} where {name:?} was expected"
            )));
        }
        reader.string()
    };
    let event_id = field("event_id")?;
    let order_id = field("order_id")?;
    let outcome = field("outcome")?;
    let amount = field("amount")?;
    let time = field("time")?;
    let bad = |what: &str| RedisError::UnexpectedReply(format!("attention entry: {what}"));
    Ok(AttentionEntry {
        voucher_id,
        order_id: OrderId::parse_decimal(&order_id).ok_or_else(|| bad("order_id"))?,
        event_id,
        outcome,
        amount: if amount.is_empty() {
            None
        } else {
            Some(amount.parse().map_err(|_| bad("amount"))?)
        },
        time_ms: time.parse().map_err(|_| bad("time"))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn a_signature_made_with_the_secret_verifies_and_nothing_else_does() {
        let body = br#"{"event_id":"evt_1"}"#;
        let good = format!(
            "t=1700000000,v1={}",
            hex(&sign("s3cret", 1_700_000_000, body))
        );
        let sig = Signature::parse(Some(&good)).unwrap();
        assert!(sig.verify("s3cret", body).is_ok());
        assert!(sig.verify("other", body).is_err());
        assert!(sig.verify("", body).is_err(), "no secret, no webhook");
        assert!(sig.verify("s3cret", br#"{"event_id":"evt_2"}"#).is_err());
        let other_time = format!(
            "t=1700000001,v1={}",
            hex(&sign("s3cret", 1_700_000_000, body))
        );
        assert!(
            Signature::parse(Some(&other_time))
                .unwrap()
                .verify("s3cret", body)
                .is_err()
        );
        // A rotated secret: either signature may match.
        let two = format!("{good},v1={}", "00".repeat(32));
        assert!(
            Signature::parse(Some(&two))
                .unwrap()
                .verify("s3cret", body)
                .is_ok()
        );
    }

    #[test]
    fn unreadable_headers_are_invalid_signatures() {
        for bad in [
            None,
            Some(""),
            Some("t=1"),
            Some("v1=00"),
            Some("t=x,v1=0000000000000000000000000000000000000000000000000000000000000000"),
            Some("t=1,v1=zz00000000000000000000000000000000000000000000000000000000000000"),
        ] {
            assert_eq!(
                Signature::parse(bad),
                Err(ApiError::InvalidSignature),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn freshness_is_five_minutes_either_way() {
        let sig = Signature {
            unix_secs: 1_000,
            v1: Vec::new(),
        };
        assert!(sig.is_fresh(1_300) && sig.is_fresh(700));
        assert!(!sig.is_fresh(1_301) && !sig.is_fresh(699));
    }

    #[test]
    fn events_parse_by_type() {
        let pay = br#"{"event_id":"evt_1","type":"payment.succeeded","order_id":"42","amount":8000,"pay_type":"alipay"}"#;
        let event = Event::parse(pay).unwrap();
        assert_eq!(
            event.money,
            Money::Paid {
                amount: 8000,
                pay_type: PayType::Alipay
            }
        );
        let refund = br#"{"event_id":"evt_2","type":"refund.succeeded","order_id":"42"}"#;
        assert_eq!(Event::parse(refund).unwrap().money, Money::Refunded);
        for bad in [
            r#"{"event_id":"evt_1","type":"payment.succeeded","order_id":"42","pay_type":"alipay"}"#,
            r#"{"event_id":"evt_1","type":"payment.succeeded","order_id":"42","amount":1,"pay_type":"cash"}"#,
            r#"{"event_id":"evt_1","type":"charge.failed","order_id":"42"}"#,
            r#"{"event_id":"evt_1","type":"refund.succeeded","order_id":"x"}"#,
            r#"{"event_id":"evt_1","type":"refund.succeeded","order_id":"+42"}"#,
            r#"{"event_id":"","type":"refund.succeeded","order_id":"42"}"#,
        ] {
            assert!(
                matches!(
                    Event::parse(bad.as_bytes()),
                    Err(ApiError::InvalidRequest(_))
                ),
                "{bad}"
            );
        }
        // Well-formed digits that no order can have are an unknown order.
        for unknown in ["0", "99999999999999999999"] {
            let body = format!(
                r#"{{"event_id":"evt_3","type":"refund.succeeded","order_id":"{unknown}"}}"#
            );
            assert_eq!(
                Event::parse(body.as_bytes()),
                Err(ApiError::NotFound),
                "{unknown}"
            );
        }
    }
}
