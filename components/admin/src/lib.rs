//! Admin routes, for shop operators: `POST /api/admin/vouchers` creates a
//! flash sale, `POST /api/admin/lottery` a lottery goods with period 1 open,
//! and `GET /api/admin/payments/attention` lists the money events the shop
//! must act on by hand. All need the admin key (see `Operator`), and a body
//! is judged only once the key is right.

use flashspin_core::ApiError;
use flashspin_core::lottery::{self, NewGoods};
use flashspin_core::order_export::all_vouchers;
use flashspin_core::page::PageSize;
use flashspin_core::payment;
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

    fn run(call: &mut Call<'_, Operator>, (): ()) -> Result<Reply, ApiError> {
        let new = NewVoucher::parse(call.body())?;
        let now_ms = call.now_ms();
        let created = voucher::create(call.redis()?, new)?;
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

    fn run(call: &mut Call<'_, Operator>, (): ()) -> Result<Reply, ApiError> {
        let new = NewGoods::parse(call.body())?;
        let redis = call.redis()?;
        let id = lottery::create(redis, &new)?;
        let goods = lottery::read(redis, id, 0)?.ok_or(ApiError::NotFound)?;
        Ok(Reply::created(json!({"goods": goods.goods_json()})))
    }
}

/// `GET /api/admin/payments/attention`: how many money events need the
/// shop's hand (late, second or wrong-amount payments, refunds of used
/// orders), and the newest `?limit=` of them across all vouchers.
struct PaymentAttention;

impl Route for PaymentAttention {
    const PATH: &'static str = "/api/admin/payments/attention";
    const METHOD: &'static str = "GET";
    const ENDPOINT: Endpoint = Endpoint::Admin;
    type Caller = Operator;
    type Input = PageSize;

    fn parse(req: &ApiRequest) -> Result<PageSize, ApiError> {
        PageSize::parse(req.query_param("limit").as_deref())
    }

    fn run(call: &mut Call<'_, Operator>, limit: PageSize) -> Result<Reply, ApiError> {
        let redis = call.redis()?;
        let vouchers = all_vouchers(redis)?;
        let found = payment::attention(redis, &vouchers, limit)?;
        let events: Vec<_> = found.events.iter().map(|e| e.to_json()).collect();
        Ok(Reply::ok(json!({"count": found.count, "events": events})))
    }
}

flashspin_spin::component!(CreateVoucher, CreateGoods, PaymentAttention);
