//! The shape of every endpoint. A component lists its routes with
//! [`component!`](crate::component); each route is a type implementing
//! [`Route`], which says only what differs between endpoints: its path and
//! method, whose limits it counts against, who may call it, how a request
//! becomes its input, and the action. Everything else happens here, once,
//! in this order:
//!
//! 1. the body is read (at most 16 KiB) and the route picked by the pattern
//!    Spin matched; a pattern the component does not list is 404;
//! 2. a wrong method is 405, then the input is parsed, so bad input costs
//!    Redis nothing;
//! 3. the caller is admitted (the gate's one round trip, see
//!    [`flashspin_core::gate`]): a route whose caller is `SignedIn` gets a
//!    user, never a maybe;
//! 4. the action runs, and its reply or error becomes the response, with
//!    the RateLimit fields of the limits that applied.

use flashspin_core::ApiError;
use flashspin_core::admin::authorize;
use flashspin_core::client_ip::ClientIp;
use flashspin_core::config::{read, trusted_proxies};
use flashspin_core::gate::{self, Admitted, Anyone, Buyer, Caller, GateRequest, Reader, SignedIn};
use flashspin_core::ratelimit::{Endpoint, Verdict};
use flashspin_core::session::{SessionSettings, SessionToken};
use flashspin_core::shard::Shards;
use serde_json::Value;

use crate::http::{Response, add_ratelimit_headers, error, json};
use crate::redis::SpinRedis;
use crate::request::ApiRequest;
use crate::variables::SpinVariables;

/// One route of a component.
pub trait Route {
    /// The route's pattern in `spin.toml`, as Spin reports it in
    /// `spin-component-route`.
    const PATH: &'static str;
    /// The one method the route answers, e.g. `"POST"`.
    const METHOD: &'static str;
    /// Whose limits requests count against.
    const ENDPOINT: Endpoint;
    /// Who may call, and what the action learns about them.
    type Caller: Admission;
    /// The request, parsed.
    type Input;

    /// Reads what the action needs from the request, refusing bad input.
    fn parse(req: &ApiRequest) -> Result<Self::Input, ApiError>;

    /// The action.
    #[allow(async_fn_in_trait)] // Wasm is single-threaded: no `Send` to promise.
    async fn run(call: &mut Call<'_, Self::Caller>, input: Self::Input) -> Result<Reply, ApiError>;
}

/// What an action is given besides its input.
pub struct Call<'r, C> {
    pub caller: C,
    /// Redis's clock when the gate ran, ms (0 for routes without a gate).
    now_ms: i64,
    req: &'r ApiRequest,
    redis: Option<SpinRedis>,
}

impl<C: Gated> Call<'_, C> {
    /// Redis's clock when the gate ran, in ms: the time the rules go by
    /// (sale windows, statuses), the same for every component.
    pub fn now_ms(&self) -> i64 {
        self.now_ms
    }
}

impl<C> Call<'_, C> {
    /// The request's Redis connection, opened on first use.
    pub async fn redis(&mut self) -> Result<&mut SpinRedis, ApiError> {
        if self.redis.is_none() {
            self.redis = Some(SpinRedis::connect().await?);
        }
        Ok(self.redis.as_mut().expect("just connected"))
    }

    /// The request's body, for routes that judge it after admission.
    pub fn body(&self) -> &[u8] {
        &self.req.body
    }

    /// The client's address, as the per-IP limits count it.
    pub fn client_ip(&self) -> Result<Option<ClientIp>, ApiError> {
        Ok(self.req.client_ip(trusted_proxies(&SpinVariables)?))
    }

    /// How many shards the gate's keys are split over (`redis_shards`).
    pub fn shards(&self) -> Result<Shards, ApiError> {
        Shards::from_vars(&SpinVariables)
    }
}

