//! `cluster::ClusterRedis` against a real Redis Cluster (3 primaries on
//! loopback): commands reach the node serving their slot, the layout is
//! read once and kept, `MOVED` after a reshard and `ASK` during a slot's
//! migration are followed, and a plain Redis is used as before, without a
//! single `CLUSTER` command.

use std::cell::RefCell;
use std::rc::Rc;

use flashspin_core::cluster::{self, ClusterRedis, MapCache, SlotMap};
use flashspin_core::redis::{Arg, Redis, Reply};
use flashspin_testkit::{NativeConnector, RedisCluster, RedisServer, block_on};

/// A cache the test can look into: the text of the last map saved.
#[derive(Clone, Default)]
struct SharedCache(Rc<RefCell<Option<String>>>);

impl MapCache for SharedCache {
    fn load(&mut self) -> Option<SlotMap> {
        SlotMap::from_text(self.0.borrow().as_deref()?)
    }
    fn save(&mut self, map: &SlotMap) {
        *self.0.borrow_mut() = Some(map.to_text());
    }
}

fn router(seed: String, cache: &SharedCache) -> ClusterRedis<NativeConnector, SharedCache> {
    ClusterRedis::new(NativeConnector { seed }, cache.clone())
}

fn set(redis: &mut impl Redis, key: &str, value: &str) {
    let replies = block_on(redis.execute(
        "SET",
        &[Arg::Bytes(key.as_bytes()), Arg::Bytes(value.as_bytes())],
    ))
    .unwrap();
    assert_eq!(replies, [Reply::Status("OK".into())]);
}

fn get(redis: &mut impl Redis, key: &str) -> Option<String> {
    match block_on(redis.execute("GET", &[Arg::Bytes(key.as_bytes())]))
        .unwrap()
        .as_slice()
    {
        [Reply::Bytes(b)] => Some(String::from_utf8(b.clone()).unwrap()),
        [Reply::Nil] => None,
        other => panic!("{other:?}"),
    }
}

/// Commands of `name` (`cluster|nodes`, `asking`, `get`...) the nodes
/// served, the tests' own included.
fn calls(cluster: &RedisCluster, name: &str) -> u64 {
    cluster
        .nodes
        .iter()
        .map(|node| {
            let info: String = redis::cmd("INFO")
                .arg("commandstats")
                .query(&mut node.conn())
                .unwrap();
            info.lines()
                .find_map(|l| l.strip_prefix(&format!("cmdstat_{name}:calls=")))
                .and_then(|rest| rest.split(',').next()?.parse().ok())
                .unwrap_or(0)
        })
        .sum()
}

/// Keys that hash to slots all over the key space.
fn keys() -> Vec<String> {
    (0..300).map(|i| format!("{{k{i}}}:x")).collect()
}

#[test]
fn every_command_reaches_the_node_of_its_slot_and_the_layout_is_read_once() {
    let cluster = RedisCluster::start(3, 0);
    let cache = SharedCache::default();
    let layouts_read = calls(&cluster, "cluster|nodes");
    let mut redis = router(cluster.seed_url(), &cache);
    for key in keys() {
        set(&mut redis, &key, &key);
    }
    // One layout read, on the first redirection; none after.
    assert_eq!(calls(&cluster, "cluster|nodes"), layouts_read + 1);
    assert!(cache.0.borrow().is_some());
    // Each key is where the cluster says it belongs.
    for key in keys() {
        let owner = cluster.primary_of(cluster::slot(key.as_bytes()));
        let node = cluster.nodes.iter().find(|n| n.port == owner).unwrap();
        let value: Option<String> = redis::cmd("GET").arg(&key).query(&mut node.conn()).unwrap();
        assert_eq!(value.as_deref(), Some(key.as_str()));
    }
    // A second router with the cache goes straight to the nodes: no
    // redirection, no layout read.
    let (layouts_read, gets) = (calls(&cluster, "cluster|nodes"), calls(&cluster, "get"));
    let mut again = router(cluster.seed_url(), &cache);
    for key in keys() {
        assert_eq!(get(&mut again, &key).as_deref(), Some(key.as_str()));
    }
    assert_eq!(calls(&cluster, "cluster|nodes"), layouts_read);
    // One GET per key: none was redirected.
    assert_eq!(calls(&cluster, "get"), gets + keys().len() as u64);
}

#[test]
fn a_reshard_is_followed_and_the_map_mended() {
    let cluster = RedisCluster::start(3, 0);
    let cache = SharedCache::default();
    let mut redis = router(cluster.seed_url(), &cache);
    for key in keys() {
        set(&mut redis, &key, "before");
    }
    let primaries = cluster.primaries();
    let (from, to) = (primaries[0], primaries[1]);
    cluster.reshard(from, to, 2000);
    // The old map sends some keys to their former node: MOVED, resent.
    for key in keys() {
        assert_eq!(get(&mut redis, &key).as_deref(), Some("before"), "{key}");
        set(&mut redis, &key, "after");
    }
    for key in keys() {
        assert_eq!(get(&mut redis, &key).as_deref(), Some("after"));
    }
    // The map now says where the moved slots are.
    let map = SlotMap::from_text(cache.0.borrow().as_deref().unwrap()).unwrap();
    for key in keys() {
        let slot = cluster::slot(key.as_bytes());
        assert_eq!(
            map.node(slot),
            Some(format!("127.0.0.1:{}", cluster.primary_of(slot)).as_str())
        );
    }
}

