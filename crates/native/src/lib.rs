//! The core's [`Redis`] seam over the native redis-rs client, with the same
//! reply flattening Spin's `execute` does: for what runs outside Wasm (the
//! tests, the benchmark, `flashspin-upgrade`). A cluster is routed by the
//! core's own [`ClusterRedis`] over [`NativeConnector`], as in the app.

use std::time::Duration;

use flashspin_core::cluster::{ClusterRedis, Connector, NoCache, SlotMap};
use flashspin_core::redis::{Arg, Redis, RedisError, Reply};
use flashspin_core::shard::Shards;
use flashspin_core::upgrade;

/// One native connection, used through the core's seam.
pub struct NativeRedis(pub redis::Connection);

impl Redis for NativeRedis {
    /// Blocks on the native client: the future is ready when polled.
    async fn execute(&mut self, command: &str, args: &[Arg<'_>]) -> Result<Vec<Reply>, RedisError> {
        let mut cmd = redis::cmd(command);
        for arg in args {
            match *arg {
                Arg::Int(i) => cmd.arg(i),
                Arg::Bytes(b) => cmd.arg(b),
            };
        }
        let value: redis::Value = cmd.query(&mut self.0).map_err(|e| match e.code() {
            Some(code) => RedisError::Server(format!("{code} {}", e.detail().unwrap_or_default())),
            None => RedisError::Unreachable(e.to_string()),
        })?;
        let mut out = Vec::new();
        flatten(value, &mut out)?;
        Ok(out)
    }
}

fn flatten(value: redis::Value, out: &mut Vec<Reply>) -> Result<(), RedisError> {
    use redis::Value;
    match value {
        Value::Nil => out.push(Reply::Nil),
        Value::Int(i) => out.push(Reply::Int(i)),
        Value::BulkString(b) => out.push(Reply::Bytes(b)),
        Value::SimpleString(s) => out.push(Reply::Status(s)),
        Value::Okay => out.push(Reply::Status("OK".into())),
        Value::Array(items) | Value::Set(items) => {
            for item in items {
                flatten(item, out)?;
            }
        }
        other => {
            return Err(RedisError::UnexpectedReply(format!("{other:?}")));
        }
    }
    Ok(())
}

/// Opens native connections to a cluster's nodes, for the core's
/// [`ClusterRedis`]: `seed` is a `redis://` URL, other nodes are reached
/// as `host:port` with the seed's credentials.
pub struct NativeConnector {
    pub seed: String,
}

impl Connector for NativeConnector {
    type Connection = NativeRedis;

    async fn open_seed(&mut self) -> Result<NativeRedis, RedisError> {
        open(&self.seed)
    }

    async fn open(&mut self, node: &str) -> Result<NativeRedis, RedisError> {
        open(&node_url(&self.seed, node))
    }

    async fn pause(&mut self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

/// The URL of `node` (`host:port`) with the scheme and credentials of `seed`.
fn node_url(seed: &str, node: &str) -> String {
    let (scheme, rest) = seed.split_once("://").unwrap_or(("redis", seed));
    match rest.rsplit_once('@') {
        Some((credentials, _)) => format!("{scheme}://{credentials}@{node}"),
        None => format!("{scheme}://{node}"),
    }
}

/// Opens a connection to a `redis://` URL, giving up after two seconds.
pub fn open(url: &str) -> Result<NativeRedis, RedisError> {
    let client = redis::Client::open(url).map_err(|e| RedisError::Unreachable(e.to_string()))?;
    let connection = client
        .get_connection_with_timeout(Duration::from_secs(2))
        .map_err(|e| RedisError::Unreachable(e.to_string()))?;
    Ok(NativeRedis(connection))
}

/// A routed connection to a cluster through its seed node.
pub fn cluster(seed: &str) -> ClusterRedis<NativeConnector, NoCache> {
    ClusterRedis::new(
        NativeConnector {
            seed: seed.to_string(),
        },
        NoCache,
    )
}

/// The URLs of the primaries of the cluster `seed` belongs to.
pub fn primaries(seed: &str) -> Result<Vec<String>, RedisError> {
    let mut connection = open(seed)?;
    let reply = block_on(connection.execute("CLUSTER", &[Arg::from("NODES")]))?;
    let text = match reply.as_slice() {
        [Reply::Bytes(text)] => String::from_utf8_lossy(text).into_owned(),
        other => {
            return Err(RedisError::UnexpectedReply(format!(
                "CLUSTER NODES: {other:?}"
            )));
        }
    };
    let map = SlotMap::from_cluster_nodes(&text)
        .ok_or_else(|| RedisError::UnexpectedReply("CLUSTER NODES: no slots served".into()))?;
    Ok(map
        .nodes()
        .iter()
        .map(|node| node_url(seed, node))
        .collect())
}

/// Every key of one server matching `pattern` (`SCAN`, so the server keeps
/// serving while it runs).
pub fn scan(url: &str, pattern: &str) -> Result<Vec<String>, RedisError> {
    let mut connection = open(url)?;
    let mut cursor = String::from("0");
    let mut keys = Vec::new();
    loop {
        let reply = block_on(connection.execute(
            "SCAN",
            &[
                Arg::from(cursor.as_str()),
                Arg::from("MATCH"),
                Arg::from(pattern),
                Arg::from("COUNT"),
                Arg::Int(1000),
            ],
        ))?;
        let mut items = reply.into_iter();
        cursor = match items.next() {
            Some(Reply::Bytes(next)) => String::from_utf8_lossy(&next).into_owned(),
            other => return Err(RedisError::UnexpectedReply(format!("SCAN: {other:?}"))),
        };
        for item in items {
            if let Reply::Bytes(key) = item {
                keys.push(String::from_utf8_lossy(&key).into_owned());
            }
        }
        if cursor == "0" {
            return Ok(keys);
        }
    }
}

/// Changes the number of the gate's shards of the shop whose Redis is
/// `url` (a node of it when `cluster`), from `from` to `to`: finds the
/// gate's keys on every primary and moves them (`flashspin_core::upgrade`).
/// Run it with the app stopped.
pub fn upgrade_gate(
    url: &str,
    cluster_mode: bool,
    from: Shards,
    to: Shards,
) -> Result<upgrade::Report, RedisError> {
    let servers = if cluster_mode {
        primaries(url)?
    } else {
        vec![url.to_string()]
    };
    let mut found = Vec::new();
    for server in &servers {
        found.extend(scan(server, upgrade::GATE_KEYS)?);
    }
    if cluster_mode {
        block_on(upgrade::reshard_gate(&mut cluster(url), found, from, to))
    } else {
        block_on(upgrade::reshard_gate(&mut open(url)?, found, from, to))
    }
}

/// Runs one of the core's futures to its end on this thread: the core is
/// async for the WASI 0.3 build, and the native adapters answer at once,
/// so a simple executor is all that is needed.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    futures::executor::block_on(future)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_are_reached_with_the_seeds_scheme_and_credentials() {
        assert_eq!(
            node_url("redis://:pw@10.0.0.1:6379", "10.0.0.2:6380"),
            "redis://:pw@10.0.0.2:6380"
        );
        assert_eq!(
            node_url("rediss://10.0.0.1:6379", "10.0.0.2:6380"),
            "rediss://10.0.0.2:6380"
        );
    }
}
