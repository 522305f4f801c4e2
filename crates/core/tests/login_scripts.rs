//! `send_code.lua`, `login.lua` and `gate.lua` run directly against a real
//! Redis through the core's functions.

use flashspin_testkit::block_on;
use std::sync::{Arc, Barrier};
use std::thread;

use flashspin_core::ApiError;
use flashspin_core::client_ip::ClientIp;
use flashspin_core::config::RateLimits;
use flashspin_core::gate::{Access, GateRequest, pass};
use flashspin_core::ids::UserId;
use flashspin_core::login::{CodeSettings, login, logout, send_code};
use flashspin_core::phone::Phone;
use flashspin_core::ratelimit::{Endpoint, Rate};
use flashspin_core::session::{SessionSettings, SessionToken};
use flashspin_core::shard::Shards;
use flashspin_testkit::{NativeRedis, RedisServer};

const SETTINGS: CodeSettings = CodeSettings {
    ttl_secs: 300,
    resend_secs: 60,
    max_attempts: 5,
    max_attempts_per_phone: 20,
    daily_per_phone: 10,
    hourly_per_ip: 30,
    key: [7; 32],
};

const SESSION: SessionSettings = SessionSettings {
    idle_secs: 1800,
    max_secs: 604_800,
};

fn limits(user: &str) -> RateLimits {
    RateLimits {
        user: user.parse().unwrap(),
        ip: Rate::new(1000, 1).unwrap(),
        global: Rate::new(100_000, 1).unwrap(),
    }
}

fn phone(n: u32) -> Phone {
    Phone::parse(&format!("138{n:08}")).unwrap()
}

fn sign_in(redis: &mut NativeRedis, phone: &Phone) -> (SessionToken, UserId) {
    let sent = block_on(send_code(
        redis,
        phone,
        None,
        &SETTINGS,
        &limits("1/5"),
        Shards::ONE,
    ))
    .unwrap();
    let signed = block_on(login(
        redis,
        phone,
        sent.code.reveal(),
        None,
        &SETTINGS,
        &SESSION,
        &limits("1/5"),
        Shards::ONE,
    ))
    .unwrap();
    (signed.token, signed.user_id)
}

fn gate(
    redis: &mut NativeRedis,
    endpoint: Endpoint,
    access: Access,
    token: Option<&SessionToken>,
    limits: RateLimits,
) -> Result<flashspin_core::gate::Passed, ApiError> {
    block_on(pass(
        redis,
        access,
        &GateRequest {
            endpoint,
            token,
            ip: None,
            limits,
            session: SESSION,
            shards: Shards::ONE,
        },
    ))
}

/// The gate of an endpoint for signed-in users, as the holder of `token`.
fn as_user(
    redis: &mut NativeRedis,
    token: &SessionToken,
) -> Result<flashspin_core::gate::Passed, ApiError> {
    gate(
        redis,
        Endpoint::Account,
        Access::User,
        Some(token),
        limits("1/5"),
    )
}

#[test]
fn users_are_created_once_per_phone() {
    let server = RedisServer::start();
    let mut redis = server.native();
    let (t1, a) = sign_in(&mut redis, &phone(1));
    redis::cmd("DEL")
        .arg("{gate}:code-gap:13800000001")
        .exec(&mut server.conn())
        .unwrap();
    let (t2, b) = sign_in(&mut redis, &phone(1));
    let (_, c) = sign_in(&mut redis, &phone(2));
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_ne!(t1, t2);
    let passed = as_user(&mut redis, &t1).unwrap();
    let user = passed.user.unwrap();
    assert_eq!((user.id, user.phone.as_str()), (a, "13800000001"));
}

#[test]
fn the_gate_reads_the_profile_from_the_session_or_else_the_user() {
    let server = RedisServer::start();
    let mut redis = server.native();
    let (token, id) = sign_in(&mut redis, &phone(3));
    let mut conn = server.conn();
    let session = token.redis_key(Shards::ONE);
    let stored: Vec<Option<String>> = redis::cmd("HMGET")
        .arg(&session)
        .arg("uid")
        .arg("phone")
        .query(&mut conn)
        .unwrap();
    assert_eq!(
        stored,
        vec![Some(id.to_string()), Some("13800000003".to_string())]
    );
    let mut signed_in_user = || as_user(&mut redis, &token).unwrap().user.unwrap();
    let expected = signed_in_user();
    assert_eq!((expected.id, expected.phone.as_str()), (id, "13800000003"));
    assert!(!expected.nickname.is_empty());

    // A session written before sessions carried the profile.
    redis::cmd("HDEL")
        .arg(&session)
        .arg("phone")
        .arg("nickname")
        .exec(&mut conn)
        .unwrap();
    assert_eq!(signed_in_user(), expected);
}

