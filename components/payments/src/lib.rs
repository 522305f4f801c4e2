//! `POST /api/payments/webhook`: the payment provider tells the shop that
//! an order was paid or refunded. Nothing is read before the signature is
//! checked (no Redis work for a forged call); then two round trips: finding
//! the order's voucher (with Redis's clock, against which the signature's
//! time must be fresh), and the change itself, idempotent by event id, with
//! its event in the voucher's outbox when `order_export` is set.
//!
//! Every event about a known order is answered 200 with what became of the
//! money (`outcome`), also when there was nothing to do, so that the
//! provider stops retrying; 4xx is kept for what a retry could fix (a bad
//! signature, an order not filed yet). What the shop must do by hand is
//! logged once per event and listed for the operator (docs/ORDERS.md).

use flashspin_core::ApiError;
use flashspin_core::config::read;
use flashspin_core::order::{self, OrderExport};
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

    async fn run(call: &mut Call<'_, Ungated>, signed: Signed) -> Result<Reply, ApiError> {
        let secret: String = read(&SpinVariables, "payment_webhook_secret")?;
        signed.signature.verify(&secret, &signed.body)?;
        let event = Event::parse(&signed.body)?;
        let export = OrderExport::from_vars(&SpinVariables)?;
        let shards = call.shards()?;
        let redis = call.redis().await?;
        let (located, now_secs) = order::locate(redis, shards, event.order_id).await?;
        if !signed.signature.is_fresh(now_secs) {
            return Err(ApiError::InvalidSignature);
        }
        let located = located.ok_or(ApiError::NotFound)?;
        let settled = order::settle(
            redis,
            located.part,
            event.order_id,
            &event.id,
            event.money,
            export,
        )
        .await?;
        let settlement = settled.settlement;
        if settlement.needs_attention() && !settled.replayed {
            // Once per event: the outcome is kept, so a retry is replayed.
            // The operator also finds it in the attention list.
            eprintln!(
                "payment event {} for order {} of voucher {}: {}, act on it by hand",
                event.id.as_str(),
                event.order_id,
                located.part.voucher(),
                settlement.name(),
            );
        }
        Ok(Reply::ok(json!({
            "order": settled.order.to_json(),
            "outcome": settlement.name(),
            "needs_attention": settlement.needs_attention(),
            "replayed": settled.replayed,
        })))
    }
}

flashspin_spin::component!(Webhook);
