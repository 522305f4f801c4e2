//! Phone login: sending a one-time code and signing in with it.
//!
//! Codes are six digits from the CSPRNG. Redis keeps only a digest of the
//! code, in the code's own key, with a lifetime, an attempt counter and a
//! resend gap; a new code replaces the old one. Every check is one script
//! (`send_code.lua`, `login.lua`), so concurrent requests cannot race past
//! a limit.
//!
//! A phone's code and user id live in the phone's shard, the client's
//! limiters in the client's (`shard.rs`). When the two differ, the client's
//! limits are applied first, in a round trip of their own (`limit.lua`):
//! the per-IP limits then stay exact however many phones a client tries. A
//! request they allow and the phone's script then refuses (a resend too
//! early, a wrong code) has still been counted against the client.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::client_ip::ClientIp;
use crate::config::{RateLimits, Variables, read};
use crate::error::ApiError;
use crate::ids::UserId;
use crate::keys;
use crate::phone::Phone;
use crate::ratelimit;
use crate::ratelimit::{Endpoint, Limit, Rate, Scope, Verdict};
use crate::redis::{Arg, Redis, RedisError};
use crate::scripts::{login as login_script, open_session, send_code as send_code_script};
use crate::session::{SessionSettings, SessionToken, hex};
use crate::shard::{Shard, Shards};

/// A six-digit login code.
#[derive(Clone, PartialEq, Eq)]
pub struct LoginCode(String);

impl LoginCode {
    /// A uniformly random code from the operating system's CSPRNG.
    pub fn generate() -> Self {
        // Rejection sampling keeps every code equally likely.
        const LIMIT: u32 = u32::MAX - u32::MAX % 1_000_000;
        loop {
            let mut b = [0u8; 4];
            getrandom::fill(&mut b).expect("the CSPRNG is available");
            let n = u32::from_le_bytes(b);
            if n < LIMIT {
                return Self(format!("{:06}", n % 1_000_000));
            }
        }
    }

    /// Exactly six ASCII digits; anything else can never be right.
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == 6 && s.bytes().all(|b| b.is_ascii_digit())).then(|| Self(s.to_string()))
    }

    /// Only for the SMS sender: the one place the code leaves the core.
    pub fn reveal(&self) -> &str {
        &self.0
    }

    /// What Redis stores and compares: HMAC-SHA256 of phone and code under
    /// the `code_secret` key. With only a million possible codes a plain
    /// hash could be reversed by anyone who can read Redis; without the key
    /// it cannot.
    fn digest(&self, phone: &Phone, key: &[u8; 32]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
        mac.update(phone.as_str().as_bytes());
        mac.update(b":");
        mac.update(self.0.as_bytes());
        hex(&mac.finalize().into_bytes())
    }
}

// Codes are secrets: never print them.
impl fmt::Debug for LoginCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LoginCode(..)")
    }
}

/// The login settings from the `code_*` variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeSettings {
    pub ttl_secs: u32,
    pub resend_secs: u32,
    /// Wrong codes one client (IP, or IPv6 /64) may give for a code before
    /// it is refused that code; the code stays valid for others.
    pub max_attempts: u32,
    /// Wrong codes all clients together may give before the code is voided
    /// and the phone locked.
    pub max_attempts_per_phone: u32,
    pub daily_per_phone: u32,
    pub hourly_per_ip: u32,
    /// The key code digests are made with, from the `code_secret` variable.
    pub key: [u8; 32],
}

impl CodeSettings {
    pub fn from_vars(vars: &impl Variables) -> Result<Self, ApiError> {
        let settings = Self {
            ttl_secs: read(vars, "code_ttl_secs")?,
            resend_secs: read(vars, "code_resend_secs")?,
            max_attempts: read(vars, "code_max_attempts")?,
            max_attempts_per_phone: read(vars, "code_max_attempts_per_phone")?,
            daily_per_phone: read(vars, "code_daily_limit_per_phone")?,
            hourly_per_ip: read(vars, "code_hourly_limit_per_ip")?,
            key: code_key(&read::<String>(vars, "code_secret")?),
        };
        let zero = [
            ("code_ttl_secs", settings.ttl_secs),
            ("code_resend_secs", settings.resend_secs),
            ("code_max_attempts", settings.max_attempts),
            (
                "code_max_attempts_per_phone",
                settings.max_attempts_per_phone,
            ),
            ("code_daily_limit_per_phone", settings.daily_per_phone),
            ("code_hourly_limit_per_ip", settings.hourly_per_ip),
        ]
        .into_iter()
        .find(|(_, v)| *v == 0);
        match zero {
            Some((name, _)) => Err(ApiError::Internal(format!(
                "variable {name} must be at least 1"
            ))),
            None => Ok(settings),
        }
    }
}

