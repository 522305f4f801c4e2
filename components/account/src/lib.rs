//! The signed-in user's own routes: `GET /api/me`, `GET /api/me/orders`,
//! `GET /api/me/lottery`, `GET /api/orders/:id`,
//! `POST /api/orders/:id/cancel` and `POST /api/auth/logout`. The two lists
//! come in pages (`limit`, `cursor`), with bounded Redis work per page, and
//! are limited per user by `rate_limit_user_reads`. Another user's order is
//! not found. A cancel (or an expiry a read finds due) goes to the voucher's
//! outbox when `order_export` is set. Each lottery purchase shows the
//! buyer's pseudonym as its public record has it.

use flashspin_core::ApiError;
use flashspin_core::gate::{Reader, SignedIn};
use flashspin_core::ids::{GoodsId, OrderId, PeriodNumber};
use flashspin_core::login::logout;
use flashspin_core::lottery::{self, PurchaseFilter, PurchasesCursor};
use flashspin_core::order::{self, Change, OrderExport, OrderStatus};
use flashspin_core::page::PageSize;
use flashspin_core::ratelimit::Endpoint;
use flashspin_core::session::SessionToken;
use flashspin_core::voucher::{self, OrdersCursor};
use flashspin_spin::http::{clear_session_cookie, user_json};
use flashspin_spin::request::ApiRequest;
use flashspin_spin::route::{Call, Reply, Route};
use flashspin_spin::variables::SpinVariables;
use serde_json::json;

struct Me;

impl Route for Me {
    const PATH: &'static str = "/api/me";
    const METHOD: &'static str = "GET";
    const ENDPOINT: Endpoint = Endpoint::Account;
    type Caller = SignedIn;
    type Input = ();

    fn parse(_: &ApiRequest) -> Result<(), ApiError> {
        Ok(())
    }

    async fn run(call: &mut Call<'_, SignedIn>, (): ()) -> Result<Reply, ApiError> {
        let user = &call.caller.0;
        Ok(Reply::ok(
            json!({"user": user_json(user.id, &user.phone, &user.nickname)}),
        ))
    }
}

struct Logout;

impl Route for Logout {
    const PATH: &'static str = "/api/auth/logout";
    const METHOD: &'static str = "POST";
    const ENDPOINT: Endpoint = Endpoint::Account;
    type Caller = SignedIn;
    type Input = SessionToken;

    fn parse(req: &ApiRequest) -> Result<SessionToken, ApiError> {
        req.token().ok_or(ApiError::Unauthorized)
    }

    async fn run(call: &mut Call<'_, SignedIn>, token: SessionToken) -> Result<Reply, ApiError> {
        let shards = call.shards()?;
        logout(call.redis().await?, &token, shards).await?;
        Ok(Reply::no_content().header("set-cookie", clear_session_cookie()))
    }
}

/// `?limit=&cursor=` of a list.
fn page<C>(
    req: &ApiRequest,
    cursor: impl Fn(&str) -> Result<C, ApiError>,
) -> Result<(PageSize, Option<C>), ApiError> {
    let limit = PageSize::parse(req.query_param("limit").as_deref())?;
    let after = req.query_param("cursor").map(|c| cursor(&c)).transpose()?;
    Ok((limit, after))
}

struct Orders;

impl Route for Orders {
    const PATH: &'static str = "/api/me/orders";
    const METHOD: &'static str = "GET";
    const ENDPOINT: Endpoint = Endpoint::Account;
    type Caller = Reader;
    type Input = (Option<OrderStatus>, PageSize, Option<OrdersCursor>);

    fn parse(req: &ApiRequest) -> Result<Self::Input, ApiError> {
        let status = req
            .query_param("status")
            .map(|s| {
                OrderStatus::parse(&s).ok_or_else(|| {
                    ApiError::invalid(
                        "status must be unpaid, paid, used, refunded, cancelled or expired",
                    )
                })
            })
            .transpose()?;
        let (limit, after) = page(req, OrdersCursor::parse)?;
        Ok((status, limit, after))
    }