#[test]
fn concurrent_logins_with_one_code_open_exactly_one_session() {
    let server = RedisServer::start();
    let mut redis = server.native();
    let p = phone(3);
    let code = block_on(send_code(
        &mut redis,
        &p,
        None,
        &SETTINGS,
        &limits("1/5"),
        Shards::ONE,
    ))
    .unwrap()
    .code;
    let barrier = Arc::new(Barrier::new(20));
    let handles: Vec<_> = (0..20)
        .map(|_| {
            let mut redis = server.native();
            let barrier = barrier.clone();
            let code = code.reveal().to_string();
            let p = p.clone();
            thread::spawn(move || {
                barrier.wait();
                block_on(login(
                    &mut redis,
                    &p,
                    &code,
                    None,
                    &SETTINGS,
                    &SESSION,
                    &limits("1/5"),
                    Shards::ONE,
                ))
                .is_ok()
            })
        })
        .collect();
    let successes = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|ok| *ok)
        .count();
    assert_eq!(successes, 1);
}

#[test]
fn per_user_limits_do_not_leak_across_users_or_endpoints() {
    let server = RedisServer::start();
    let mut redis = server.native();
    let (alice, _) = sign_in(&mut redis, &phone(4));
    let (bob, _) = sign_in(&mut redis, &phone(5));
    let l = limits("1/60");

    assert!(
        gate(
            &mut redis,
            Endpoint::BuyVoucher,
            Access::Buyer,
            Some(&alice),
            l
        )
        .is_ok()
    );
    let second = gate(
        &mut redis,
        Endpoint::BuyVoucher,
        Access::Buyer,
        Some(&alice),
        l,
    );
    assert!(
        matches!(second, Err(ApiError::RateLimited(_))),
        "{second:?}"
    );
    assert!(
        gate(
            &mut redis,
            Endpoint::BuyVoucher,
            Access::Buyer,
            Some(&bob),
            l
        )
        .is_ok()
    );
    assert!(
        gate(
            &mut redis,
            Endpoint::BuyLotteryShares,
            Access::Buyer,
            Some(&alice),
            l
        )
        .is_ok()
    );
    // Endpoints without a per-user limit are not affected by it.
    assert!(gate(&mut redis, Endpoint::Account, Access::User, Some(&alice), l).is_ok());
    assert!(gate(&mut redis, Endpoint::Account, Access::User, Some(&alice), l).is_ok());
    let limiter_keys_without_ttl: Vec<String> = server
        .keys_without_ttl()
        .into_iter()
        .filter(|k| k.contains(":rl:"))
        .collect();
    assert!(
        limiter_keys_without_ttl.is_empty(),
        "{limiter_keys_without_ttl:?}"
    );
}

#[test]
fn the_gate_refuses_missing_and_ended_sessions() {
    let server = RedisServer::start();
    let mut redis = server.native();
    let l = limits("1/5");
    let stranger = SessionToken::generate_in(Shards::ONE.first(), Shards::ONE);
    assert_eq!(
        gate(&mut redis, Endpoint::Account, Access::User, None, l),
        Err(ApiError::Unauthorized)
    );
    assert_eq!(
        gate(
            &mut redis,
            Endpoint::Account,
            Access::User,
            Some(&stranger),
            l
        ),
        Err(ApiError::Unauthorized)
    );
    let public = gate(
        &mut redis,
        Endpoint::Catalog,
        Access::Public,
        Some(&stranger),
        l,
    )
    .unwrap();
    assert_eq!(public.user, None);

    let (token, _) = sign_in(&mut redis, &phone(6));
    assert!(gate(&mut redis, Endpoint::Account, Access::User, Some(&token), l).is_ok());
    block_on(logout(&mut redis, &token, Shards::ONE)).unwrap();
    assert_eq!(
        gate(&mut redis, Endpoint::Account, Access::User, Some(&token), l),
        Err(ApiError::Unauthorized)
    );
}

