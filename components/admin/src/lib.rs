//! Admin routes, for shop operators: `POST /api/admin/vouchers` creates a
//! flash sale, `POST /api/admin/lottery` a lottery goods with period 1 open.
//! Both need the admin key (see `Operator`), and the body is judged only
//! once the key is right.

use flashspin_core::ApiError;
use flashspin_core::lottery::{self, NewGoods};
use flashspin_core::ratelimit::Endpoint;
use flashspin_core::voucher::{self, NewVoucher};
use flashspin_spin::request::ApiRequest;
use flashspin_spin::route::{Call, Operator, Reply, Route};
use serde_json::json;

struct CreateVoucher;

impl Route for CreateVoucher {
    const PATH: &'static str = "/api/admin/vouchers";
    const METHOD: &'static str = "POST";
    const ENDPOINT: Endpoint = Endpoint::Admin;
    type Caller = Operator;
    type Input = ();

    fn parse(_: &ApiRequest) -> Result<(), ApiError> {
        Ok(())
    }

    async fn run(call: &mut Call<'_, Operator>, (): ()) -> Result<Reply, ApiError> {
        let new = NewVoucher::parse(call.body())?;
        let now_ms = call.now_ms();
        let created = voucher::create(call.redis().await?, new).await?;
        Ok(Reply::created(json!({"voucher": created.to_json(now_ms)})))
    }
}

struct CreateGoods;

impl Route for CreateGoods {
    const PATH: &'static str = "/api/admin/lottery";
    const METHOD: &'static str = "POST";
    const ENDPOINT: Endpoint = Endpoint::Admin;
    type Caller = Operator;
    type Input = ();

    fn parse(_: &ApiRequest) -> Result<(), ApiError> {
        Ok(())
    }

    async fn run(call: &mut Call<'_, Operator>, (): ()) -> Result<Reply, ApiError> {
        let new = NewGoods::parse(call.body())?;
        let redis = call.redis().await?;
        let id = lottery::create(redis, &new).await?;
        let goods = lottery::read(redis, id, 0)
            .await?
            .ok_or(ApiError::NotFound)?;
        Ok(Reply::created(json!({"goods": goods.goods_json()})))
    }
}

flashspin_spin::component!(CreateVoucher, CreateGoods);