/// A successful answer: status, JSON body, extra headers, and for routes
/// that apply their own limits (login), the verdict to report.
pub struct Reply {
    status: u16,
    body: Option<Value>,
    headers: Vec<(&'static str, String)>,
    verdict: Option<Verdict>,
}

impl Reply {
    pub fn new(status: u16, body: Value) -> Self {
        Self {
            status,
            body: Some(body),
            headers: Vec::new(),
            verdict: None,
        }
    }

    pub fn ok(body: Value) -> Self {
        Self::new(200, body)
    }

    pub fn created(body: Value) -> Self {
        Self::new(201, body)
    }

    pub fn no_content() -> Self {
        Self {
            status: 204,
            body: None,
            headers: Vec::new(),
            verdict: None,
        }
    }

    pub fn header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    /// The limits this reply reports, for routes that check their own.
    pub fn verdict(mut self, verdict: Verdict) -> Self {
        self.verdict = Some(verdict);
        self
    }

    fn into_response(self, gate_verdict: Option<&Verdict>) -> Response {
        let mut response = match &self.body {
            Some(body) => json(self.status, body),
            None => Response::empty(self.status),
        };
        for (name, value) in self.headers {
            response.set_header(name, value);
        }
        if let Some(verdict) = self.verdict.as_ref().or(gate_verdict) {
            add_ratelimit_headers(&mut response, verdict);
        }
        response
    }
}

/// How a caller is admitted: the gate for the core's [`Caller`]s,
/// nothing for [`Ungated`] routes.
pub trait Admission: Sized {
    /// Admits the request, returning the caller, the limits that applied
    /// and Redis's clock (ms), or refuses it.
    #[allow(async_fn_in_trait)] // Wasm is single-threaded: no `Send` to promise.
    async fn admit(
        req: &ApiRequest,
        endpoint: Endpoint,
        redis: &mut Option<SpinRedis>,
    ) -> Result<(Self, Option<Verdict>, Option<i64>), ApiError>;
}

/// Callers admitted through the gate, which read Redis's clock.
pub trait Gated: Admission {}

/// A shop operator: anyone the limits let through who also presents the
/// `admin_key` (`Authorization: Bearer <key>`, compared in constant time).
/// The key is checked after the limits, so guessing it is slowed down like
/// anything else; a route's body should be judged after it, in `run`.
pub struct Operator;

impl Admission for Operator {
    async fn admit(
        req: &ApiRequest,
        endpoint: Endpoint,
        redis: &mut Option<SpinRedis>,
    ) -> Result<(Self, Option<Verdict>, Option<i64>), ApiError> {
        // No session to look for: the Authorization header carries the
        // admin key, which must not reach Redis even as a hash.
        let (_, verdict, now_ms) = gate_with::<Anyone>(req, endpoint, redis, None).await?;
        let admin_key: String = read(&SpinVariables, "admin_key")?;
        authorize(&admin_key, req.header("authorization"))?;
        Ok((Operator, verdict, now_ms))
    }
}

impl Gated for Operator {}

/// A route that runs no gate: it applies its own limits in its one
/// script (login, sending codes) or touches no data (health).
pub struct Ungated;

impl Admission for Ungated {
    async fn admit(
        _: &ApiRequest,
        _: Endpoint,
        _: &mut Option<SpinRedis>,
    ) -> Result<(Self, Option<Verdict>, Option<i64>), ApiError> {
        Ok((Ungated, None, None))
    }
}

async fn through_gate<C: Caller>(
    req: &ApiRequest,
    endpoint: Endpoint,
    redis: &mut Option<SpinRedis>,
) -> Result<(C, Option<Verdict>, Option<i64>), ApiError> {
    gate_with(req, endpoint, redis, req.token()).await
}

/// The gate for `req` with `token` as the caller's session token.
async fn gate_with<C: Caller>(
    req: &ApiRequest,
    endpoint: Endpoint,
    redis: &mut Option<SpinRedis>,
    token: Option<SessionToken>,
) -> Result<(C, Option<Verdict>, Option<i64>), ApiError> {
    gate::require_token(C::ACCESS, token.as_ref())?;
    let vars = SpinVariables;
    let request = GateRequest {
        endpoint,
        token: token.as_ref(),
        ip: req.client_ip(trusted_proxies(&vars)?),
        limits: GateRequest::limits_for(C::ACCESS, &vars)?,
        session: SessionSettings::from_vars(&vars)?,
        shards: Shards::from_vars(&vars)?,
    };
    let connection = redis.insert(SpinRedis::connect().await?);
    let Admitted {
        caller,
        verdict,
        now_ms,
    } = gate::admit::<C>(connection, &request, &vars).await?;
    Ok((caller, Some(verdict), Some(now_ms)))
}

macro_rules! gated {
    ($($caller:ty),+) => {$(
        impl Admission for $caller {
            async fn admit(
                req: &ApiRequest,
                endpoint: Endpoint,
                redis: &mut Option<SpinRedis>,
            ) -> Result<(Self, Option<Verdict>, Option<i64>), ApiError> {
                through_gate(req, endpoint, redis).await
            }
        }
    )+};
}
gated!(Anyone, SignedIn, Reader, Buyer);
impl Gated for Anyone {}
impl Gated for SignedIn {}
impl Gated for Reader {}
impl Gated for Buyer {}

/// Serves one request with route `R`, once the route is picked.
pub async fn serve_route<R: Route>(req: &ApiRequest) -> Response {
    let mut gate_verdict = None;
    let outcome = run_route::<R>(req, &mut gate_verdict).await;
    respond(outcome, gate_verdict)
}

/// The route's own steps; kept small, since each route has its copy.
async fn run_route<R: Route>(
    req: &ApiRequest,
    gate_verdict: &mut Option<Verdict>,
) -> Result<Reply, ApiError> {
    req.expect_method(R::METHOD)?;
    let input = R::parse(req)?;
    let mut redis = None;
    let (caller, verdict, now_ms) = R::Caller::admit(req, R::ENDPOINT, &mut redis).await?;
    *gate_verdict = verdict;
    let mut call = Call {
        caller,
        now_ms: now_ms.unwrap_or(0),
        req,
        redis,
    };
    R::run(&mut call, input).await
}

/// The response for a route's outcome. A refusal after the gate still
/// reports where the limits stand.
#[inline(never)]
fn respond(outcome: Result<Reply, ApiError>, gate_verdict: Option<Verdict>) -> Response {
    match outcome {
        Ok(reply) => reply.into_response(gate_verdict.as_ref()),
        Err(e) => {
            let mut response = error(&e);
            if let (Some(verdict), false) = (&gate_verdict, matches!(e, ApiError::RateLimited(_))) {
                add_ratelimit_headers(&mut response, verdict);
            }
            response
        }
    }
}

/// Reads a request for the [`component!`](crate::component) macro, which
/// then picks the route by the pattern Spin matched; a request that cannot
/// be read is answered here.
/// `component` is the component's id in the manifests (its package name).
pub async fn read_request(
    req: crate::sdk::SdkRequest,
    component: &str,
) -> Result<ApiRequest, Response> {
    crate::variables::prepare(component).await;
    ApiRequest::read(req).await.map_err(|e| error(&e))
}

/// A component's HTTP handler for its routes: `component!(Orders, Me)`.
/// A pattern that none of them has is 404.
#[macro_export]
macro_rules! component {
    ($($route:ty),+ $(,)?) => {
        async fn __flashspin_serve(req: $crate::sdk::SdkRequest) -> $crate::http::Response {
            let req = match $crate::route::read_request(req, env!("CARGO_PKG_NAME")).await {
                Ok(req) => req,
                Err(response) => return response,
            };
            let pattern = req.route();
            $(
                if pattern == <$route as $crate::route::Route>::PATH {
                    return $crate::route::serve_route::<$route>(&req).await;
                }
            )+
            $crate::http::not_found()
        }
        $crate::__http_entry!(__flashspin_serve);
    };
}