#[test]
fn the_session_slides_but_not_past_its_absolute_lifetime() {
    let server = RedisServer::start();
    let mut redis = server.native();
    let (token, _) = sign_in(&mut redis, &phone(7));
    let key = token.redis_key(Shards::ONE);
    let pttl = |server: &RedisServer| -> i64 {
        redis::cmd("PTTL")
            .arg(&key)
            .query(&mut server.conn())
            .unwrap()
    };

    redis::cmd("PEXPIRE")
        .arg(&key)
        .arg(1000)
        .exec(&mut server.conn())
        .unwrap();
    as_user(&mut redis, &token).unwrap();
    assert!(pttl(&server) > 1_700_000, "slid back to the idle timeout");

    // Pretend the session was created 604,790 s ago: 10 s of life left.
    let created: i64 = redis::cmd("HGET")
        .arg(&key)
        .arg("created")
        .query(&mut server.conn())
        .unwrap();
    redis::cmd("HSET")
        .arg(&key)
        .arg("created")
        .arg(created - 604_790_000)
        .exec(&mut server.conn())
        .unwrap();
    as_user(&mut redis, &token).unwrap();
    assert!(pttl(&server) <= 10_000, "capped by the absolute lifetime");

    redis::cmd("HSET")
        .arg(&key)
        .arg("created")
        .arg(created - 604_800_001)
        .exec(&mut server.conn())
        .unwrap();
    assert_eq!(as_user(&mut redis, &token), Err(ApiError::Unauthorized));
    assert_eq!(pttl(&server), -2, "an expired session is deleted");
}

fn client(ip: &str) -> ClientIp {
    ClientIp(ip.parse().unwrap())
}

/// Logs in to `phone` with `code` from `ip` under `settings`; `Ok(())` on
/// success.
fn attempt(
    redis: &mut NativeRedis,
    settings: &CodeSettings,
    phone: &Phone,
    ip: Option<&str>,
    code: &str,
) -> Result<(), ApiError> {
    let ip = ip.map(client);
    block_on(login(
        redis,
        phone,
        code,
        ip.as_ref(),
        settings,
        &SESSION,
        &limits("1/5"),
        Shards::ONE,
    ))
    .map(|_| ())
}

fn is_rate_limited(result: &Result<(), ApiError>) -> bool {
    matches!(result, Err(ApiError::RateLimited(_)))
}

/// A well-formed code that is not `code`.
fn wrong(code: &str) -> &'static str {
    if code == "000000" { "111111" } else { "000000" }
}

fn hget(server: &RedisServer, key: &str, field: &str) -> Option<i64> {
    redis::cmd("HGET")
        .arg(key)
        .arg(field)
        .query(&mut server.conn())
        .unwrap()
}

#[test]
fn wrong_codes_from_one_client_lock_out_that_client_only() {
    let server = RedisServer::start();
    let mut redis = server.native();
    let p = phone(10);
    let code = block_on(send_code(
        &mut redis,
        &p,
        None,
        &SETTINGS,
        &limits("1/5"),
        Shards::ONE,
    ))
    .unwrap()
    .code;
    let code = code.reveal();
    let attacker = Some("10.6.6.6");

    for n in 1..=4 {
        let result = attempt(&mut redis, &SETTINGS, &p, attacker, wrong(code));
        assert_eq!(result, Err(ApiError::InvalidCode), "attempt {n}");
    }
    let fifth = attempt(&mut redis, &SETTINGS, &p, attacker, wrong(code));
    assert!(is_rate_limited(&fifth), "{fifth:?}");
    if let Err(ApiError::RateLimited(verdict)) = &fifth {
        // Refused until the code expires (300 s).
        assert!(
            (290_000..=300_000).contains(&verdict.retry_after_ms),
            "{verdict:?}"
        );
    }
    // Refused from now on, without comparing or counting: even the right
    // code, even a malformed one.
    for given in [wrong(code), code, "12ab"] {
        let result = attempt(&mut redis, &SETTINGS, &p, attacker, given);
        assert!(is_rate_limited(&result), "{given}: {result:?}");
    }
    let key = format!("{{gate}}:code:{}", p.as_str());
    assert_eq!(hget(&server, &key, "attempts"), Some(5));
    assert_eq!(hget(&server, &key, "ip:10.6.6.6"), Some(5));

    // Another client is not affected, nor is the code: the owner gets in.
    let other = attempt(&mut redis, &SETTINGS, &p, Some("10.6.6.7"), wrong(code));
    assert_eq!(other, Err(ApiError::InvalidCode));
    assert_eq!(
        attempt(&mut redis, &SETTINGS, &p, Some("10.1.1.1"), code),
        Ok(())
    );
    let without_ttl: Vec<String> = server
        .keys_without_ttl()
        .into_iter()
        .filter(|k| k.contains(":code"))
        .collect();
    assert!(without_ttl.is_empty(), "{without_ttl:?}");
}