    async fn run(
        call: &mut Call<'_, Reader>,
        (status, limit, after): Self::Input,
    ) -> Result<Reply, ApiError> {
        let (user_id, now_ms) = (call.caller.0.id, call.now_ms());
        let shards = call.shards()?;
        let (orders, next) = voucher::orders_page(
            call.redis().await?,
            shards,
            user_id,
            status,
            after.as_ref(),
            limit.get(),
            now_ms,
        )
        .await?;
        let orders: Vec<_> = orders.iter().map(|o| o.to_json()).collect();
        let mut body = json!({"orders": orders});
        if let Some(next) = next {
            body["next_cursor"] = next.to_string().into();
        }
        Ok(Reply::ok(body))
    }
}

struct Lottery;

impl Route for Lottery {
    const PATH: &'static str = "/api/me/lottery";
    const METHOD: &'static str = "GET";
    const ENDPOINT: Endpoint = Endpoint::Account;
    type Caller = Reader;
    type Input = (PurchaseFilter, PageSize, Option<PurchasesCursor>);

    fn parse(req: &ApiRequest) -> Result<Self::Input, ApiError> {
        let goods = req
            .query_param("goods_id")
            .map(|id| {
                GoodsId::parse(&id)
                    .ok_or_else(|| ApiError::invalid("goods_id must be a decimal id"))
            })
            .transpose()?;
        let period = req
            .query_param("period")
            .map(|n| {
                PeriodNumber::parse(&n)
                    .map(PeriodNumber::get)
                    .ok_or_else(|| ApiError::invalid("period must be a positive integer"))
            })
            .transpose()?;
        let (limit, after) = page(req, PurchasesCursor::parse)?;
        Ok((PurchaseFilter { goods, period }, limit, after))
    }

    async fn run(
        call: &mut Call<'_, Reader>,
        (filter, limit, after): Self::Input,
    ) -> Result<Reply, ApiError> {
        let user_id = call.caller.0.id;
        let shards = call.shards()?;
        let (purchases, next) = lottery::purchases_page(
            call.redis().await?,
            shards,
            user_id,
            filter,
            after,
            limit.get(),
        )
        .await?;
        let purchases: Vec<_> = purchases.iter().map(|p| p.to_json()).collect();
        let mut body = json!({"purchases": purchases});
        if let Some(next) = next {
            body["next_cursor"] = next.to_string().into();
        }
        Ok(Reply::ok(body))
    }
}

/// One of the caller's orders: `GET /api/orders/:id` reads it,
/// `POST /api/orders/:id/cancel` cancels it while unpaid.
async fn own_order(
    call: &mut Call<'_, SignedIn>,
    id: OrderId,
    change: Change,
) -> Result<Reply, ApiError> {
    let user_id = call.caller.0.id;
    let export = OrderExport::from_vars(&SpinVariables)?;
    let shards = call.shards()?;
    let redis = call.redis().await?;
    let located = order::locate(redis, shards, id)
        .await?
        .0
        .filter(|l| l.user_id == user_id)
        .ok_or(ApiError::NotFound)?;
    let order = order::change(redis, located.part, id, change, Some(user_id), export).await?;
    Ok(Reply::ok(json!({"order": order.to_json()})))
}

struct OneOrder;

impl Route for OneOrder {
    const PATH: &'static str = "/api/orders/:id";
    const METHOD: &'static str = "GET";
    const ENDPOINT: Endpoint = Endpoint::Account;
    type Caller = SignedIn;
    type Input = OrderId;

    fn parse(req: &ApiRequest) -> Result<OrderId, ApiError> {
        req.path_id("id")
    }

    async fn run(call: &mut Call<'_, SignedIn>, id: OrderId) -> Result<Reply, ApiError> {
        own_order(call, id, Change::Read).await
    }
}

struct CancelOrder;

impl Route for CancelOrder {
    const PATH: &'static str = "/api/orders/:id/cancel";
    const METHOD: &'static str = "POST";
    const ENDPOINT: Endpoint = Endpoint::Account;
    type Caller = SignedIn;
    type Input = OrderId;

    fn parse(req: &ApiRequest) -> Result<OrderId, ApiError> {
        req.path_id("id")
    }

    async fn run(call: &mut Call<'_, SignedIn>, id: OrderId) -> Result<Reply, ApiError> {
        own_order(call, id, Change::Cancel).await
    }
}

flashspin_spin::component!(Me, Logout, Orders, Lottery, OneOrder, CancelOrder);