/// The digest key for a `code_secret` (any length, hashed to 32 bytes).
pub fn code_key(secret: &str) -> [u8; 32] {
    Sha256::digest(format!("flashspin login codes:{secret}").as_bytes()).into()
}

/// How long a phone stays locked after too many wrong codes, unless a new
/// code is requested first.
const LOCK_MS: i64 = 24 * 3600 * 1000;

fn shared_limits(
    endpoint: Endpoint,
    shard: Shard,
    shards: Shards,
    ip: Option<&ClientIp>,
    limits: &RateLimits,
) -> Vec<Limit> {
    let mut out = Vec::with_capacity(2);
    if let Some(ip) = ip {
        out.push(Limit::per_ip(endpoint, shard, ip, limits.ip));
    }
    out.push(Limit::global(endpoint, shard, shards, limits.global));
    out
}

/// Where the client's limits are applied: in the phone's script, when the
/// client's shard is the phone's (`Ok` with the limits to give it), or
/// first, on their own (`Ok` with none, once they allowed the request).
/// Returns the verdict of the first step, if there was one.
async fn client_limits_first(
    redis: &mut impl Redis,
    client_limits: Vec<Limit>,
    same_shard: bool,
) -> Result<(Vec<Limit>, Option<Verdict>), ApiError> {
    if same_shard {
        return Ok((client_limits, None));
    }
    let verdict = ratelimit::check(redis, &client_limits).await?;
    if !verdict.allowed {
        return Err(ApiError::RateLimited(verdict));
    }
    Ok((Vec::new(), Some(verdict)))
}

/// A script's verdict with the states of the limits applied before it.
fn with_first(mut verdict: Verdict, first: Option<Verdict>) -> Verdict {
    if let Some(first) = first {
        verdict.states.extend(first.states);
    }
    verdict
}

/// A code stored and ready to send.
#[derive(Debug)]
pub struct CodeSent {
    pub code: LoginCode,
    pub verdict: Verdict,
}

/// Generates and stores a new code for `phone`, unless the resend gap or a
/// cap (per phone per day, per IP per hour, per IP, global) refuses.
pub async fn send_code(
    redis: &mut impl Redis,
    phone: &Phone,
    ip: Option<&ClientIp>,
    settings: &CodeSettings,
    limits: &RateLimits,
    shards: Shards,
) -> Result<CodeSent, ApiError> {
    let code = LoginCode::generate();
    let p = phone.as_str();
    let endpoint = Endpoint::SendCode;
    let home = shards.of_phone(phone);
    let client = shards.of_client(ip);
    let mut client_limits = Vec::with_capacity(3);
    if let Some(ip) = ip {
        client_limits.push(Limit {
            scope: Scope::IpHour,
            key: endpoint.limiter_key(client, &format!("ip-hour:{}", ip.limit_key())),
            rate: Rate::new(settings.hourly_per_ip, 3_600).expect("checked non-zero"),
        });
    }
    client_limits.extend(shared_limits(endpoint, client, shards, ip, limits));
    let (client_limits, first) = client_limits_first(redis, client_limits, client == home).await?;
    let mut all = vec![Limit {
        scope: Scope::PhoneDay,
        key: endpoint.limiter_key(home, &format!("phone-day:{p}")),
        rate: Rate::new(settings.daily_per_phone, 86_400).expect("checked non-zero"),
    }];
    all.extend(client_limits);

    let code_key = keys::login_code(home, p);
    let gap_key = keys::login_code_gap(home, p);
    let lock_key = keys::login_lock(home, p);
    let limiter_keys: Vec<&str> = all.iter().map(|l| l.key.as_str()).collect();
    let digest = code.digest(phone, &settings.key);
    let limit_args = Limit::script_args(&all);
    let reply = send_code_script::run(
        redis,
        &send_code_script::Keys {
            code: &code_key,
            gap: &gap_key,
            lock: &lock_key,
            limiters: &limiter_keys,
        },
        &send_code_script::Args {
            digest: &digest,
            ttl_ms: i64::from(settings.ttl_secs) * 1000,
            gap_ms: i64::from(settings.resend_secs) * 1000,
            limits: &limit_args,
        },
    )
    .await?;
    use send_code_script::Outcome;
    let stored = reply.outcome == Outcome::Stored;
    let verdict = Verdict::from_reply(stored, reply.retry_after_ms, reply.states, &all)?;
    match reply.outcome {
        Outcome::Stored => Ok(CodeSent {
            code,
            verdict: with_first(verdict, first),
        }),
        Outcome::Limited => Err(ApiError::RateLimited(with_first(verdict, first))),
        // The resend gap is not one of the limits and the script did not
        // look at them: reporting their states would claim them spent.
        // `retry-after` alone says when the gap ends.
        Outcome::TooEarly => Err(ApiError::RateLimited(Verdict {
            states: Vec::new(),
            ..verdict
        })),
    }
}

