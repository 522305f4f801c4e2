//! `fermyon:spin/redis`: outbound Redis as Spin provides it. A connection is
//! opened when the guest asks for one and closed when the guest drops it or
//! the request's store goes away; nothing is pooled across requests, so the
//! costs measured on this host are the costs on Spin. An address must pass
//! `allowed_outbound_hosts` both as written (Spin's check) and as the Redis
//! client reads it, and the client connects with the reading that was
//! checked (`redis_target`). The checks, the connection and the mapping of
//! replies and errors are shared with `spin:redis@3.0.0` (`redis_v3`).

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisError, Value,
};
use wasmtime::component::Resource;

use super::fermyon::spin2_0_0::redis::{
    Error, Host, HostConnection, Payload, RedisParameter, RedisResult,
};
use crate::outbound::OutboundPolicy;
use crate::state::{ComponentContext, RequestState};

/// Bounds how long a guest waits for an unreachable or stalled server, so a
/// Redis outage turns into an error the component can answer with, not a hang.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// The host state behind a guest's `connection` resource.
pub struct RedisConnection {
    conn: MultiplexedConnection,
}

type HostResult<T> = wasmtime::Result<Result<T, Error>>;

impl Host for RequestState {}

impl RequestState {
    fn connection(
        &mut self,
        res: &Resource<RedisConnection>,
    ) -> wasmtime::Result<MultiplexedConnection> {
        // A multiplexed connection is a cheap handle; cloning it lets the
        // command run without holding a borrow of the table.
        Ok(self.table.get(res)?.conn.clone())
    }

    async fn query<T: redis::FromRedisValue>(
        &mut self,
        res: &Resource<RedisConnection>,
        cmd: redis::Cmd,
    ) -> HostResult<T> {
        let conn = self.connection(res)?;
        self.redis_commands
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(send(conn, cmd).await)
    }
}

/// Sends one command and reads its reply as `T`.
pub(super) async fn send<T: redis::FromRedisValue>(
    mut conn: MultiplexedConnection,
    cmd: redis::Cmd,
) -> Result<T, Error> {
    cmd.query_async::<T>(&mut conn).await.map_err(to_wit_error)
}

/// The server `component` may reach at `address`, read once as the client
/// reads it; a denial is logged.
pub(super) fn checked_target(
    component: &ComponentContext,
    address: &str,
) -> Result<ConnectionInfo, Error> {
    match redis_target(&component.outbound, address) {
        Ok(info) => Ok(info),
        Err(Refused::NotAllowed) => {
            crate::log::denied(&component.id, "redis", address);
            Err(Error::InvalidAddress)
        }
        Err(Refused::Malformed) => Err(Error::InvalidAddress),
    }
}

/// A connection to the server `info` names, within the host's time limits.
pub(super) async fn connect(info: ConnectionInfo) -> Result<MultiplexedConnection, Error> {
    let client = redis::Client::open(info).map_err(|_| Error::InvalidAddress)?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(to_wit_error)
}

impl HostConnection for RequestState {
    async fn open(&mut self, address: String) -> HostResult<Resource<RedisConnection>> {
        let info = match checked_target(&self.component, &address) {
            Ok(info) => info,
            Err(e) => return Ok(Err(e)),
        };
        if self.redis_connections >= self.redis_connection_limit {
            return Ok(Err(Error::TooManyConnections));
        }
        let conn = match connect(info).await {
            Ok(conn) => conn,
            Err(e) => return Ok(Err(e)),
        };
        self.redis_connections += 1;
        Ok(Ok(self.table.push(RedisConnection { conn })?))
    }

    async fn publish(
        &mut self,
        res: Resource<RedisConnection>,
        channel: String,
        payload: Payload,
    ) -> HostResult<()> {
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(channel).arg(payload);
        self.query::<Value>(&res, cmd).await.map(|r| r.map(drop))
    }

