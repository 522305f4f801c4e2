//! A typed client of the app's HTTP API, shared by the black-box tests and
//! the benchmark: [`Client`] has one method per route, taking typed
//! arguments and giving a [`Call`] whose [`Answer`] reads as the route's
//! body type (see [`types`]) or as the API's [`ApiError`]. It also owns the
//! one sign-in flow ([`Client::sign_in`]: ask for a code, read it from the
//! [`SmsSink`], log in).
//!
//! Requests the typed methods cannot express (bad JSON, wrong methods, huge
//! bodies, odd headers) start from [`Client::request`] or add to a typed
//! call ([`Call::header`], [`Call::body`], ...).

mod answer;
pub mod types;

pub use answer::{Answer, Call, Failure};
pub use types::*;

use reqwest::Method;
use serde::Serialize;

use crate::SmsSink;

/// The `flashspin-signature` header the payment provider sends with
/// `body` at `unix_secs`. Computed here with its own HMAC, not the app's.
pub fn webhook_signature(secret: &str, unix_secs: u64, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("{unix_secs}.").as_bytes());
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={unix_secs},v1={hex}")
}

/// The app at `base` (`http://host:port`), spoken to over one HTTP client.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
}

/// The query of `GET /api/me/orders`; `Default` asks for the first page of
/// the default size.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct OrdersQuery<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<OrderStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<&'a str>,
}

/// The query of `GET /api/admin/orders/export/parked`; `Default` asks for
/// the first page of every voucher's.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ParkedQuery<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voucher_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<&'a str>,
}

/// The query of `GET /api/me/lottery`: optionally one goods, or one period
/// of it, and the page.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct LotteryQuery<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub goods_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<&'a str>,
}

/// `?limit=&cursor=` of a public list; `Default` asks for the first page
/// of the default size.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct PageQuery<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<&'a str>,
}

impl Client {
    pub fn new(base: impl Into<String>) -> Self {
        Self::with_http(base, reqwest::Client::new())
    }

    /// Over `http`, for a caller that tunes its connection pool.
    pub fn with_http(base: impl Into<String>, http: reqwest::Client) -> Self {
        Client {
            base: base.into().trim_end_matches('/').to_string(),
            http,
        }
    }

    /// `http://host:port`, with no trailing slash.
    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Any request, for what the typed methods cannot send; its answer
    /// reads as untyped JSON.
    pub fn request(&self, method: Method, path: &str) -> Call<serde_json::Value> {
        Call::new(self.http.request(method, self.url(path)))
    }

    /// `GET path`, untyped.
    pub fn get(&self, path: &str) -> Call<serde_json::Value> {
        self.request(Method::GET, path)
    }

    /// `POST path` with a JSON body, untyped.
    pub fn post_json(&self, path: &str, body: &impl Serialize) -> Call<serde_json::Value> {
        self.request(Method::POST, path).json(body)
    }

    fn call<T>(&self, method: Method, path: &str) -> Call<T> {
        Call::new(self.http.request(method, self.url(path)))
    }

    /// `GET /api/health`.
    pub fn health(&self) -> Call<Health> {
        self.call(Method::GET, "/api/health")
    }

    /// `POST /api/auth/code`: sends `phone` a login code by SMS.
    pub fn send_code(&self, phone: &str) -> Call<CodeSent> {
        self.call(Method::POST, "/api/auth/code")
            .json(&serde_json::json!({"phone": phone}))
    }

    /// `POST /api/auth/login`.
    pub fn login(&self, phone: &str, code: &str) -> Call<Session> {
        self.call(Method::POST, "/api/auth/login")
            .json(&serde_json::json!({"phone": phone, "code": code}))
    }

    /// `GET /api/me`.
    pub fn me(&self, token: &str) -> Call<Me> {
        self.call(Method::GET, "/api/me").bearer(token)
    }

    /// `POST /api/auth/refresh`.
    pub fn refresh(&self, token: &str) -> Call<Refreshed> {
        self.call(Method::POST, "/api/auth/refresh").bearer(token)
    }

    /// `POST /api/auth/logout` (204, no body).
    pub fn logout(&self, token: &str) -> Call<()> {
        self.call(Method::POST, "/api/auth/logout").bearer(token)
    }

