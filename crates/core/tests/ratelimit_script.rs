//! GCRA (`scripts/gcra.lua`) as the gate applies it, run directly against a
//! real Redis: exact bursts, refill, all-or-nothing, expiry.

use flashspin_core::shard::Shards;
use flashspin_testkit::block_on;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use flashspin_core::ApiError;
use flashspin_core::client_ip::ClientIp;
use flashspin_core::config::RateLimits;
use flashspin_core::gate::{Access, GateRequest, pass};
use flashspin_core::ratelimit::{Endpoint, Rate, Verdict};
use flashspin_core::session::SessionSettings;
use flashspin_testkit::{NativeRedis, RedisServer};

/// Runs the gate of a public endpoint: `ip` limits the client when given,
/// `global` everyone.
fn check(
    redis: &mut NativeRedis,
    endpoint: Endpoint,
    ip: Option<(&str, Rate)>,
    global: Rate,
) -> Verdict {
    let limits = RateLimits {
        user: Rate::new(1, 1).unwrap(),
        ip: ip.map_or(global, |(_, rate)| rate),
        global,
    };
    let request = GateRequest {
        endpoint,
        token: None,
        ip: ip.map(|(address, _)| ClientIp(address.parse().unwrap())),
        limits,
        session: SessionSettings {
            idle_secs: 60,
            max_secs: 60,
        },
        shards: Shards::ONE,
    };
    match block_on(pass(redis, Access::Public, &request)) {
        Ok(passed) => passed.verdict,
        Err(ApiError::RateLimited(verdict)) => verdict,
        Err(e) => panic!("{e}"),
    }
}

fn rate(quota: u32, window_secs: u32) -> Rate {
    Rate::new(quota, window_secs).unwrap()
}

#[test]
fn a_concurrent_burst_gets_exactly_the_quota() {
    let redis = RedisServer::start();
    let endpoints = [Endpoint::Catalog, Endpoint::Admin, Endpoint::Account];
    for (round, endpoint) in endpoints.into_iter().enumerate() {
        let barrier = Arc::new(Barrier::new(100));
        let handles: Vec<_> = (0..100)
            .map(|_| {
                let mut conn = redis.native();
                let barrier = barrier.clone();
                thread::spawn(move || {
                    barrier.wait();
                    check(&mut conn, endpoint, None, rate(17, 60)).allowed
                })
            })
            .collect();
        let allowed = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|a| *a)
            .count();
        assert_eq!(allowed, 17, "round {round}");
    }
}

#[test]
fn the_limit_refills_on_time() {
    let redis = RedisServer::start();
    let mut conn = redis.native();
    // Two per 4 s, so one request every 2 s: wide enough that a slow
    // machine's pauses between the calls do not change the outcome.
    let mut check = || check(&mut conn, Endpoint::Catalog, None, rate(2, 4));
    assert!(check().allowed);
    let second = check();
    assert!(second.allowed);
    assert_eq!(second.states[0].remaining, 0);
    let refused = check();
    assert!(!refused.allowed);
    assert!(
        refused.retry_after_ms > 0 && refused.retry_after_ms <= 2000,
        "{refused:?}"
    );
    assert_eq!(
        refused.retry_after_secs(),
        refused.retry_after_ms.div_ceil(1000),
        "Retry-After rounds up"
    );
    thread::sleep(Duration::from_millis(refused.retry_after_ms + 20));
    assert!(check().allowed);
    assert!(!check().allowed);
    // After a whole window the full burst is back.
    thread::sleep(Duration::from_millis(4020));
    assert!(check().allowed);
    assert!(check().allowed);
    assert!(!check().allowed);
}

#[test]
fn a_refused_request_consumes_no_other_limit() {
    let redis = RedisServer::start();
    let mut conn = redis.native();
    let tight_ip = Some(("10.0.0.1", rate(1, 60)));
    let loose_global = rate(5, 60);
    let first = check(&mut conn, Endpoint::Catalog, tight_ip, loose_global);
    assert!(first.allowed);
    assert_eq!(first.states[0].remaining, 0, "the IP's");
    assert_eq!(first.states[1].remaining, 4, "the global one");
    for _ in 0..5 {
        assert!(!check(&mut conn, Endpoint::Catalog, tight_ip, loose_global).allowed);
    }
    let other_client = Some(("10.0.0.2", rate(1, 60)));
    let alone = check(&mut conn, Endpoint::Catalog, other_client, loose_global);
    assert!(alone.allowed);
    assert_eq!(
        alone.states[1].remaining, 3,
        "refusals must not have counted"
    );
}

#[test]
fn limits_are_independent_and_every_key_expires() {
    let redis = RedisServer::start();
    let mut conn = redis.native();
    let one = rate(1, 30);
    assert!(check(&mut conn, Endpoint::Catalog, None, one).allowed);
    assert!(check(&mut conn, Endpoint::Admin, None, one).allowed);
    assert!(!check(&mut conn, Endpoint::Catalog, None, one).allowed);
    assert_eq!(redis.keys_without_ttl(), Vec::<String>::new());
}

#[test]
fn the_script_is_loaded_once_and_survives_a_flush() {
    let redis = RedisServer::start();
    let mut conn = redis.native();
    assert!(check(&mut conn, Endpoint::Catalog, None, rate(10, 1)).allowed);
    redis::cmd("SCRIPT")
        .arg("FLUSH")
        .exec(&mut redis.conn())
        .unwrap();
    assert!(check(&mut conn, Endpoint::Catalog, None, rate(10, 1)).allowed);
}