#[test]
fn clients_are_counted_as_the_ip_limits_count_them() {
    let server = RedisServer::start();
    let mut redis = server.native();
    let settings = CodeSettings {
        max_attempts: 2,
        ..SETTINGS
    };
    let p = phone(11);
    let code = block_on(send_code(
        &mut redis,
        &p,
        None,
        &settings,
        &limits("1/5"),
        Shards::ONE,
    ))
    .unwrap()
    .code;
    let code = code.reveal();
    // One IPv6 /64 is one client, whichever of its addresses it uses.
    let first = attempt(
        &mut redis,
        &settings,
        &p,
        Some("2001:db8:1:2::1"),
        wrong(code),
    );
    assert_eq!(first, Err(ApiError::InvalidCode));
    let second = attempt(
        &mut redis,
        &settings,
        &p,
        Some("2001:db8:1:2::99"),
        wrong(code),
    );
    assert!(is_rate_limited(&second), "{second:?}");
    let next = attempt(
        &mut redis,
        &settings,
        &p,
        Some("2001:db8:1:3::1"),
        wrong(code),
    );
    assert_eq!(next, Err(ApiError::InvalidCode), "another /64");
    // Requests without an address share one count.
    assert_eq!(
        attempt(&mut redis, &settings, &p, None, wrong(code)),
        Err(ApiError::InvalidCode)
    );
    assert!(is_rate_limited(&attempt(
        &mut redis,
        &settings,
        &p,
        None,
        wrong(code)
    )));
    assert_eq!(
        attempt(&mut redis, &settings, &p, Some("10.1.1.1"), code),
        Ok(())
    );
}

#[test]
fn the_phone_cap_voids_the_code_for_everyone_until_a_new_one() {
    let server = RedisServer::start();
    let mut redis = server.native();
    let settings = CodeSettings {
        max_attempts: 2,
        max_attempts_per_phone: 5,
        ..SETTINGS
    };
    let p = phone(12);
    let code = block_on(send_code(
        &mut redis,
        &p,
        None,
        &settings,
        &limits("1/5"),
        Shards::ONE,
    ))
    .unwrap()
    .code;
    let code = code.reveal().to_string();

    // Two clients use up their two tries: four wrong codes in all.
    for ip in ["10.6.6.1", "10.6.6.2"] {
        let ip = Some(ip);
        assert_eq!(
            attempt(&mut redis, &settings, &p, ip, wrong(&code)),
            Err(ApiError::InvalidCode)
        );
        for _ in 0..3 {
            assert!(is_rate_limited(&attempt(
                &mut redis,
                &settings,
                &p,
                ip,
                wrong(&code)
            )));
        }
    }
    // The fifth, from a third client, voids the code for everyone.
    let fifth = attempt(&mut redis, &settings, &p, Some("10.6.6.3"), wrong(&code));
    assert!(is_rate_limited(&fifth), "{fifth:?}");
    let owner = attempt(&mut redis, &settings, &p, Some("10.1.1.1"), &code);
    assert!(is_rate_limited(&owner), "{owner:?}");
    let lock = format!("{{gate}}:code-locked:{}", p.as_str());
    let pttl: i64 = redis::cmd("PTTL")
        .arg(&lock)
        .query(&mut server.conn())
        .unwrap();
    assert!(pttl > 86_000_000, "locked for a day: {pttl}");
    let exists: bool = redis::cmd("EXISTS")
        .arg(format!("{{gate}}:code:{}", p.as_str()))
        .query(&mut server.conn())
        .unwrap();
    assert!(!exists, "the code is gone");

    // A new code clears the lock and every client's count.
    redis::cmd("DEL")
        .arg(format!("{{gate}}:code-gap:{}", p.as_str()))
        .exec(&mut server.conn())
        .unwrap();
    let fresh = block_on(send_code(
        &mut redis,
        &p,
        None,
        &settings,
        &limits("1/5"),
        Shards::ONE,
    ))
    .unwrap()
    .code;
    let fresh = fresh.reveal();
    assert_eq!(
        attempt(&mut redis, &settings, &p, Some("10.6.6.1"), wrong(fresh)),
        Err(ApiError::InvalidCode)
    );
    assert_eq!(
        attempt(&mut redis, &settings, &p, Some("10.6.6.1"), fresh),
        Ok(())
    );
}

