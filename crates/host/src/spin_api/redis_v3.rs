//! `spin:redis/redis@3.0.0`: outbound Redis for WASI 0.3 components
//! (spin-sdk 7), as Spin 4.1 provides it. Every function is an `async
//! func`: the host takes what it needs from the store (the connection, a
//! cheap handle to a multiplexed connection, cloned out of the table), then
//! waits for Redis outside it, so that the requests an instance runs at once
//! wait side by side, as on Spin. A connection lives as long as the guest
//! keeps its resource, across requests if the instance keeps it.
//!
//! The address checks, the connection and the mapping of replies and errors
//! are those of `fermyon:spin/redis@2.0.0` (`redis`). Each command counts as
//! a round trip of the request whose guest task sent it, for the request
//! log.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use redis::Value;
use redis::aio::MultiplexedConnection;
use wasmtime::AsContextMut;
use wasmtime::component::{Access, Accessor, Resource};

use super::SpinHost;
use super::fermyon::spin2_0_0::redis as v2;
use super::spin::redis::redis::{
    Error, Host, HostConnection, HostConnectionWithStore, Payload, RedisParameter, RedisResult,
};
use crate::state::RequestState;

/// The host state behind a guest's `connection` resource.
pub struct RedisConnectionV3 {
    conn: MultiplexedConnection,
}

type HostResult<T> = wasmtime::Result<Result<T, Error>>;

impl Host for RequestState {}

impl HostConnection for RequestState {
    async fn drop(&mut self, res: Resource<RedisConnectionV3>) -> wasmtime::Result<()> {
        self.table.delete(res)?;
        self.redis_connections = self.redis_connections.saturating_sub(1);
        Ok(())
    }
}

/// The request counter of the guest task calling the host: the root of its
/// async call stack is the export call the host started for the request.
/// Only known while the host call is first polled, as it is here.
fn request_counter(access: &mut Access<'_, RequestState, SpinHost>) -> Arc<AtomicU32> {
    let root = access
        .as_context_mut()
        .async_call_stack()
        .ok()
        .and_then(|stack| stack.last());
    access.get().redis_commands_of(root)
}

/// The connection behind `res`, counting one command of the calling request.
fn for_command(
    accessor: &Accessor<RequestState, SpinHost>,
    res: &Resource<RedisConnectionV3>,
) -> wasmtime::Result<MultiplexedConnection> {
    accessor.with(|mut access| {
        let counter = request_counter(&mut access);
        let conn = access.get().table.get(res)?.conn.clone();
        counter.fetch_add(1, Ordering::Relaxed);
        Ok(conn)
    })
}

/// Sends `cmd` on `res`'s connection, outside the store.
async fn send<T: redis::FromRedisValue>(
    accessor: &Accessor<RequestState, SpinHost>,
    res: &Resource<RedisConnectionV3>,
    cmd: redis::Cmd,
) -> HostResult<T> {
    let conn = for_command(accessor, res)?;
    Ok(super::redis::send(conn, cmd).await.map_err(from_v2))
}

fn from_v2(e: v2::Error) -> Error {
    match e {
        v2::Error::InvalidAddress => Error::InvalidAddress,
        v2::Error::TooManyConnections => Error::TooManyConnections,
        v2::Error::TypeError => Error::TypeError,
        v2::Error::Other(text) => Error::Other(text),
    }
}

fn result_from_v2(r: v2::RedisResult) -> RedisResult {
    match r {
        v2::RedisResult::Nil => RedisResult::Nil,
        v2::RedisResult::Status(s) => RedisResult::Status(s),
        v2::RedisResult::Int64(i) => RedisResult::Int64(i),
        v2::RedisResult::Binary(b) => RedisResult::Binary(b),
    }
}

impl HostConnectionWithStore<RequestState> for SpinHost {
    async fn open(
        accessor: &Accessor<RequestState, Self>,
        address: String,
    ) -> HostResult<Resource<RedisConnectionV3>> {
        // Check and reserve a connection in the store, connect outside it.
        let target = accessor.with(|mut access| {
            let state = access.get();
            let info = super::redis::checked_target(&state.component, &address)?;
            if state.redis_connections >= state.redis_connection_limit {
                return Err(v2::Error::TooManyConnections);
            }
            state.redis_connections += 1;
            Ok(info)
        });
        let info = match target {
            Ok(info) => info,
            Err(e) => return Ok(Err(from_v2(e))),
        };
        let connected = super::redis::connect(info).await;
        accessor.with(|mut access| {
            let state = access.get();
            match connected {
                Ok(conn) => Ok(Ok(state.table.push(RedisConnectionV3 { conn })?)),
                Err(e) => {
                    state.redis_connections = state.redis_connections.saturating_sub(1);
                    Ok(Err(from_v2(e)))
                }
            }
        })
    }

    async fn publish(
        accessor: &Accessor<RequestState, Self>,
        res: Resource<RedisConnectionV3>,
        channel: String,
        payload: Payload,
    ) -> HostResult<()> {
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(channel).arg(payload);
        send::<Value>(accessor, &res, cmd)
            .await
            .map(|r| r.map(drop))
    }

    async fn get(
        accessor: &Accessor<RequestState, Self>,
        res: Resource<RedisConnectionV3>,
        key: String,
    ) -> HostResult<Option<Payload>> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(key);
        send(accessor, &res, cmd).await
    }

    async fn set(
        accessor: &Accessor<RequestState, Self>,
        res: Resource<RedisConnectionV3>,
        key: String,
        value: Payload,
    ) -> HostResult<()> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(value);
        send::<Value>(accessor, &res, cmd)
            .await
            .map(|r| r.map(drop))
    }

    async fn incr(
        accessor: &Accessor<RequestState, Self>,
        res: Resource<RedisConnectionV3>,
        key: String,
    ) -> HostResult<i64> {
        let mut cmd = redis::cmd("INCRBY");
        cmd.arg(key).arg(1);
        send(accessor, &res, cmd).await
    }

    async fn del(
        accessor: &Accessor<RequestState, Self>,
        res: Resource<RedisConnectionV3>,
        keys: Vec<String>,
    ) -> HostResult<u32> {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(keys);
        send(accessor, &res, cmd).await
    }

    async fn sadd(
        accessor: &Accessor<RequestState, Self>,
        res: Resource<RedisConnectionV3>,
        key: String,
        values: Vec<String>,
    ) -> HostResult<u32> {
        let mut cmd = redis::cmd("SADD");
        cmd.arg(key).arg(values);
        send(accessor, &res, cmd).await
    }

    async fn smembers(
        accessor: &Accessor<RequestState, Self>,
        res: Resource<RedisConnectionV3>,
        key: String,
    ) -> HostResult<Vec<String>> {
        let mut cmd = redis::cmd("SMEMBERS");
        cmd.arg(key);
        send(accessor, &res, cmd).await
    }

    async fn srem(
        accessor: &Accessor<RequestState, Self>,
        res: Resource<RedisConnectionV3>,
        key: String,
        values: Vec<String>,
    ) -> HostResult<u32> {
        let mut cmd = redis::cmd("SREM");
        cmd.arg(key).arg(values);
        send(accessor, &res, cmd).await
    }

    async fn execute(
        accessor: &Accessor<RequestState, Self>,
        res: Resource<RedisConnectionV3>,
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
        Ok(send::<Value>(accessor, &res, cmd).await?.and_then(|value| {
            super::redis::flattened(value)
                .map(|results| results.into_iter().map(result_from_v2).collect())
                .map_err(from_v2)
        }))
    }
}