/// Removes the code for `phone` (and its resend gap), after the SMS could
/// not be sent, so the user can ask again at once.
pub async fn withdraw_code(
    redis: &mut impl Redis,
    phone: &Phone,
    shards: Shards,
) -> Result<(), RedisError> {
    let home = shards.of_phone(phone);
    let code = keys::login_code(home, phone.as_str());
    let gap = keys::login_code_gap(home, phone.as_str());
    redis
        .execute("DEL", &[Arg::from(code.as_str()), Arg::from(gap.as_str())])
        .await?;
    Ok(())
}

/// A successful sign-in.
#[derive(Debug)]
pub struct SignedIn {
    pub token: SessionToken,
    pub user_id: UserId,
    pub nickname: String,
    pub verdict: Verdict,
}

/// Checks `code` for `phone` and, when right, opens a session, creating the
/// user on first login.
///
/// Wrong codes are counted per client and per phone: a client that gave
/// `max_attempts` wrong codes is refused (429) until the code is replaced
/// or expires, without the code being compared, while the code stays valid
/// for everyone else; after `max_attempts_per_phone` wrong codes from all
/// clients together the code is voided and the phone refused until a new
/// code is sent. Clients without a known address share one count.
///
/// One round trip when the client's shard is the phone's, one more when
/// not; one more again for a user who lives in another shard than their
/// phone (created before the shard count changed).
#[allow(clippy::too_many_arguments)]
pub async fn login(
    redis: &mut impl Redis,
    phone: &Phone,
    code: &str,
    ip: Option<&ClientIp>,
    settings: &CodeSettings,
    session: &SessionSettings,
    limits: &RateLimits,
    shards: Shards,
) -> Result<SignedIn, ApiError> {
    // A malformed code is checked like a wrong one, so it counts as an attempt.
    let digest = match LoginCode::parse(code) {
        Some(code) => code.digest(phone, &settings.key),
        None => String::from("-"),
    };
    let p = phone.as_str();
    let home = shards.of_phone(phone);
    let client = shards.of_client(ip);
    let client_limits = shared_limits(Endpoint::Login, client, shards, ip, limits);
    let (shared, first) = client_limits_first(redis, client_limits, client == home).await?;
    let token = SessionToken::generate_in(home, shards);
    let code_key = keys::login_code(home, p);
    let lock_key = keys::login_lock(home, p);
    let uid_key = keys::user_id_by_phone(home, p);
    let sequence_key = keys::user_sequence(home);
    let session_key = token.redis_key(shards);
    let user_prefix = keys::user_prefix(home);
    let client_name = ip.map_or_else(|| "unknown".to_string(), ClientIp::limit_key);
    let client_field = keys::login_code_client_field(&client_name);
    let limiter_keys: Vec<&str> = shared.iter().map(|l| l.key.as_str()).collect();
    let nickname = format!("user{}", &p[7..]);
    let limit_args = Limit::script_args(&shared);
    let reply = login_script::run(
        redis,
        &login_script::Keys {
            code: &code_key,
            lock: &lock_key,
            user_id: &uid_key,
            user_sequence: &sequence_key,
            session: &session_key,
            limiters: &limiter_keys,
        },
        &login_script::Args {
            digest: &digest,
            client_field: &client_field,
            max_per_client: i64::from(settings.max_attempts),
            max_per_phone: i64::from(settings.max_attempts_per_phone),
            lock_ms: LOCK_MS,
            phone: p,
            new_nickname: &nickname,
            user_prefix: &user_prefix,
            shard_count: i64::from(shards.count()),
            shard_index: i64::from(home.index()),
            idle_ms: i64::from(session.idle_secs) * 1000,
            limits: &limit_args,
        },
    )
    .await?;
    use login_script::Outcome;
    let signed_in = matches!(reply.outcome, Outcome::SignedIn | Outcome::Elsewhere);
    let verdict = Verdict::from_reply(signed_in, reply.retry_after_ms, reply.states, &shared)?;
    let verdict = with_first(verdict, first);
    let user_id = || {
        UserId::new(reply.user_id.max(0) as u64)
            .ok_or_else(|| ApiError::Internal("script login: signed in without a user id".into()))
    };
    match reply.outcome {
        Outcome::SignedIn => Ok(SignedIn {
            token,
            user_id: user_id()?,
            nickname: reply.nickname,
            verdict,
        }),
        Outcome::Elsewhere => {
            let user_id = user_id()?;
            let (token, nickname) =
                open_session_elsewhere(redis, user_id, phone, &nickname, session, shards).await?;
            Ok(SignedIn {
                token,
                user_id,
                nickname,
                verdict,
            })
        }
        Outcome::WrongCode => Err(ApiError::InvalidCode),
        Outcome::Limited | Outcome::Locked | Outcome::ClientLocked => {
            Err(ApiError::RateLimited(verdict))
        }
    }
}