#[test]
fn a_key_of_a_slot_being_migrated_is_followed_with_asking() {
    let cluster = RedisCluster::start(3, 0);
    let cache = SharedCache::default();
    let mut redis = router(cluster.seed_url(), &cache);
    let key = "{migrating}:k";
    let slot = cluster::slot(key.as_bytes());
    set(&mut redis, "{migrating}:warm-up", "x");
    let from = cluster.primary_of(slot);
    let to = cluster
        .primaries()
        .into_iter()
        .find(|&p| p != from)
        .unwrap();
    let node = |port: u16| cluster.nodes.iter().find(|n| n.port == port).unwrap();
    // Half-way through a move: the key does not exist on the old node, so
    // it answers ASK for it.
    let () = redis::cmd("CLUSTER")
        .arg("SETSLOT")
        .arg(slot)
        .arg("IMPORTING")
        .arg(cluster.node_id(from))
        .query(&mut node(to).conn())
        .unwrap();
    let () = redis::cmd("CLUSTER")
        .arg("SETSLOT")
        .arg(slot)
        .arg("MIGRATING")
        .arg(cluster.node_id(to))
        .query(&mut node(from).conn())
        .unwrap();
    let asked = calls(&cluster, "asking");
    set(&mut redis, key, "moved");
    assert_eq!(calls(&cluster, "asking"), asked + 1);
    // It was written on the node importing the slot.
    let mut conn = node(to).conn();
    let value: Option<String> = redis::pipe()
        .cmd("ASKING")
        .ignore()
        .cmd("GET")
        .arg(key)
        .query::<(Option<String>,)>(&mut conn)
        .unwrap()
        .0;
    assert_eq!(value.as_deref(), Some("moved"));
}

fn connections_received(server: &RedisServer) -> u64 {
    let stats: String = redis::cmd("INFO")
        .arg("stats")
        .query(&mut server.conn())
        .unwrap();
    stats
        .lines()
        .find_map(|l| l.strip_prefix("total_connections_received:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn a_plain_redis_is_used_as_before() {
    let server = RedisServer::start();
    let cache = SharedCache::default();
    let before = connections_received(&server);
    let mut redis = router(server.url(), &cache);
    for key in keys() {
        set(&mut redis, &key, "v");
    }
    assert_eq!(get(&mut redis, "{k1}:x").as_deref(), Some("v"));
    // The router's one connection, and the reading's own.
    assert_eq!(connections_received(&server) - before, 2);
    assert!(cache.0.borrow().is_none(), "no layout for a plain Redis");
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut server.conn())
        .unwrap();
    assert!(!info.contains("cmdstat_cluster"), "{info}");
}

/// `WAIT` calls the node on `port` served.
fn waits_on(cluster: &RedisCluster, port: u16) -> u64 {
    let node = cluster.nodes.iter().find(|n| n.port == port).unwrap();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut node.conn())
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_wait:calls="))
        .and_then(|rest| rest.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_durable_write_waits_for_its_replica_on_the_node_that_wrote_it() {
    let cluster = RedisCluster::start(3, 1);
    let cache = SharedCache::default();
    let key = "{durable}:k";
    let primary = cluster.primary_of(cluster::slot(key.as_bytes()));

    // Without replicas to wait for, nothing is sent.
    let mut plain = router(cluster.seed_url(), &cache);
    set(&mut plain, key, "a");
    block_on(plain.confirm_durable()).unwrap();
    assert_eq!(calls(&cluster, "wait"), 0);

    let mut waiting = router(cluster.seed_url(), &cache).wait_for_replicas(1, 1000);
    set(&mut waiting, key, "b");
    block_on(waiting.confirm_durable()).unwrap();
    assert_eq!(waits_on(&cluster, primary), 1);
    assert_eq!(calls(&cluster, "wait"), 1);
    // The write is on the primary's replica once confirmed.
    let replica = cluster
        .nodes
        .iter()
        .find(|n| {
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query(&mut n.conn())
                .unwrap();
            info.contains(&format!("master_port:{primary}"))
        })
        .unwrap();
    let mut conn = replica.conn();
    let value: Option<String> = redis::pipe()
        .cmd("READONLY")
        .ignore()
        .cmd("GET")
        .arg(key)
        .query::<(Option<String>,)>(&mut conn)
        .unwrap()
        .0;
    assert_eq!(value.as_deref(), Some("b"));
}
