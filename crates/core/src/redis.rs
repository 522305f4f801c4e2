//! The one seam between the core and Redis. The core builds commands and
//! parses replies; an adapter (for Spin: `flashspin-spin`) sends them. The
//! types mirror what Spin's `execute` can carry: integer or binary arguments,
//! and a flat list of nil, status, integer and binary replies.

use std::fmt;

/// One argument of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arg<'a> {
    Int(i64),
    Bytes(&'a [u8]),
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(s: &'a str) -> Self {
        Arg::Bytes(s.as_bytes())
    }
}

impl From<i64> for Arg<'_> {
    fn from(i: i64) -> Self {
        Arg::Int(i)
    }
}

/// One element of a (flattened) reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Nil,
    Status(String),
    Int(i64),
    Bytes(Vec<u8>),
}

/// Redis could not be used. Every variant means the same to a client
/// (try again later); the text is for the logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisError {
    /// No address configured, connection refused, timed out...
    Unreachable(String),
    /// The server answered with an error.
    Server(String),
    /// The reply did not have the shape the caller expected.
    UnexpectedReply(String),
}

impl fmt::Display for RedisError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisError::Unreachable(m) => write!(f, "unreachable: {m}"),
            RedisError::Server(m) => write!(f, "server error: {m}"),
            RedisError::UnexpectedReply(m) => write!(f, "unexpected reply: {m}"),
        }
    }
}

impl std::error::Error for RedisError {}

impl RedisError {
    /// Whether Redis could not serve the request right now (unreachable,
    /// loading, busy, failing over, out of memory), as opposed to a bug on
    /// our side: a Lua error, a wrong-type command or a reply of the wrong
    /// shape. An outage is worth a retry; a bug is not.
    pub fn is_outage(&self) -> bool {
        match self {
            RedisError::Unreachable(_) => true,
            RedisError::Server(message) => {
                message.contains("max number of clients reached")
                    || !BUG_MARKERS.iter().any(|m| message.contains(m))
            }
            RedisError::UnexpectedReply(_) => false,
        }
    }
}

/// What marks an error reply as our own fault rather than the server's
/// state: a generic `ERR` (Spin's client files those under `ResponseError`),
/// which every Lua runtime error is, and commands on a key of the wrong
/// type. Other codes (`LOADING`, `BUSY`, `READONLY`, `OOM`, `MASTERDOWN`,
/// `TRYAGAIN`...) say the server cannot serve now, also when a script's
/// `redis.call` meets them (Redis 7 then adds `script: ..., on
/// @user_script:N.`, so that text marks nothing); so does the one `ERR`
/// that is about capacity, `max number of clients reached`.
const BUG_MARKERS: &[&str] = &["ResponseError", "ERR ", "WRONGTYPE"];

/// Something that can run a Redis command. Async, so that an instance
/// serving several requests at once (a WASI 0.3 component) waits for Redis
/// without holding up the others; an adapter over a blocking client (WASI
/// 0.2, the tests' native one) answers at once.
#[allow(async_fn_in_trait)] // Wasm is single-threaded: no `Send` to promise.
pub trait Redis {
    async fn execute(&mut self, command: &str, args: &[Arg<'_>]) -> Result<Vec<Reply>, RedisError>;

    /// Runs a command whose second run, right after a first, is harmless
    /// (a read, `PING`, a script marked `--@ replayable`). When the
    /// connection breaks under it, the command may or may not have run;
    /// such a command an adapter may send once more on a fresh connection,
    /// where any other must fail.
    /// An adapter that opens a connection per request has nothing to retry
    /// on and runs it as [`Redis::execute`].
    async fn execute_replayable(
        &mut self,
        command: &str,
        args: &[Arg<'_>],
    ) -> Result<Vec<Reply>, RedisError> {
        self.execute(command, args).await
    }

    /// Called after a write the client is about to be told of, which must
    /// survive a failover (an order bought or changed, a lottery purchase):
    /// returns once the node that ran the last command has passed its
    /// writes to the replicas the adapter waits for (`WAIT`), or its time
    /// is up. An adapter that waits for no replica does nothing.
    async fn confirm_durable(&mut self) -> Result<(), RedisError> {
        Ok(())
    }
}

/// `scheme://host:port` with `password` as its user info
/// (`scheme://:password@host:port`), percent-encoded as URLs require; the
/// address unchanged when there is no password. The password travels apart
/// from the address because the address is also an `allowed_outbound_hosts`
/// entry, where Spin refuses user info.
pub fn url_with_password(address: &str, password: &str) -> String {
    match address.split_once("://") {
        Some((scheme, rest)) if !password.is_empty() => {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            let mut encoded = String::with_capacity(password.len() * 3);
            for byte in password.bytes() {
                if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                    encoded.push(char::from(byte));
                } else {
                    encoded.push('%');
                    encoded.push(char::from(HEX[usize::from(byte >> 4)]));
                    encoded.push(char::from(HEX[usize::from(byte & 15)]));
                }
            }
            format!("{scheme}://:{encoded}@{rest}")
        }
        _ => address.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn outages_are_told_from_bugs() {
        use super::RedisError::{Server, UnexpectedReply, Unreachable};
        for outage in [
            Unreachable("Connection refused (os error 111)".into()),
            Server("LOADING Redis is loading the dataset in memory".into()),
            Server("script gate: An error was signalled by the server - BusyLoadingError: Redis is loading".into()),
            Server("script buy: BUSY Redis is busy running a script".into()),
            Server("OOM: command not allowed when used memory > 'maxmemory'".into()),
            Server("READONLY You can't write against a read only replica.".into()),
            Server("OOM command not allowed when used memory > 'maxmemory'. script: f_x, on @user_script:57.".into()),
            Server("script gate: An error was signalled by the server - ResponseError: max number of clients reached".into()),
            Server("ERR max number of clients reached".into()),
            Server("CLUSTERDOWN The cluster is down".into()),
            Server("script gate: An error was signalled by the server - TryAgain: Multiple keys request during rehashing of slot".into()),
        ] {
            assert!(outage.is_outage(), "{outage}");
        }
        for bug in [
            Server("script gate: An error was signalled by the server - ResponseError: ERR user_script:3: Script attempted to access nonexistent global variable 'LOADING'".into()),
            Server("WRONGTYPE: Operation against a key holding the wrong kind of value".into()),
            Server("ERR user_script:1: attempt to compare number with nil".into()),
            UnexpectedReply("script gate: wanted an integer, got None".into()),
        ] {
            assert!(!bug.is_outage(), "{bug}");
        }
    }

    use super::url_with_password;

    #[test]
    fn the_password_becomes_encoded_user_info() {
        assert_eq!(url_with_password("redis://h:1", ""), "redis://h:1");
        assert_eq!(url_with_password("redis://h:1", "pw"), "redis://:pw@h:1");
        assert_eq!(
            url_with_password("rediss://h:6380", "a/b@c d#"),
            "rediss://:a%2Fb%40c%20d%23@h:6380"
        );
    }
}
