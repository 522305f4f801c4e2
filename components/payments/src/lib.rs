//! `POST /api/payments/webhook`: the payment provider tells the shop that
//! an order was paid or refunded. Nothing is read before the signature is
//! checked (no Redis work for a forged call); then two round trips: finding
//! the order's voucher (with Redis's clock, against which the signature's
//! time must be fresh), and the change itself, idempotent by event id, with
//! its event in the voucher's outbox when `order_export` is set.

use flashspin_core::ApiError;
use flashspin_core::config::read;
use flashspin_core::error::Conflict;
use flashspin_core::order::{self, Change, OrderExport, OrderStatus};
use flashspin_core::payment::{Event, Signature};
use flashspin_core::ratelimit::Endpoint;
use flashspin_spin::request::ApiRequest;
use flashspin_spin::route::{Call, Reply, Route, Ungated};
use flashspin_spin::variables::SpinVariables;
use serde_json::json;

struct Webhook;

/// The signed request, before its signature is checked.
struct Signed {
    signature: Signature,
    body: Vec<u8>,
}

impl Route for Webhook {
    const PATH: &'static str = "/api/payments/webhook";
    const METHOD: &'static str = "POST";
    const ENDPOINT: Endpoint = Endpoint::Payments;
    type Caller = Ungated;
    type Input = Signed;

    fn parse(req: &ApiRequest) -> Result<Signed, ApiError> {
        Ok(Signed {
            signature: Signature::parse(req.header("flashspin-signature"))?,
            body: req.body.clone(),
        })
    }

    fn run(call: &mut Call<'_, Ungated>, signed: Signed) -> Result<Reply, ApiError> {
        let secret: String = read(&SpinVariables, "payment_webhook_secret")?;
        signed.signature.verify(&secret, &signed.body)?;
        let event = Event::parse(&signed.body)?;
        let export = OrderExport::from_vars(&SpinVariables)?;
        let redis = call.redis()?;
        let (located, now_secs) = order::locate(redis, event.order_id)?;
        if !signed.signature.is_fresh(now_secs) {
            return Err(ApiError::InvalidSignature);
        }
        let located = located.ok_or(ApiError::NotFound)?;
        let changed = order::apply(
            redis,
            located.voucher_id,
            event.order_id,
            event.change,
            None,
            Some(&event.id),
            export,
        )?;
        let too_late = matches!(
            changed.order.status,
            OrderStatus::Expired | OrderStatus::Cancelled
        );
        if let (Some(Conflict::InvalidState), Change::Pay { .. }, true, false) =
            (changed.refused, event.change, too_late, changed.replayed)
        {
            // The money was taken for an order that is no longer on sale.
            // Said once per event: the provider retries a refusal.
            eprintln!(
                "payment {} for order {} came after the order {}: refund it",
                event.id.as_str(),
                event.order_id,
                if changed.order.status == OrderStatus::Expired {
                    "expired"
                } else {
                    "was cancelled"
                }
            );
        }
        Ok(Reply::ok(
            json!({"order": changed.into_result()?.to_json()}),
        ))
    }
}

flashspin_spin::component!(Webhook);
