//! Every script's compile-time SHA-1 is the name Redis itself gives it, so
//! `EVALSHA` finds a loaded script without falling back to `EVAL`; and
//! every script as generated from its declaration is valid Lua.

use flashspin_testkit::RedisServer;

#[test]
fn every_script_is_named_as_redis_names_it() {
    let redis = RedisServer::start();
    let mut conn = redis.conn();
    assert!(flashspin_core::scripts::ALL.len() >= 10);
    for script in flashspin_core::scripts::ALL {
        let loaded: String = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(script.source())
            .query(&mut conn)
            .unwrap_or_else(|e| panic!("script {}: {e}", script.name));
        assert_eq!(loaded.as_bytes(), script.sha1(), "script {}", script.name);
    }
}
