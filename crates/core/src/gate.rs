//! The request gate: every endpoint's first (often only extra) Redis round
//! trip. One script (`scripts/gate.lua`) finds the caller's session, slides
//! its expiry, and applies the endpoint's limits: per user (purchases and
//! a user's own lists), per client IP and global.
//!
//! What a route needs to know about its caller is a type, a [`Caller`]:
//! [`Anyone`], [`SignedIn`], [`Reader`] or [`Buyer`]. The gate admits a
//! request as that type or refuses it, so a handler that takes a
//! `SignedIn` has a user and never checks for one.
//!
//! The script runs in one of the gate's shards (`shard.rs`): the one the
//! session token names, which is its user's, or without a token the
//! client address's. So a request's limiters live in its shard: a
//! client's per-IP limit is counted per shard (one address signed in as
//! users of m shards gets m times the limit), and the global limit is
//! split into one part per shard (`Limit::global`).

use crate::client_ip::ClientIp;
use crate::config::{RateLimits, Variables, read};
use crate::error::ApiError;
use crate::ids::{IdKey, OrderId, UserId};
use crate::keys;
use crate::ratelimit::{Endpoint, Limit, Verdict};
use crate::redis::Redis;
use crate::scripts::gate;
use crate::session::{SessionSettings, SessionToken};
use crate::shard::{Shard, Shards};

/// Who may call an endpoint, and what the gate does for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone; a valid token is still recognised and slid.
    Public,
    /// A signed-in user.
    User,
    /// A signed-in user reading their own records, limited per user by
    /// `rate_limit_user_reads`, since such a read costs Redis more than a
    /// purchase refusal does.
    Reader,
    /// A signed-in user buying: limited per user by `rate_limit_user`, and
    /// given a number from today's order sequence for the order's id.
    Buyer,
}

impl Access {
    fn needs_user(self) -> bool {
        self != Access::Public
    }

    fn limits_user(self) -> bool {
        matches!(self, Access::Reader | Access::Buyer)
    }
}

/// The signed-in caller, as the gate found them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub phone: String,
    pub nickname: String,
    /// The user's shard, where their lists and limiters live.
    pub home: Shard,
}

/// What the gate needs to know about a request.
#[derive(Debug)]
pub struct GateRequest<'a> {
    pub endpoint: Endpoint,
    pub token: Option<&'a SessionToken>,
    pub ip: Option<ClientIp>,
    pub limits: RateLimits,
    pub session: SessionSettings,
    pub shards: Shards,
}

impl GateRequest<'_> {
    /// The limits of `access` from the variables: readers are limited per
    /// user by `rate_limit_user_reads` instead of `rate_limit_user`.
    pub fn limits_for(access: Access, vars: &impl Variables) -> Result<RateLimits, ApiError> {
        let mut limits = RateLimits::from_vars(vars)?;
        if access == Access::Reader {
            limits.user = read(vars, "rate_limit_user_reads")?;
        }
        Ok(limits)
    }
}

/// What the gate found, before it is made into a [`Caller`].
#[derive(Debug, PartialEq, Eq)]
pub struct Passed {
    pub user: Option<User>,
    /// Where the limits stand, for the `ratelimit` headers.
    pub verdict: Verdict,
    /// Redis's clock when the gate ran, ms since the Unix epoch.
    pub now_ms: i64,
    /// The order sequence number taken for a [`Buyer`], in the user's shard.
    sequence: Option<u32>,
    shards: Shards,
}

/// A request the gate admitted, with its caller as the route needs it.
#[derive(Debug)]
pub struct Admitted<C> {
    pub caller: C,
    pub verdict: Verdict,
    /// Redis's clock when the gate ran, ms since the Unix epoch.
    pub now_ms: i64,
}

/// What a route knows about its caller once the gate admitted the request.
pub trait Caller: Sized {
    const ACCESS: Access;

    /// Takes what the gate found; `vars` for what a caller needs besides
    /// (a buyer's order id key). The gate has already refused a request
    /// without the user an access level needs, so a missing one here is a
    /// bug, not a client error.
    fn admit(passed: &mut Passed, vars: &impl Variables) -> Result<Self, ApiError>;
}

/// Anyone; the user when the request carried a valid token.
#[derive(Debug)]
pub struct Anyone {
    pub user: Option<User>,
}

/// A signed-in user.
#[derive(Debug)]
pub struct SignedIn(pub User);

/// A signed-in user reading their own records.
#[derive(Debug)]
pub struct Reader(pub User);

/// A signed-in user buying, with the id their order will have.
#[derive(Debug)]
pub struct Buyer {
    pub user: User,
    pub order_id: OrderId,
}

fn admitted_user(passed: &mut Passed) -> Result<User, ApiError> {
    passed
        .user
        .take()
        .ok_or_else(|| ApiError::Internal("gate admitted a request without a user".into()))
}

impl Caller for Anyone {
    const ACCESS: Access = Access::Public;
    fn admit(passed: &mut Passed, _: &impl Variables) -> Result<Self, ApiError> {
        Ok(Anyone {
            user: passed.user.take(),
        })
    }
}

impl Caller for SignedIn {
    const ACCESS: Access = Access::User;
    fn admit(passed: &mut Passed, _: &impl Variables) -> Result<Self, ApiError> {
        admitted_user(passed).map(SignedIn)
    }
}

