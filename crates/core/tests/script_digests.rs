//! Every script's compile-time SHA-1 is the name Redis itself gives it, so
//! `EVALSHA` finds a loaded script without falling back to `EVAL`.

use flashspin_core::script::Script;
use flashspin_testkit::RedisServer;

#[test]
fn every_script_is_named_as_redis_names_it() {
    let scripts: [&Script; 11] = [
        &flashspin_core::gate::GATE,
        &flashspin_core::ratelimit::RATE_LIMIT,
        &flashspin_core::login::SEND_CODE,
        &flashspin_core::login::LOGIN,
        &flashspin_core::catalog::CATALOG_INDEX,
        &flashspin_core::voucher::BUY_VOUCHER,
        &flashspin_core::lottery::LOTTERY_CREATE,
        &flashspin_core::lottery::BUY_LOTTERY,
        &flashspin_core::lottery::LOTTERY_READ,
        &flashspin_core::lottery::LOTTERY_MINE,
        &flashspin_core::page::RECORD_PURCHASE,
    ];
    let redis = RedisServer::start();
    let mut conn = redis.conn();
    for script in scripts {
        let loaded: String = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(script.source())
            .query(&mut conn)
            .unwrap();
        assert_eq!(loaded.as_bytes(), script.sha1(), "script {}", script.name);
    }
}
