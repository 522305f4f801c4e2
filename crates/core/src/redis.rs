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

/// Something that can run a Redis command.
pub trait Redis {
    fn execute(&mut self, command: &str, args: &[Arg<'_>]) -> Result<Vec<Reply>, RedisError>;
}

/// `scheme://host:port` with `password` as its user info
/// (`scheme://:password@host:port`), percent-encoded as URLs require; the
/// address unchanged when there is no password. The password travels apart
/// from the address because the address is also an `allowed_outbound_hosts`
/// entry, where Spin refuses user info.
pub fn url_with_password(address: &str, password: &str) -> String {
    match address.split_once("://") {
        Some((scheme, rest)) if !password.is_empty() => {
            let mut encoded = String::with_capacity(password.len() * 3);
            for byte in password.bytes() {
                if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                    encoded.push(char::from(byte));
                } else {
                    encoded.push_str(&format!("%{byte:02X}"));
                }
            }
            format!("{scheme}://:{encoded}@{rest}")
        }
        _ => address.to_string(),
    }
}

#[cfg(test)]
mod tests {
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
