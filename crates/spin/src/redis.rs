//! [`SpinRedis`]: the core's Redis seam over `spin_sdk::redis`. A connection
//! is opened per request (Spin closes it with the instance).

use flashspin_core::redis::{Arg, Redis, RedisError, Reply, url_with_password};
use spin_sdk::redis::{Connection, Error, RedisParameter, RedisResult};

/// The Spin variable holding the Redis URL, `redis[s]://host[:port]`.
pub const ADDRESS_VARIABLE: &str = "redis_address";

/// The Spin variable holding the Redis password; empty for none. It cannot
/// ride in `redis_address`, which is also an `allowed_outbound_hosts` entry,
/// where Spin refuses user info.
pub const PASSWORD_VARIABLE: &str = "redis_password";

pub struct SpinRedis {
    conn: Connection,
}

impl SpinRedis {
    /// Opens a connection to the address in the `redis_address` variable,
    /// authenticated with `redis_password` when that is set.
    pub fn connect() -> Result<Self, RedisError> {
        let variable = |name: &str| {
            spin_sdk::variables::get(name)
                .map_err(|e| RedisError::Unreachable(format!("variable {name}: {e}")))
        };
        let address =
            url_with_password(&variable(ADDRESS_VARIABLE)?, &variable(PASSWORD_VARIABLE)?);
        let conn = Connection::open(&address).map_err(to_core_error)?;
        Ok(Self { conn })
    }
}

impl Redis for SpinRedis {
    /// Spin's WASI 0.2 client blocks: the future is ready when polled.
    async fn execute(&mut self, command: &str, args: &[Arg<'_>]) -> Result<Vec<Reply>, RedisError> {
        let params: Vec<RedisParameter> = args
            .iter()
            .map(|a| match *a {
                Arg::Int(i) => RedisParameter::Int64(i),
                Arg::Bytes(b) => RedisParameter::Binary(b.to_vec()),
            })
            .collect();
        let results = self.conn.execute(command, &params).map_err(to_core_error)?;
        Ok(results
            .into_iter()
            .map(|r| match r {
                RedisResult::Nil => Reply::Nil,
                RedisResult::Status(s) => Reply::Status(s),
                RedisResult::Int64(i) => Reply::Int(i),
                RedisResult::Binary(b) => Reply::Bytes(b),
            })
            .collect())
    }
}

fn to_core_error(e: Error) -> RedisError {
    match e {
        Error::InvalidAddress => {
            RedisError::Unreachable("address invalid or not in allowed_outbound_hosts".into())
        }
        Error::TooManyConnections => RedisError::Unreachable("too many connections".into()),
        Error::TypeError => RedisError::UnexpectedReply("type error".into()),
        Error::Other(m) if is_server_error(&m) => RedisError::Server(m),
        Error::Other(m) => RedisError::Unreachable(m),
    }
}

/// Spin words an error reply as "An error was signalled by the server - ..."
/// or, for codes its client does not know, "WRONGTYPE: ..."; anything else
/// (refused, timed out, reset) means the server could not be reached.
fn is_server_error(message: &str) -> bool {
    message.contains("signalled by the server")
        || message.split_once(": ").is_some_and(|(code, _)| {
            !code.is_empty() && code.bytes().all(|b| b.is_ascii_uppercase())
        })
}
