//! The request gate: every endpoint's first (often only extra) Redis round
//! trip. One script (`scripts/gate.lua`) finds the caller's session, slides
//! its expiry, and applies the endpoint's limits: per user (purchase
//! endpoints), per client IP and global.

use crate::client_ip::ClientIp;
use crate::config::RateLimits;
use crate::error::ApiError;
use crate::keys;
use crate::ratelimit::{Limit, Verdict};
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
    /// A signed-in user reading their own records, limited per user by the
    /// rate in `limits.user` (`rate_limit_user_reads`).
    UserReads,
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
    /// Allocate a number from today's order sequence.
    pub allocate_sequence: bool,
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
    /// Redis's clock when the gate ran, seconds since the Unix epoch.
    pub unix_secs: u64,
    /// The order sequence number allocated, when asked for one.
    pub sequence: Option<u32>,
}

/// A route that needs a user refuses a request without a token at once,
/// before any Redis work: an anonymous flood then costs Redis nothing and
/// cannot use up the endpoint's global budget.
pub fn require_token(access: Access, token: Option<&SessionToken>) -> Result<(), ApiError> {
    match (access, token) {
        (Access::User | Access::UserLimited | Access::UserReads, None) => {
            Err(ApiError::Unauthorized)
        }
        _ => Ok(()),
    }
}

/// Runs the gate: `Err(RateLimited)` when a limit refuses,
/// `Err(Unauthorized)` when the endpoint needs a user and there is none.
/// A token that finds no session is counted against the caller's IP only.
pub fn pass(redis: &mut impl Redis, req: &GateRequest<'_>) -> Result<Passed, ApiError> {
    require_token(req.access, req.token)?;
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
        Access::UserLimited | Access::UserReads => keys::rate_limit(req.endpoint, "u:"),
        _ => String::new(),
    };
    let mut args = vec![
        Arg::Int(i64::from(req.token.is_some())),
        Arg::Int(i64::from(req.session.idle_secs) * 1000),
        Arg::Int(i64::from(req.session.max_secs) * 1000),
        Arg::from(user_prefix.as_str()),
        Arg::Int(i64::from(req.limits.user.quota.get())),
        Arg::Int(i64::from(req.limits.user.window_secs.get()) * 1000),
        Arg::Int(i64::from(req.allocate_sequence)),
        Arg::Int(i64::from(req.access != Access::Public)),
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
    let allowed_flag = reader.int()?;
    let retry_after_ms = reader.int()?;
    let unix_secs = reader.int()?.max(0) as u64;
    let sequence = u32::try_from(reader.int()?).ok().filter(|s| *s > 0);
    let user = (uid > 0).then_some(SessionUser {
        id: uid as u64,
        phone,
        nickname,
    });
    let mut applied = Vec::with_capacity(shared.len() + 1);
    if let Some(user) = &user
        && matches!(req.access, Access::UserLimited | Access::UserReads)
    {
        applied.push(Limit::per_user(req.endpoint, user.id, req.limits.user));
    }
    applied.extend(shared);
    if user.is_none() && req.access != Access::Public && applied.len() > 1 {
        // The script left the global limit out (ARGV[8]); it is last. With
        // no client address it is the only limit, and stays.
        applied.pop();
    }
    let verdict = Verdict {
        allowed: allowed_flag == 1,
        retry_after_ms: retry_after_ms.max(0) as u64,
        states: crate::ratelimit::read_states(&mut reader, &applied)?,
    };

    // Limits first: a client hammering without a valid token is slowed
    // down like anyone else rather than told 401 for ever.
    if !verdict.allowed {
        return Err(ApiError::RateLimited(verdict));
    }
    if user.is_none() && req.access != Access::Public {
        return Err(ApiError::Unauthorized);
    }
    if req.allocate_sequence && sequence.is_none() {
        return Err(ApiError::Internal(
            "script gate: allocated no order sequence number".into(),
        ));
    }
    Ok(Passed {
        user,
        verdict,
        unix_secs,
        sequence,
    })
}