/// Opens a session in the shard of a user who does not live in their
/// phone's; the code was already consumed, so a failure here means asking
/// for a new one.
async fn open_session_elsewhere(
    redis: &mut impl Redis,
    user_id: UserId,
    phone: &Phone,
    new_nickname: &str,
    session: &SessionSettings,
    shards: Shards,
) -> Result<(SessionToken, String), ApiError> {
    let home = shards.of_user(user_id);
    let token = SessionToken::generate_in(home, shards);
    let user_key = keys::user(home, user_id);
    let session_key = token.redis_key(shards);
    let reply = open_session::run(
        redis,
        &open_session::Keys {
            user: &user_key,
            session: &session_key,
        },
        &open_session::Args {
            user_id: user_id.get() as i64,
            phone: phone.as_str(),
            new_nickname,
            idle_ms: i64::from(session.idle_secs) * 1000,
        },
    )
    .await?;
    Ok((token, reply.nickname))
}

/// Ends the session of `token`; it stops working at once, everywhere.
pub async fn logout(
    redis: &mut impl Redis,
    token: &SessionToken,
    shards: Shards,
) -> Result<(), RedisError> {
    let key = token.redis_key(shards);
    redis.execute("DEL", &[Arg::from(key.as_str())]).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_six_digits_and_vary() {
        let codes: std::collections::HashSet<String> = (0..50)
            .map(|_| LoginCode::generate().reveal().to_string())
            .collect();
        assert!(codes.len() > 40);
        assert!(
            codes
                .iter()
                .all(|c| c.len() == 6 && c.bytes().all(|b| b.is_ascii_digit()))
        );
    }

    #[test]
    fn only_six_digits_parse() {
        assert!(LoginCode::parse("012345").is_some());
        for bad in ["", "12345", "1234567", "12345a", " 12345"] {
            assert!(LoginCode::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn the_digest_hides_the_code_and_depends_on_the_phone() {
        let code = LoginCode::parse("123456").unwrap();
        let key = code_key("k");
        let phone = Phone::parse("13812345678").unwrap();
        let a = code.digest(&phone, &key);
        let b = code.digest(&Phone::parse("13912345678").unwrap(), &key);
        assert_ne!(
            a,
            code.digest(&phone, &code_key("other")),
            "the key matters"
        );
        assert_ne!(a, b);
        assert!(!a.contains("123456"));
        assert!(!format!("{code:?}").contains("123456"));
    }
}