    /// `POST /api/admin/vouchers`. The body is usually a [`NewVoucher`];
    /// any JSON goes, to try bad ones.
    pub fn create_voucher(&self, admin_key: &str, body: &impl Serialize) -> Call<VoucherBody> {
        self.call(Method::POST, "/api/admin/vouchers")
            .bearer(admin_key)
            .json(body)
    }

    /// `POST /api/admin/lottery`. The body is usually a [`NewGoods`]; any
    /// JSON goes, to try bad ones.
    pub fn create_goods(&self, admin_key: &str, body: &impl Serialize) -> Call<GoodsBody> {
        self.call(Method::POST, "/api/admin/lottery")
            .bearer(admin_key)
            .json(body)
    }

    /// `GET /api/vouchers?shop_id=`.
    pub fn vouchers(&self, shop_id: &str) -> Call<VoucherList> {
        Call::new(
            self.http
                .get(self.url("/api/vouchers"))
                .query(&[("shop_id", shop_id)]),
        )
    }

    /// `GET /api/vouchers/:id`.
    pub fn voucher(&self, id: &str) -> Call<VoucherBody> {
        self.call(Method::GET, &format!("/api/vouchers/{id}"))
    }

    /// `POST /api/vouchers/:id/orders`: buys voucher `id`.
    pub fn buy_voucher(&self, token: &str, id: &str) -> Call<OrderBody> {
        self.call(Method::POST, &format!("/api/vouchers/{id}/orders"))
            .bearer(token)
    }

    /// `GET /api/me/orders`.
    pub fn my_orders(&self, token: &str, query: &OrdersQuery<'_>) -> Call<OrderPage> {
        Call::new(self.http.get(self.url("/api/me/orders")).query(query)).bearer(token)
    }

    /// `GET /api/orders/:id`.
    pub fn order(&self, token: &str, id: &str) -> Call<OrderBody> {
        self.call(Method::GET, &format!("/api/orders/{id}"))
            .bearer(token)
    }

    /// `POST /api/orders/:id/cancel`.
    pub fn cancel_order(&self, token: &str, id: &str) -> Call<OrderBody> {
        self.call(Method::POST, &format!("/api/orders/{id}/cancel"))
            .bearer(token)
    }

    /// `POST /api/admin/orders/:id/use`.
    pub fn use_order(&self, admin_key: &str, id: &str) -> Call<OrderBody> {
        self.call(Method::POST, &format!("/api/admin/orders/{id}/use"))
            .bearer(admin_key)
    }

    /// `GET /api/admin/payments/attention`: the money events the shop must
    /// act on by hand.
    pub fn payment_attention(&self, admin_key: &str) -> Call<AttentionBody> {
        self.call(Method::GET, "/api/admin/payments/attention")
            .bearer(admin_key)
    }

    /// `POST /api/admin/orders/export`: moves every pending order event to
    /// PostgreSQL now.
    pub fn export_orders(&self, admin_key: &str) -> Call<ExportBody> {
        self.call(Method::POST, "/api/admin/orders/export")
            .bearer(admin_key)
    }

    /// `GET /api/admin/orders/export/parked`: order events PostgreSQL
    /// refused, a page at a time.
    pub fn parked_orders(&self, admin_key: &str, query: &ParkedQuery<'_>) -> Call<ParkedPage> {
        let url = self.url("/api/admin/orders/export/parked");
        Call::new(self.http.get(url).query(query)).bearer(admin_key)
    }

    /// `POST /api/admin/orders/export/parked/retry`: moves the parked
    /// events of `voucher_id`, or of every voucher, back and exports them.
    pub fn retry_parked_orders(
        &self,
        admin_key: &str,
        voucher_id: Option<&str>,
    ) -> Call<RetryBody> {
        let url = self.url("/api/admin/orders/export/parked/retry");
        let query: Vec<(&str, &str)> = voucher_id.map(|v| ("voucher_id", v)).into_iter().collect();
        Call::new(self.http.post(url).query(&query)).bearer(admin_key)
    }

    /// `POST /api/payments/webhook` with `event`, signed as the payment
    /// provider signs it: `flashspin-signature: t=<unix_secs>,v1=<hex
    /// HMAC-SHA256(secret, "<t>.<body>")>`.
    pub fn payment_webhook(
        &self,
        secret: &str,
        unix_secs: u64,
        event: &serde_json::Value,
    ) -> Call<WebhookBody> {
        let body = event.to_string().into_bytes();
        let signature = webhook_signature(secret, unix_secs, &body);
        self.payment_webhook_raw(&signature, body)
    }