impl Caller for Reader {
    const ACCESS: Access = Access::Reader;
    fn admit(passed: &mut Passed, _: &impl Variables) -> Result<Self, ApiError> {
        admitted_user(passed).map(Reader)
    }
}

impl Caller for Buyer {
    const ACCESS: Access = Access::Buyer;
    fn admit(passed: &mut Passed, vars: &impl Variables) -> Result<Self, ApiError> {
        let user = admitted_user(passed)?;
        let sequence = passed.sequence.ok_or_else(|| {
            ApiError::Internal("script gate: allocated no order sequence number".into())
        })?;
        let key = IdKey::from_secret(&read::<String>(vars, "id_secret")?);
        let unix_secs = passed.now_ms.max(0) as u64 / 1000;
        let order_id = OrderId::new(unix_secs, sequence, user.home, passed.shards, &key)
            .map_err(|e| ApiError::Internal(format!("order id: {e:?}")))?;
        Ok(Buyer { user, order_id })
    }
}

/// A route that needs a user refuses a request without a token at once,
/// before any Redis work: an anonymous flood then costs Redis nothing and
/// cannot use up the endpoint's global budget.
pub fn require_token(access: Access, token: Option<&SessionToken>) -> Result<(), ApiError> {
    if access.needs_user() && token.is_none() {
        return Err(ApiError::Unauthorized);
    }
    Ok(())
}

/// Runs the gate for a route whose callers are `C`: `Err(RateLimited)`
/// when a limit refuses, `Err(Unauthorized)` when the route needs a user
/// and there is none. A token that finds no session is counted against the
/// caller's IP only.
pub async fn admit<C: Caller>(
    redis: &mut impl Redis,
    req: &GateRequest<'_>,
    vars: &impl Variables,
) -> Result<Admitted<C>, ApiError> {
    let mut passed = pass(redis, C::ACCESS, req).await?;
    let caller = C::admit(&mut passed, vars)?;
    Ok(Admitted {
        caller,
        verdict: passed.verdict,
        now_ms: passed.now_ms,
    })
}

/// Runs the gate for `access`; see [`admit`].
pub async fn pass(
    redis: &mut impl Redis,
    access: Access,
    req: &GateRequest<'_>,
) -> Result<Passed, ApiError> {
    require_token(access, req.token)?;
    let shards = req.shards;
    let shard = match req.token {
        Some(token) => token.shard(shards),
        None => shards.of_client(req.ip.as_ref()),
    };
    let mut shared = vec![Limit::global(
        req.endpoint,
        shard,
        shards,
        req.limits.global,
    )];
    if let Some(ip) = &req.ip {
        shared.insert(0, Limit::per_ip(req.endpoint, shard, ip, req.limits.ip));
    }
    let session_key = req
        .token
        .map(|t| t.redis_key(shards))
        .unwrap_or_else(|| keys::session(shard, "none"));
    let limiter_keys: Vec<&str> = shared.iter().map(|l| l.key.as_str()).collect();
    let user_limiter = if access.limits_user() {
        req.endpoint.limiter_key(shard, Limit::USER_SUBJECT)
    } else {
        String::new()
    };
    let limit_args = Limit::script_args(&shared);
    let user_prefix = keys::user_prefix(shard);
    let sequence_prefix = keys::order_sequence_prefix(shard);
    let reply = gate::run(
        redis,
        &gate::Keys {
            session: &session_key,
            limiters: &limiter_keys,
        },
        &gate::Args {
            has_token: req.token.is_some(),
            idle_ms: i64::from(req.session.idle_secs) * 1000,
            max_ms: i64::from(req.session.max_secs) * 1000,
            user_prefix: &user_prefix,
            user_limiter: &user_limiter,
            user_quota: i64::from(req.limits.user.quota.get()),
            user_window_ms: i64::from(req.limits.user.window_secs.get()) * 1000,
            allocate_sequence: access == Access::Buyer,
            sequence_prefix: &sequence_prefix,
            needs_user: access.needs_user(),
            limits: &limit_args,
        },
    )
    .await?;
    let user = UserId::new(reply.user_id.max(0) as u64).map(|id| User {
        id,
        phone: reply.phone,
        nickname: reply.nickname,
        home: shard,
    });
    let mut applied = Vec::with_capacity(shared.len() + 1);
    if let Some(user) = &user
        && access.limits_user()
    {
        applied.push(Limit::per_user(
            req.endpoint,
            shard,
            user.id,
            req.limits.user,
        ));
    }
    applied.extend(shared);
    if user.is_none() && access.needs_user() && applied.len() > 1 {
        // The script left the global limit out (needs_user); it is last.
        // With no client address it is the only limit, and stays.
        applied.pop();
    }
    let verdict = Verdict::from_reply(reply.allowed, reply.retry_after_ms, reply.states, &applied)?;

    // Limits first: a client hammering without a valid token is slowed
    // down like anyone else rather than told 401 for ever.
    if !verdict.allowed {
        return Err(ApiError::RateLimited(verdict));
    }
    if user.is_none() && access.needs_user() {
        return Err(ApiError::Unauthorized);
    }
    Ok(Passed {
        user,
        verdict,
        now_ms: reply.now_ms,
        sequence: u32::try_from(reply.sequence).ok().filter(|s| *s > 0),
        shards,
    })
}
