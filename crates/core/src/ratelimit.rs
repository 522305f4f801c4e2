//! Rate limits: parsing `N/S` settings, naming limiter keys per endpoint,
//! reading the states the scripts report (GCRA, `scripts/gcra.lua`, run
//! inside the gate and the login scripts) and describing them in the IETF
//! RateLimit header fields.
//!
//! Why GCRA: a limit of N per S lets a burst of N through and then refills
//! continuously, one request every S/N, so there is no window edge at which
//! 2N requests can pass (fixed windows) and no estimate (sliding-window
//! counters); it is exact, needs one small key per limit, and that key
//! expires by itself once the limit is full again.

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;

use crate::ids::UserId;
use crate::keys;
use crate::redis::RedisError;
use crate::script::ReplyReader;
use crate::shard::{Shard, Shards};

/// The endpoints, as their limits are counted: each has its own per-IP and
/// global budget (and per-user one where it has one). Also the limiter's
/// name in its Redis key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// The health check, which applies no limits.
    Health,
    SendCode,
    Login,
    Refresh,
    Account,
    Catalog,
    Admin,
    BuyVoucher,
    BuyLotteryShares,
    /// The payment webhook, which applies no limits: the provider calls it,
    /// and a call without a valid signature costs Redis nothing.
    Payments,
}

impl Endpoint {
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Health => "health",
            Endpoint::SendCode => "send-code",
            Endpoint::Login => "login",
            Endpoint::Refresh => "refresh",
            Endpoint::Account => "account",
            Endpoint::Catalog => "catalog",
            Endpoint::Admin => "admin",
            Endpoint::BuyVoucher => "buy-voucher",
            Endpoint::BuyLotteryShares => "buy-lottery-shares",
            Endpoint::Payments => "payments",
        }
    }

    /// The key of one of this endpoint's limiters in `shard`; `subject` is
    /// `all`, `ip:<address>`, `u:<user id>`...
    pub fn limiter_key(self, shard: Shard, subject: &str) -> String {
        keys::rate_limit(shard, self.name(), subject)
    }
}

/// `quota` requests per `window_secs` seconds, written `N/S`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub quota: NonZeroU32,
    pub window_secs: NonZeroU32,
}