    /// `POST /api/payments/webhook` with `body` as it is and any
    /// `flashspin-signature`, for forged, stale or tampered calls.
    pub fn payment_webhook_raw(&self, signature: &str, body: Vec<u8>) -> Call<WebhookBody> {
        self.call(Method::POST, "/api/payments/webhook")
            .header("flashspin-signature", signature)
            .header("content-type", "application/json")
            .body(body)
    }

    /// `GET /api/lottery`.
    pub fn lottery(&self) -> Call<GoodsList> {
        self.call(Method::GET, "/api/lottery")
    }

    /// `GET /api/lottery/:goods_id`.
    pub fn goods(&self, id: &str) -> Call<GoodsBody> {
        self.call(Method::GET, &format!("/api/lottery/{id}"))
    }

    /// `GET /api/lottery/:goods_id/periods/:n`.
    pub fn period(&self, goods_id: &str, n: u64) -> Call<PeriodBody> {
        self.call(Method::GET, &format!("/api/lottery/{goods_id}/periods/{n}"))
    }

    /// `GET /api/lottery/:goods_id/periods/:n/purchases`: a page of the
    /// period's purchase records.
    pub fn period_purchases(
        &self,
        goods_id: &str,
        n: u64,
        query: &PageQuery<'_>,
    ) -> Call<PeriodRecords> {
        let path = format!("/api/lottery/{goods_id}/periods/{n}/purchases");
        Call::new(self.http.get(self.url(&path)).query(query))
    }

    /// `POST /api/lottery/:goods_id/shares`: buys `count` shares, with an
    /// `idempotency-key` when one is given.
    pub fn buy_shares(
        &self,
        token: &str,
        goods_id: &str,
        count: i64,
        idempotency_key: Option<&str>,
    ) -> Call<PurchaseBody> {
        let call = self
            .call(Method::POST, &format!("/api/lottery/{goods_id}/shares"))
            .bearer(token)
            .json(&serde_json::json!({"count": count}));
        match idempotency_key {
            Some(key) => call.header("idempotency-key", key),
            None => call,
        }
    }

    /// `GET /api/me/lottery`.
    pub fn my_lottery(&self, token: &str, query: &LotteryQuery<'_>) -> Call<PurchasePage> {
        Call::new(self.http.get(self.url("/api/me/lottery")).query(query)).bearer(token)
    }

    /// Signs `phone` in: asks for a code (202), reads it from `sink` (which
    /// the app must use as its SMS gateway), logs in with it (200).
    pub async fn try_sign_in(&self, sink: &SmsSink, phone: &str) -> Result<Session, Failure> {
        self.send_code(phone).try_send().await?.try_expect(202)?;
        let code = sink
            .last_code(phone)
            .ok_or_else(|| Failure::NoCode(phone.to_string()))?;
        self.login(phone, &code).try_send().await?.try_expect(200)
    }

    /// [`Client::try_sign_in`], panicking when it fails.
    pub async fn sign_in(&self, sink: &SmsSink, phone: &str) -> Session {
        self.try_sign_in(sink, phone)
            .await
            .unwrap_or_else(|e| panic!("signing {phone} in: {e}"))
    }

    /// Signs every phone in, `at_once` at a time; the sessions come in the
    /// order of `phones`.
    pub async fn try_sign_in_all(
        &self,
        sink: &SmsSink,
        phones: &[String],
        at_once: usize,
    ) -> Result<Vec<Session>, Failure> {
        let mut sessions = Vec::with_capacity(phones.len());
        for chunk in phones.chunks(at_once.max(1)) {
            let logins = chunk.iter().map(|phone| self.try_sign_in(sink, phone));
            for session in futures::future::join_all(logins).await {
                sessions.push(session?);
            }
        }
        Ok(sessions)
    }

    /// [`Client::try_sign_in_all`], panicking when one fails.
    pub async fn sign_in_all(
        &self,
        sink: &SmsSink,
        phones: &[String],
        at_once: usize,
    ) -> Vec<Session> {
        self.try_sign_in_all(sink, phones, at_once)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }
}