    async fn get(
        &mut self,
        res: Resource<RedisConnection>,
        key: String,
    ) -> HostResult<Option<Payload>> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(key);
        self.query(&res, cmd).await
    }

    async fn set(
        &mut self,
        res: Resource<RedisConnection>,
        key: String,
        value: Payload,
    ) -> HostResult<()> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(value);
        self.query::<Value>(&res, cmd).await.map(|r| r.map(drop))
    }

    async fn incr(&mut self, res: Resource<RedisConnection>, key: String) -> HostResult<i64> {
        let mut cmd = redis::cmd("INCRBY");
        cmd.arg(key).arg(1);
        self.query(&res, cmd).await
    }

    async fn del(&mut self, res: Resource<RedisConnection>, keys: Vec<String>) -> HostResult<u32> {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(keys);
        self.query(&res, cmd).await
    }

    async fn sadd(
        &mut self,
        res: Resource<RedisConnection>,
        key: String,
        values: Vec<String>,
    ) -> HostResult<u32> {
        let mut cmd = redis::cmd("SADD");
        cmd.arg(key).arg(values);
        self.query(&res, cmd).await
    }

    async fn smembers(
        &mut self,
        res: Resource<RedisConnection>,
        key: String,
    ) -> HostResult<Vec<String>> {
        let mut cmd = redis::cmd("SMEMBERS");
        cmd.arg(key);
        self.query(&res, cmd).await
    }

    async fn srem(
        &mut self,
        res: Resource<RedisConnection>,
        key: String,
        values: Vec<String>,
    ) -> HostResult<u32> {
        let mut cmd = redis::cmd("SREM");
        cmd.arg(key).arg(values);
        self.query(&res, cmd).await
    }

    async fn execute(
        &mut self,
        res: Resource<RedisConnection>,
        command: String,
        arguments: Vec<RedisParameter>,
    ) -> HostResult<Vec<RedisResult>> {
        let mut cmd = redis::cmd(&command);
        for arg in arguments {
            match arg {
                RedisParameter::Int64(i) => cmd.arg(i),
                RedisParameter::Binary(b) => cmd.arg(b),
            };
        }
        Ok(self.query::<Value>(&res, cmd).await?.and_then(flattened))
    }

    async fn drop(&mut self, res: Resource<RedisConnection>) -> wasmtime::Result<()> {
        self.table.delete(res)?;
        self.redis_connections = self.redis_connections.saturating_sub(1);
        Ok(())
    }
}

/// Why [`redis_target`] refused an address.
#[derive(Debug, PartialEq, Eq)]
enum Refused {
    NotAllowed,
    Malformed,
}

/// The server the client would connect to for `address`, if the component
/// may reach it. The address must pass Spin's check as written, and the
/// host and port the client itself reads from it must pass too: the two
/// readings differ when a `#` or `?` comes before an `@`
/// (`redis://evil:6380#@cache:6379` reads as `cache` to the allow-list and
/// as `evil:6380` to the client). The client is given this one parse, so
/// what was checked is what it connects to. Only TCP addresses are served.
fn redis_target(policy: &OutboundPolicy, address: &str) -> Result<ConnectionInfo, Refused> {
    if !policy.allows(address, "redis") {
        return Err(Refused::NotAllowed);
    }
    let url = url::Url::parse(address).map_err(|_| Refused::Malformed)?;
    let scheme = url.scheme().to_owned();
    let info = url.into_connection_info().map_err(|_| Refused::Malformed)?;
    let ConnectionAddr::Tcp(host, port) = info.addr() else {
        return Err(Refused::NotAllowed);
    };
    let host = match host.parse::<std::net::Ipv6Addr>() {
        Ok(ip) => format!("[{ip}]"),
        Err(_) => host.clone(),
    };
    if !policy.allows(&format!("{scheme}://{host}:{port}"), "redis") {
        return Err(Refused::NotAllowed);
    }
    Ok(info)
}

/// `value` as `execute`'s flat result list.
pub(super) fn flattened(value: Value) -> Result<Vec<RedisResult>, Error> {
    let mut out = Vec::new();
    flatten(value, &mut out).map(|()| out)
}