/// `n` wrong codes for `phone` at once, the i-th from `ip(i)`.
fn concurrent_wrong_codes(
    server: &RedisServer,
    settings: &CodeSettings,
    phone: &Phone,
    code: &str,
    n: usize,
    ip: fn(usize) -> String,
) -> Vec<Result<(), ApiError>> {
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let mut redis = server.native();
            let barrier = barrier.clone();
            let (settings, phone, bad) = (*settings, phone.clone(), wrong(code));
            thread::spawn(move || {
                barrier.wait();
                attempt(&mut redis, &settings, &phone, Some(&ip(i)), bad)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn concurrent_wrong_codes_never_pass_either_cap() {
    let server = RedisServer::start();
    let mut redis = server.native();
    let wrong_answers = |results: &[Result<(), ApiError>]| {
        assert!(
            results
                .iter()
                .all(|r| *r == Err(ApiError::InvalidCode) || is_rate_limited(r)),
            "{results:?}"
        );
        results
            .iter()
            .filter(|r| **r == Err(ApiError::InvalidCode))
            .count()
    };

    // One client, 30 tries at once: four wrong answers, the fifth try
    // counted refuses the client, the rest are refused uncounted.
    let p = phone(13);
    let code = block_on(send_code(
        &mut redis,
        &p,
        None,
        &SETTINGS,
        &limits("1/5"),
        Shards::ONE,
    ))
    .unwrap()
    .code;
    let results = concurrent_wrong_codes(&server, &SETTINGS, &p, code.reveal(), 30, |_| {
        "10.7.0.1".to_string()
    });
    assert_eq!(wrong_answers(&results), 4);
    let key = format!("{{gate}}:code:{}", p.as_str());
    assert_eq!(hget(&server, &key, "attempts"), Some(5));

    // 30 clients, one try each, against a phone cap of 5.
    let settings = CodeSettings {
        max_attempts_per_phone: 5,
        ..SETTINGS
    };
    let p = phone(14);
    let code = block_on(send_code(
        &mut redis,
        &p,
        None,
        &settings,
        &limits("1/5"),
        Shards::ONE,
    ))
    .unwrap()
    .code;
    let results = concurrent_wrong_codes(&server, &settings, &p, code.reveal(), 30, |i| {
        format!("10.8.0.{i}")
    });
    assert_eq!(wrong_answers(&results), 4);
    let key = format!("{{gate}}:code:{}", p.as_str());
    assert_eq!(hget(&server, &key, "attempts"), None, "voided");
}

#[test]
fn bad_tokens_without_a_client_address_are_still_limited() {
    let server = RedisServer::start();
    let mut redis = server.native();
    let forged = SessionToken::parse(&"ab".repeat(32)).unwrap();
    let limits = RateLimits {
        global: Rate::new(2, 60).unwrap(),
        ..limits("1/5")
    };
    let outcomes: Vec<u16> = (0..3)
        .map(|_| {
            match gate(
                &mut redis,
                Endpoint::Account,
                Access::User,
                Some(&forged),
                limits,
            ) {
                Ok(_) => 200,
                Err(e) => e.status(),
            }
        })
        .collect();
    // No IP to count them by: the global limit counts them instead.
    assert_eq!(outcomes, [401, 401, 429]);
}
