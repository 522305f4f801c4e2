//! The public catalogue: vouchers (`GET /api/vouchers?shop_id=1`,
//! `GET /api/vouchers/:id`) and lottery goods (`GET /api/lottery`,
//! `GET /api/lottery/:goods_id`, `GET /api/lottery/:goods_id/periods/:n`,
//! and the period's public purchase records,
//! `GET /api/lottery/:goods_id/periods/:n/purchases`).
//! Reading a voucher expires its orders past their pay deadline, which go to
//! the outbox when `order_export` is set.

use flashspin_core::ApiError;
use flashspin_core::gate::Anyone;
use flashspin_core::ids::{GoodsId, PeriodNumber, ShopId, VoucherId};
use flashspin_core::lottery::{self, RecordsCursor};
use flashspin_core::order::OrderExport;
use flashspin_core::ratelimit::Endpoint;
use flashspin_core::voucher;
use flashspin_spin::request::ApiRequest;
use flashspin_spin::route::{Call, Reply, Route};
use flashspin_spin::variables::SpinVariables;
use serde_json::{Value, json};

/// Most items one listing returns.
const PAGE: usize = 50;

struct Vouchers;

impl Route for Vouchers {
    const PATH: &'static str = "/api/vouchers";
    const METHOD: &'static str = "GET";
    const ENDPOINT: Endpoint = Endpoint::Catalog;
    type Caller = Anyone;
    type Input = ShopId;

    fn parse(req: &ApiRequest) -> Result<ShopId, ApiError> {
        let shop = req
            .query_param("shop_id")
            .ok_or_else(|| ApiError::invalid("shop_id is required"))?;
        ShopId::parse(&shop).ok_or_else(|| ApiError::invalid("shop_id must be a decimal id"))
    }

    async fn run(call: &mut Call<'_, Anyone>, shop: ShopId) -> Result<Reply, ApiError> {
        let now_ms = call.now_ms();
        let export = OrderExport::from_vars(&SpinVariables)?;
        let vouchers: Vec<Value> = voucher::list_by_shop(call.redis().await?, shop, PAGE, export)
            .await?
            .iter()
            .map(|v| v.to_json(now_ms))
            .collect();
        Ok(Reply::ok(json!({"vouchers": vouchers})))
    }
}

struct OneVoucher;

impl Route for OneVoucher {
    const PATH: &'static str = "/api/vouchers/:id";
    const METHOD: &'static str = "GET";
    const ENDPOINT: Endpoint = Endpoint::Catalog;
    type Caller = Anyone;
    type Input = VoucherId;

    fn parse(req: &ApiRequest) -> Result<VoucherId, ApiError> {
        req.path_id("id")
    }

    async fn run(call: &mut Call<'_, Anyone>, id: VoucherId) -> Result<Reply, ApiError> {
        let now_ms = call.now_ms();
        let export = OrderExport::from_vars(&SpinVariables)?;
        let found = voucher::get(call.redis().await?, id, export)
            .await?
            .ok_or(ApiError::NotFound)?;
        Ok(Reply::ok(json!({"voucher": found.to_json(now_ms)})))
    }
}

struct AllGoods;

impl Route for AllGoods {
    const PATH: &'static str = "/api/lottery";
    const METHOD: &'static str = "GET";
    const ENDPOINT: Endpoint = Endpoint::Catalog;
    type Caller = Anyone;
    type Input = ();

    fn parse(_: &ApiRequest) -> Result<(), ApiError> {
        Ok(())
    }

    async fn run(call: &mut Call<'_, Anyone>, (): ()) -> Result<Reply, ApiError> {
        let goods: Vec<Value> = lottery::list(call.redis().await?, PAGE)
            .await?
            .iter()
            .map(|g| g.goods_json())
            .collect();
        Ok(Reply::ok(json!({"goods": goods})))
    }
}

struct OneGoods;

impl Route for OneGoods {
    const PATH: &'static str = "/api/lottery/:goods_id";
    const METHOD: &'static str = "GET";
    const ENDPOINT: Endpoint = Endpoint::Catalog;
    type Caller = Anyone;
    type Input = GoodsId;

    fn parse(req: &ApiRequest) -> Result<GoodsId, ApiError> {
        req.path_id("goods-id")
    }

    async fn run(call: &mut Call<'_, Anyone>, id: GoodsId) -> Result<Reply, ApiError> {
        let goods = lottery::read(call.redis().await?, id, 0)
            .await?
            .ok_or(ApiError::NotFound)?;
        Ok(Reply::ok(json!({"goods": goods.goods_json()})))
    }
}

struct Period;

impl Route for Period {
    const PATH: &'static str = "/api/lottery/:goods_id/periods/:n";
    const METHOD: &'static str = "GET";
    const ENDPOINT: Endpoint = Endpoint::Catalog;
    type Caller = Anyone;
    type Input = (GoodsId, PeriodNumber);

    fn parse(req: &ApiRequest) -> Result<(GoodsId, PeriodNumber), ApiError> {
        Ok((req.path_id("goods-id")?, req.path_id("n")?))
    }

    async fn run(
        call: &mut Call<'_, Anyone>,
        (id, n): (GoodsId, PeriodNumber),
    ) -> Result<Reply, ApiError> {
        let shards = call.shards()?;
        let redis = call.redis().await?;
        let period = lottery::read(redis, id, n.get())
            .await?
            .ok_or(ApiError::NotFound)?;
        let winner = match &period.draw {
            Some(draw) => lottery::winner(redis, shards, draw.winner).await?,
            None => None,
        };
        Ok(Reply::ok(
            json!({"period": period.period_json(winner.as_ref())}),
        ))
    }
}

struct PeriodPurchases;

impl Route for PeriodPurchases {
    const PATH: &'static str = "/api/lottery/:goods_id/periods/:n/purchases";
    const METHOD: &'static str = "GET";
    const ENDPOINT: Endpoint = Endpoint::Catalog;
    type Caller = Anyone;
    type Input = (GoodsId, PeriodNumber, usize, Option<RecordsCursor>);

    fn parse(req: &ApiRequest) -> Result<Self::Input, ApiError> {
        let (id, n) = (req.path_id("goods-id")?, req.path_id("n")?);
        let limit = lottery::records_limit(req.query_param("limit").as_deref())?;
        let after = req
            .query_param("cursor")
            .map(|c| RecordsCursor::parse(&c))
            .transpose()?;
        Ok((id, n, limit, after))
    }

    async fn run(
        call: &mut Call<'_, Anyone>,
        (id, n, limit, after): Self::Input,
    ) -> Result<Reply, ApiError> {
        let (records, next) =
            lottery::period_records(call.redis().await?, id, n.get(), after, limit).await?;
        let records: Vec<Value> = records.iter().map(|r| r.to_json()).collect();
        let mut body = json!({"purchases": records});
        if let Some(next) = next {
            body["next_cursor"] = next.to_string().into();
        }
        Ok(Reply::ok(body))
    }
}

flashspin_spin::component!(
    Vouchers,
    OneVoucher,
    AllGoods,
    OneGoods,
    Period,
    PeriodPurchases
);