impl Rate {
    pub fn new(quota: u32, window_secs: u32) -> Option<Self> {
        Some(Self {
            quota: NonZeroU32::new(quota)?,
            window_secs: NonZeroU32::new(window_secs)?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidRate(pub String);

impl fmt::Display for InvalidRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` is not a rate: write N/S, e.g. 50/1", self.0)
    }
}

impl FromStr for Rate {
    type Err = InvalidRate;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidRate(s.to_string());
        let (n, secs) = s.trim().split_once('/').ok_or_else(invalid)?;
        let n: u32 = n.trim().parse().map_err(|_| invalid())?;
        let secs: u32 = secs.trim().parse().map_err(|_| invalid())?;
        // A day is the longest window anyone needs; it also keeps the
        // script's microsecond arithmetic far from float precision limits.
        if secs > 86_400 {
            return Err(invalid());
        }
        Rate::new(n, secs).ok_or_else(invalid)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.quota, self.window_secs)
    }
}

/// Which clients a limit counts together; also its policy name in headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    User,
    Ip,
    Global,
    /// Login codes per phone per day.
    PhoneDay,
    /// Login codes per client IP per hour.
    IpHour,
}

impl Scope {
    pub fn name(self) -> &'static str {
        match self {
            Scope::User => "user",
            Scope::Ip => "ip",
            Scope::Global => "global",
            Scope::PhoneDay => "phone-day",
            Scope::IpHour => "ip-hour",
        }
    }
}

/// One limit to check: its scope, its Redis key and its rate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    pub scope: Scope,
    pub key: String,
    pub rate: Rate,
}

impl Limit {
    pub fn per_ip(
        endpoint: Endpoint,
        shard: Shard,
        ip: &crate::client_ip::ClientIp,
        rate: Rate,
    ) -> Self {
        Self {
            scope: Scope::Ip,
            key: endpoint.limiter_key(shard, &format!("ip:{}", ip.limit_key())),
            rate,
        }
    }

    /// Shard `shard`'s part of the endpoint's global limit: each of the K
    /// shards holds 1/K of the quota (rounded up, so never none) over the
    /// same window. Together they admit at most quota + K - 1 requests per
    /// window; when the requests are spread unevenly over the shards, the
    /// shards in use refuse once their parts are spent, so a load that
    /// reaches only m of the K shards gets about m/K of the quota.
    pub fn global(endpoint: Endpoint, shard: Shard, shards: Shards, rate: Rate) -> Self {
        let part = rate.quota.get().div_ceil(u32::from(shards.count()));
        Self {
            scope: Scope::Global,
            key: endpoint.limiter_key(shard, "all"),
            rate: Rate::new(part, rate.window_secs.get()).expect("a quota of 1 or more"),
        }
    }

    pub fn per_user(endpoint: Endpoint, shard: Shard, user_id: UserId, rate: Rate) -> Self {
        Self {
            scope: Scope::User,
            key: endpoint.limiter_key(shard, &format!("{}{user_id}", Self::USER_SUBJECT)),
            rate,
        }
    }

    /// What precedes the user id in a per-user limiter's subject.
    pub const USER_SUBJECT: &str = "u:";

    /// The quota and window (ms) of each of `limits`, as scripts take them.
    pub fn script_args(limits: &[Limit]) -> Vec<crate::redis::Arg<'static>> {
        let mut args = Vec::with_capacity(limits.len() * 2);
        for limit in limits {
            args.push(crate::redis::Arg::Int(i64::from(limit.rate.quota.get())));
            args.push(crate::redis::Arg::Int(
                i64::from(limit.rate.window_secs.get()) * 1000,
            ));
        }
        args
    }
}

/// Where one limit stands after a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitState {
    pub scope: Scope,
    pub rate: Rate,
    /// Requests still allowed right now.
    pub remaining: u32,
    /// Milliseconds until the limit is full again.
    pub reset_ms: u64,
}

/// The outcome of checking a set of limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    /// When refused: milliseconds until the request would be allowed.
    pub retry_after_ms: u64,
    pub states: Vec<LimitState>,
}

impl Verdict {
    /// A verdict with no limits: allowed, nothing to report.
    pub fn unlimited() -> Self {
        Self {
            allowed: true,
            retry_after_ms: 0,
            states: Vec::new(),
        }
    }

    /// Seconds for `retry-after`, rounded up and at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after_ms.div_ceil(1000).max(1)
    }

    /// `ratelimit-policy`: every limit that applied, e.g.
    /// `"ip";q=50;w=1, "global";q=10000;w=1`.
    pub fn policy_header(&self) -> Option<String> {
        if self.states.is_empty() {
            return None;
        }
        let items: Vec<String> = self
            .states
            .iter()
            .map(|s| {
                format!(
                    "\"{}\";q={};w={}",
                    s.scope.name(),
                    s.rate.quota,
                    s.rate.window_secs
                )
            })
            .collect();
        Some(items.join(", "))
    }

    /// `ratelimit`: the limit closest to refusing, e.g. `"ip";r=49;t=1`.
    pub fn ratelimit_header(&self) -> Option<String> {
        let tightest = self
            .states
            .iter()
            .min_by_key(|s| (s.remaining, std::cmp::Reverse(s.reset_ms)))?;
        Some(format!(
            "\"{}\";r={};t={}",
            tightest.scope.name(),
            tightest.remaining,
            tightest.reset_ms.div_ceil(1000)
        ))
    }
}

impl Verdict {
    /// The verdict a script reported: whether it allowed the request, the
    /// wait if not, and in `states` (the end of its reply) where each of
    /// `limits` stands.
    pub(crate) fn from_reply(
        allowed: bool,
        retry_after_ms: i64,
        states: ReplyReader,
        limits: &[Limit],
    ) -> Result<Self, RedisError> {
        Ok(Verdict {
            allowed,
            retry_after_ms: retry_after_ms.max(0) as u64,
            states: read_states(states, limits)?,
        })
    }
}

/// Applies `limits` (all in one shard) on their own, in one round trip:
/// for a request whose action runs in another shard (`scripts/limit.lua`).
pub async fn check(
    redis: &mut impl crate::redis::Redis,
    limits: &[Limit],
) -> Result<Verdict, RedisError> {
    use crate::scripts::limit;
    let keys: Vec<&str> = limits.iter().map(|l| l.key.as_str()).collect();
    let args = Limit::script_args(limits);
    let reply = limit::run(
        redis,
        &limit::Keys { limiters: &keys },
        &limit::Args { limits: &args },
    )
    .await?;
    Verdict::from_reply(reply.allowed, reply.retry_after_ms, reply.states, limits)
}

/// Reads `(remaining, reset_ms)` for each of `limits`.
/// The reader must then be at its end.
fn read_states(mut reader: ReplyReader, limits: &[Limit]) -> Result<Vec<LimitState>, RedisError> {
    let mut states = Vec::with_capacity(limits.len());
    for limit in limits {
        let remaining = reader.int()?.clamp(0, i64::from(u32::MAX)) as u32;
        let reset_ms = reader.int()?.max(0) as u64;
        states.push(LimitState {
            scope: limit.scope,
            rate: limit.rate,
            remaining,
            reset_ms,
        });
    }
    reader.finish()?;
    Ok(states)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rates() {
        assert_eq!("50/1".parse::<Rate>().unwrap(), Rate::new(50, 1).unwrap());
        assert_eq!(" 1 / 5 ".parse::<Rate>().unwrap(), Rate::new(1, 5).unwrap());
        for bad in ["", "5", "0/1", "1/0", "-1/5", "a/b", "1/86401", "1/5/2"] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
    }

    #[test]
    fn headers_describe_the_tightest_limit() {
        let rate = |q, w| Rate::new(q, w).unwrap();
        let verdict = Verdict {
            allowed: true,
            retry_after_ms: 0,
            states: vec![
                LimitState {
                    scope: Scope::Ip,
                    rate: rate(50, 1),
                    remaining: 49,
                    reset_ms: 20,
                },
                LimitState {
                    scope: Scope::Global,
                    rate: rate(10000, 1),
                    remaining: 9000,
                    reset_ms: 100,
                },
            ],
        };
        assert_eq!(
            verdict.policy_header().unwrap(),
            "\"ip\";q=50;w=1, \"global\";q=10000;w=1"
        );
        assert_eq!(verdict.ratelimit_header().unwrap(), "\"ip\";r=49;t=1");
        assert_eq!(Verdict::unlimited().ratelimit_header(), None);
    }

    #[test]
    fn retry_after_rounds_up() {
        let mut v = Verdict::unlimited();
        v.retry_after_ms = 1;
        assert_eq!(v.retry_after_secs(), 1);
        v.retry_after_ms = 4001;
        assert_eq!(v.retry_after_secs(), 5);
    }
}
