//! `scripts/ratelimit.lua` run directly against a real Redis.

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use flashspin_core::ratelimit::{Limit, Rate, Scope, check};
use flashspin_testkit::RedisServer;

fn limit(key: &str, quota: u32, window_secs: u32) -> Limit {
    Limit {
        scope: Scope::Global,
        key: format!("{{gate}}:rl:test:{key}"),
        rate: Rate::new(quota, window_secs).unwrap(),
    }
}

#[test]
fn a_concurrent_burst_gets_exactly_the_quota() {
    let redis = RedisServer::start();
    for round in 0..3 {
        let limits = Arc::new(vec![limit(&format!("burst{round}"), 17, 60)]);
        let barrier = Arc::new(Barrier::new(100));
        let handles: Vec<_> = (0..100)
            .map(|_| {
                let mut conn = redis.native();
                let limits = limits.clone();
                let barrier = barrier.clone();
                thread::spawn(move || {
                    barrier.wait();
                    check(&mut conn, &limits).unwrap().allowed
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
    let limits = [limit("refill", 2, 4)];
    assert!(check(&mut conn, &limits).unwrap().allowed);
    let second = check(&mut conn, &limits).unwrap();
    assert!(second.allowed);
    assert_eq!(second.states[0].remaining, 0);
    let refused = check(&mut conn, &limits).unwrap();
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
    assert!(check(&mut conn, &limits).unwrap().allowed);
    assert!(!check(&mut conn, &limits).unwrap().allowed);
    // After a whole window the full burst is back.
    thread::sleep(Duration::from_millis(4020));
    assert!(check(&mut conn, &limits).unwrap().allowed);
    assert!(check(&mut conn, &limits).unwrap().allowed);
    assert!(!check(&mut conn, &limits).unwrap().allowed);
}

#[test]
fn a_refused_request_consumes_no_other_limit() {
    let redis = RedisServer::start();
    let mut conn = redis.native();
    let loose = limit("loose", 5, 60);
    let tight = limit("tight", 1, 60);
    let both = [loose.clone(), tight.clone()];
    let first = check(&mut conn, &both).unwrap();
    assert!(first.allowed);
    assert_eq!(first.states[0].remaining, 4);
    assert_eq!(first.states[1].remaining, 0);
    for _ in 0..5 {
        assert!(!check(&mut conn, &both).unwrap().allowed);
    }
    let alone = check(&mut conn, &[loose]).unwrap();
    assert!(alone.allowed);
    assert_eq!(
        alone.states[0].remaining, 3,
        "refusals must not have counted"
    );
}

#[test]
fn limits_are_independent_and_every_key_expires() {
    let redis = RedisServer::start();
    let mut conn = redis.native();
    let a = [limit("a", 1, 30)];
    let b = [limit("b", 1, 30)];
    assert!(check(&mut conn, &a).unwrap().allowed);
    assert!(check(&mut conn, &b).unwrap().allowed);
    assert!(!check(&mut conn, &a).unwrap().allowed);
    assert_eq!(redis.keys_without_ttl(), Vec::<String>::new());
}

#[test]
fn the_script_is_loaded_once_and_survives_a_flush() {
    let redis = RedisServer::start();
    let mut conn = redis.native();
    let limits = [limit("flush", 10, 1)];
    assert!(check(&mut conn, &limits).unwrap().allowed);
    redis::cmd("SCRIPT")
        .arg("FLUSH")
        .exec(&mut redis.conn())
        .unwrap();
    assert!(check(&mut conn, &limits).unwrap().allowed);
}
