//! Admin routes, for shop operators: `POST /api/admin/vouchers` creates a
//! flash sale, `POST /api/admin/lottery` a lottery goods with period 1 open.
//! Both need `Authorization: Bearer <admin_key>`, checked after the limits
//! (so guessing the key is slowed down like anything else) and before the
//! body is looked at.

use flashspin_core::ApiError;
use flashspin_core::admin::authorize;
use flashspin_core::config::read;
use flashspin_core::gate::Anyone;
use flashspin_core::lottery::{self, NewGoods};
use flashspin_core::ratelimit::Endpoint;
use flashspin_core::voucher::{self, NewVoucher};
use flashspin_spin::request::ApiRequest;
use flashspin_spin::route::{Call, Reply, Route};
use flashspin_spin::variables::SpinVariables;
use serde_json::json;

/// The `authorization` header and the body, to be judged in that order
/// once the limits allowed the request.
struct Unchecked {
    authorization: Option<String>,
    body: Vec<u8>,
}

fn unchecked(req: &ApiRequest) -> Unchecked {
    Unchecked {
        authorization: req.header("authorization").map(str::to_string),
        body: req.body.clone(),
    }
}

fn authorized(request: &Unchecked) -> Result<(), ApiError> {
    let admin_key: String = read(&SpinVariables, "admin_key")?;
    authorize(&admin_key, request.authorization.as_deref())
}

struct CreateVoucher;

impl Route for CreateVoucher {
    const PATH: &'static str = "/api/admin/vouchers";
    const METHOD: &'static str = "POST";
    const ENDPOINT: Endpoint = Endpoint::Admin;
    type Caller = Anyone;
    type Input = Unchecked;

    fn parse(req: &ApiRequest) -> Result<Unchecked, ApiError> {
        Ok(unchecked(req))
    }

    fn run(call: &mut Call<'_, Anyone>, request: Unchecked) -> Result<Reply, ApiError> {
        authorized(&request)?;
        let new = NewVoucher::parse(&request.body)?;
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
    type Caller = Anyone;
    type Input = Unchecked;

    fn parse(req: &ApiRequest) -> Result<Unchecked, ApiError> {
        Ok(unchecked(req))
    }

    fn run(call: &mut Call<'_, Anyone>, request: Unchecked) -> Result<Reply, ApiError> {
        authorized(&request)?;
        let new = NewGoods::parse(&request.body)?;
        let redis = call.redis()?;
        let id = lottery::create(redis, &new)?;
        let goods = lottery::read(redis, id, 0)?.ok_or(ApiError::NotFound)?;
        Ok(Reply::created(json!({"goods": goods.goods_json()})))
    }
}

flashspin_spin::component!(CreateVoucher, CreateGoods);
