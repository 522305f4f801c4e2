//! `POST /api/lottery/:goods_id/shares`: buys shares of a goods' open
//! period. Two Redis round trips: the gate (session, limits, purchase
//! number), then the purchase script, which also draws the period when this
//! purchase sells it out. A purchase that succeeded takes a third, to add
//! the goods to the user's list. The answer carries the purchase's receipt
//! (commitment, record, digest); the record names the buyer by their
//! pseudonym for that goods and period, keyed from `id_secret`.

use flashspin_core::ApiError;
use flashspin_core::gate::Buyer;
use flashspin_core::ids::GoodsId;
use flashspin_core::lottery::{self, IdempotencyKey, PseudonymKey, ShareCount};
use flashspin_core::ratelimit::Endpoint;
use flashspin_spin::request::ApiRequest;
use flashspin_spin::route::{Call, Reply, Route};
use flashspin_spin::variables::SpinVariables;
use serde_json::json;

struct BuyShares;

struct Order {
    goods_id: GoodsId,
    count: ShareCount,
    idempotency_key: Option<IdempotencyKey>,
}

impl Route for BuyShares {
    const PATH: &'static str = "/api/lottery/:goods_id/shares";
    const METHOD: &'static str = "POST";
    const ENDPOINT: Endpoint = Endpoint::BuyLotteryShares;
    type Caller = Buyer;
    type Input = Order;

    fn parse(req: &ApiRequest) -> Result<Order, ApiError> {
        let goods_id = req.path_id("goods-id")?;
        let mut body = req.json()?;
        let count = ShareCount::parse(body.integer("count")?)?;
        body.finish()?;
        let idempotency_key = req
            .header("idempotency-key")
            .map(IdempotencyKey::parse)
            .transpose()?;
        Ok(Order {
            goods_id,
            count,
            idempotency_key,
        })
    }

    async fn run(call: &mut Call<'_, Buyer>, order: Order) -> Result<Reply, ApiError> {
        let (user_id, purchase_id) = (call.caller.user.id, call.caller.order_id);
        let pseudonyms = PseudonymKey::from_vars(&SpinVariables)?;
        let shards = call.shards()?;
        let redis = call.redis().await?;
        let purchase = lottery::buy(
            redis,
            order.goods_id,
            user_id,
            &pseudonyms,
            order.count.get(),
            purchase_id,
            order.idempotency_key.as_ref(),
        )
        .await?;
        // The purchase stands even if listing it fails; the log says so.
        if let Err(e) = lottery::record_goods(redis, shards, user_id, order.goods_id).await {
            eprintln!("goods {} not added to the user's list: {e}", order.goods_id);
        }
        Ok(Reply::created(json!({"purchase": purchase.to_json()})))
    }
}

flashspin_spin::component!(BuyShares);