/// Spin's mapping of a reply to `execute`'s flat result list: arrays and
/// sets are flattened in order, `OK` and other simple strings become
/// `status`, RESP3 doubles and big numbers travel as text and booleans as
/// 0/1. Maps, attributes, verbatim strings and pushes are refused, as in Spin.
pub fn flatten(value: Value, out: &mut Vec<RedisResult>) -> Result<(), Error> {
    let unsupported = |what: &str| {
        Err(Error::Other(format!(
            "Could not convert Redis response - TypeError: Redis {what} is not supported"
        )))
    };
    match value {
        Value::Nil => out.push(RedisResult::Nil),
        Value::Int(i) => out.push(RedisResult::Int64(i)),
        Value::BulkString(b) => out.push(RedisResult::Binary(b)),
        Value::SimpleString(s) => out.push(RedisResult::Status(s)),
        Value::Okay => out.push(RedisResult::Status("OK".to_string())),
        Value::Array(items) | Value::Set(items) => {
            for item in items {
                flatten(item, out)?;
            }
        }
        Value::Double(d) => out.push(RedisResult::Binary(d.to_string().into_bytes())),
        Value::Boolean(b) => out.push(RedisResult::Int64(i64::from(b))),
        // Without the `num-bigint` feature the number arrives as its digits.
        Value::BigNumber(digits) => out.push(RedisResult::Binary(digits)),
        Value::ServerError(e) => return Err(to_wit_error(e.into())),
        Value::Map(_) => return unsupported("Map type"),
        Value::Attribute { .. } => return unsupported("Attribute type"),
        Value::VerbatimString { .. } => return unsupported("string with format attribute"),
        Value::Push { .. } => return unsupported("Pub/Sub types"),
        #[allow(unreachable_patterns)]
        _ => return unsupported("reply type"),
    }
    Ok(())
}

/// Maps a client error to the WIT error text Spin (redis-rs 0.32) produces,
/// so guests can recognise e.g. a missing script (`NoScriptError`) the same
/// way on both hosts.
pub fn to_wit_error(e: RedisError) -> Error {
    let Some(code) = e.code() else {
        // I/O errors read as the OS reports them: "Connection refused (os error 111)".
        return Error::Other(e.to_string());
    };
    let detail = e.detail().unwrap_or_default();
    let kind = match code {
        "ERR" => "ResponseError",
        "NOSCRIPT" => "NoScriptError",
        "EXECABORT" => "ExecAbortError",
        "LOADING" => "BusyLoadingError",
        "TRYAGAIN" => "TryAgain",
        "MOVED" => "Moved",
        "ASK" => "Ask",
        "CLUSTERDOWN" => "ClusterDown",
        "CROSSSLOT" => "CrossSlot",
        "MASTERDOWN" => "MasterDown",
        "READONLY" => "ReadOnly",
        "NOTBUSY" => "NotBusy",
        _ => return Error::Other(format!("{code}: {detail}")),
    };
    Error::Other(format!(
        "An error was signalled by the server - {kind}: {detail}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_checked_is_the_address_connected_to() {
        let policy = OutboundPolicy::parse(&["redis://cache:6379"]).unwrap();
        let target = |address: &str| redis_target(&policy, address).map(|i| i.addr().to_string());
        assert_eq!(target("redis://cache:6379"), Ok("cache:6379".into()));
        assert_eq!(target("redis://cache"), Ok("cache:6379".into()));
        assert_eq!(target("redis://:pw@cache:6379/1"), Ok("cache:6379".into()));
        for hidden in [
            "redis://evil:6380#@cache:6379",
            "redis://evil:6380?@cache:6379",
            "redis://evil:6380?x=@cache:6379",
            "redis://evil#@cache",
        ] {
            assert_eq!(target(hidden), Err(Refused::NotAllowed), "{hidden}");
        }
        let v6 = OutboundPolicy::parse(&["redis://[::1]:7"]).unwrap();
        assert!(redis_target(&v6, "redis://[::1]:7").is_ok());
        let any = OutboundPolicy::parse(&["*://*:*"]).unwrap();
        assert_eq!(
            redis_target(&any, "unix://localhost/run/redis.sock").map(drop),
            Err(Refused::NotAllowed)
        );
    }

    #[test]
    fn nested_replies_are_flattened_in_order() {
        let reply = Value::Array(vec![
            Value::Int(1),
            Value::Array(vec![Value::BulkString(b"a".to_vec()), Value::Nil]),
            Value::Okay,
            Value::SimpleString("QUEUED".into()),
        ]);
        let mut out = Vec::new();
        flatten(reply, &mut out).unwrap();
        let debug: Vec<String> = out.iter().map(|r| format!("{r:?}")).collect();
        assert_eq!(
            debug,
            vec![
                format!("{:?}", RedisResult::Int64(1)),
                format!("{:?}", RedisResult::Binary(b"a".to_vec())),
                format!("{:?}", RedisResult::Nil),
                format!("{:?}", RedisResult::Status("OK".into())),
                format!("{:?}", RedisResult::Status("QUEUED".into())),
            ]
        );
    }
}
