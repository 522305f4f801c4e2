//! The request gate: every endpoint's first (often only extra) Redis round
//! trip. One script (`scripts/gate.lua`) finds the caller's session, slides
//! its expiry, and applies the endpoint's limits: per user (purchase
//! endpoints), per client IP and global.

use crate::client_ip::ClientIp;
use crate::config::RateLimits;
use crate::error::ApiError;
use crate::keys;
use crate::ratelimit::{Limit, LimitState, Scope, Verdict};
use crate::redis::{Arg, Redis};
use crate::script::{ReplyReader, script};
use crate::session::{SessionSettings, SessionToken};

script!(GATE, "gate", ["gcra.lua", "gate.lua"]);

/// Who may call an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone; a valid token is still recognised and slid.
    Public,
    /// A signed-in user.
    User,
    /// A signed-in user, also limited per user (`rate_limit_user`).
    UserLimited,
}

/// What the gate needs to know about a request.
#[derive(Debug)]
pub struct GateRequest<'a> {
    /// The endpoint's name; limits are counted per endpoint.
    pub endpoint: &'static str,
    pub access: Access,
    pub token: Option<&'a SessionToken>,
    pub ip: Option<ClientIp>,
    pub limits: RateLimits,
    pub session: SessionSettings,
}

/// The signed-in caller, as the gate found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionUser {
    pub id: u64,
    pub phone: String,
    pub nickname: String,
}

/// A request the gate let through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passed {
    pub user: Option<SessionUser>,
    /// Where the limits stand, for the `ratelimit` headers.
    pub verdict: Verdict,
}

/// Runs the gate: `Err(RateLimited)` when a limit refuses,
/// `Err(Unauthorized)` when the endpoint needs a user and there is none.
pub fn pass(redis: &mut impl Redis, req: &GateRequest<'_>) -> Result<Passed, ApiError> {
    let mut shared = vec![Limit::global(req.endpoint, req.limits.global)];
    if let Some(ip) = &req.ip {
        shared.insert(0, Limit::per_ip(req.endpoint, ip, req.limits.ip));
    }
    let session_key = req
        .token
        .map(SessionToken::redis_key)
        .unwrap_or_else(|| keys::session("none"));
    let mut keys: Vec<&str> = vec![&session_key];
    keys.extend(shared.iter().map(|l| l.key.as_str()));

    let user_prefix = match req.access {
        Access::UserLimited => keys::rate_limit(req.endpoint, "u:"),
        _ => String::new(),
    };
    let mut args = vec![
        Arg::Int(i64::from(req.token.is_some())),
        Arg::Int(i64::from(req.session.idle_secs) * 1000),
        Arg::Int(i64::from(req.session.max_secs) * 1000),
        Arg::from(user_prefix.as_str()),
        Arg::Int(i64::from(req.limits.user.quota.get())),
        Arg::Int(i64::from(req.limits.user.window_secs.get()) * 1000),
    ];
    for limit in &shared {
        args.push(Arg::Int(i64::from(limit.rate.quota.get())));
        args.push(Arg::Int(i64::from(limit.rate.window_secs.get()) * 1000));
    }

    let reply = GATE.run(redis, &keys, &args)?;
    let mut reader = ReplyReader::new(&GATE, reply);
    let uid = reader.int()?;
    let phone = reader.string()?;
    let nickname = reader.string()?;
    let user = (uid > 0).then_some(SessionUser {
        id: uid as u64,
        phone,
        nickname,
    });
    let mut applied = Vec::with_capacity(shared.len() + 1);
    if let Some(user) = &user
        && req.access == Access::UserLimited
    {
        applied.push(Limit::per_user(req.endpoint, user.id, req.limits.user));
    }
    applied.extend(shared);
    let verdict = crate::ratelimit::read_verdict(&mut reader, &applied)?;

    // Limits first: a client hammering without a valid token is slowed
    // down like anyone else rather than told 401 for ever.
    if !verdict.allowed {
        return Err(ApiError::RateLimited(verdict));
    }
    if user.is_none() && req.access != Access::Public {
        return Err(ApiError::Unauthorized);
    }
    Ok(Passed { user, verdict })
}

impl Passed {
    /// The state of the limit of `scope`, if it applied.
    pub fn limit(&self, scope: Scope) -> Option<&LimitState> {
        self.verdict.states.iter().find(|s| s.scope == scope)
    }
}
