//! [`SpinRedis`]: the core's Redis seam over Spin's outbound Redis. On WASI
//! 0.2 a connection is opened per request (the instance, and so the
//! connection, lives for one request). On WASI 0.3 an instance serves many
//! requests, several at once, and they share one connection it keeps: opened
//! on first use, dropped when it fails to reach Redis, so that the next
//! request opens a fresh one.

use flashspin_core::redis::{Arg, Redis, RedisError, Reply, url_with_password};

/// The Spin variable holding the Redis URL, `redis[s]://host[:port]`.
pub const ADDRESS_VARIABLE: &str = "redis_address";

/// The Spin variable holding the Redis password; empty for none. It cannot
/// ride in `redis_address`, which is also an `allowed_outbound_hosts` entry,
/// where Spin refuses user info.
pub const PASSWORD_VARIABLE: &str = "redis_password";

/// The address from the `redis_address` variable, authenticated with
/// `redis_password` when that is set.
fn address() -> Result<String, RedisError> {
    use flashspin_core::config::Variables;
    let variable = |name: &str| {
        crate::variables::SpinVariables
            .get(name)
            .map_err(|e| RedisError::Unreachable(format!("variable {name}: {e}")))
    };
    Ok(url_with_password(
        &variable(ADDRESS_VARIABLE)?,
        &variable(PASSWORD_VARIABLE)?,
    ))
}

/// The arguments as Spin's client takes them.
macro_rules! params {
    ($sdk:path, $args:expr) => {{
        use $sdk as redis_sdk;
        $args
            .iter()
            .map(|a| match *a {
                Arg::Int(i) => redis_sdk::RedisParameter::Int64(i),
                Arg::Bytes(b) => redis_sdk::RedisParameter::Binary(b.to_vec()),
            })
            .collect::<Vec<_>>()
    }};
}

/// Spin's replies as the core reads them.
macro_rules! replies {
    ($sdk:path, $results:expr) => {{
        use $sdk as redis_sdk;
        $results
            .into_iter()
            .map(|r| match r {
                redis_sdk::RedisResult::Nil => Reply::Nil,
                redis_sdk::RedisResult::Status(s) => Reply::Status(s),
                redis_sdk::RedisResult::Int64(i) => Reply::Int(i),
                redis_sdk::RedisResult::Binary(b) => Reply::Bytes(b.into()),
            })
            .collect()
    }};
}

/// Spin's errors as the core's: an error reply from the server, or no
/// server to talk to.
macro_rules! core_error {
    ($sdk:path, $e:expr) => {{
        use $sdk as redis_sdk;
        match $e {
            redis_sdk::Error::InvalidAddress => {
                RedisError::Unreachable("address invalid or not in allowed_outbound_hosts".into())
            }
            redis_sdk::Error::TooManyConnections => {
                RedisError::Unreachable("too many connections".into())
            }
            redis_sdk::Error::TypeError => RedisError::UnexpectedReply("type error".into()),
            redis_sdk::Error::Other(m) if is_server_error(&m) => RedisError::Server(m),
            redis_sdk::Error::Other(m) => RedisError::Unreachable(m),
        }
    }};
}

#[cfg(not(feature = "wasip3"))]
mod imp {
    use super::*;
    use spin_sdk::redis::Connection;

    pub struct SpinRedis {
        conn: Connection,
    }

    impl SpinRedis {
        /// Opens this request's connection.
        pub async fn connect() -> Result<Self, RedisError> {
            let conn =
                Connection::open(&address()?).map_err(|e| core_error!(spin_sdk::redis, e))?;
            Ok(Self { conn })
        }
    }

    impl Redis for SpinRedis {
        /// Spin's WASI 0.2 client blocks: the future is ready when polled.
        async fn execute(
            &mut self,
            command: &str,
            args: &[Arg<'_>],
        ) -> Result<Vec<Reply>, RedisError> {
            let params = params!(spin_sdk::redis, args);
            let results = self
                .conn
                .execute(command, &params)
                .map_err(|e| core_error!(spin_sdk::redis, e))?;
            Ok(replies!(spin_sdk::redis, results))
        }
    }
}

#[cfg(feature = "wasip3")]
mod imp {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;
    use spin_sdk_wasip3::redis::Connection;

    thread_local! {
        /// The instance's connection, shared by the requests it serves.
        static KEPT: RefCell<Option<Rc<Connection>>> = const { RefCell::new(None) };
    }

    pub struct SpinRedis {
        conn: Rc<Connection>,
        /// Whether the connection was already open when this request took
        /// it: one Redis may have closed since (a restart), unseen.
        kept: bool,
    }

    impl SpinRedis {
        /// The instance's connection, opened if it has none.
        pub async fn connect() -> Result<Self, RedisError> {
            if let Some(conn) = KEPT.with(|kept| kept.borrow().clone()) {
                return Ok(Self { conn, kept: true });
            }
            Self::open().await
        }

        /// A fresh connection, kept for the instance's next requests.
        async fn open() -> Result<Self, RedisError> {
            let conn = Connection::open(address()?)
                .await
                .map_err(|e| core_error!(spin_sdk_wasip3::redis, e))?;
            let conn = Rc::new(conn);
            // Two requests may have opened one each; the last one is kept.
            KEPT.with(|kept| *kept.borrow_mut() = Some(conn.clone()));
            Ok(Self { conn, kept: false })
        }
    }

    impl Redis for SpinRedis {
        async fn execute(
            &mut self,
            command: &str,
            args: &[Arg<'_>],
        ) -> Result<Vec<Reply>, RedisError> {
            let params = params!(spin_sdk_wasip3::redis, args);
            match self.conn.execute(command, params).await {
                Ok(results) => Ok(replies!(spin_sdk_wasip3::redis, results)),
                Err(e) => {
                    let e = core_error!(spin_sdk_wasip3::redis, e);
                    if matches!(e, RedisError::Unreachable(_)) {
                        // A dead connection: the next request opens another.
                        KEPT.with(|kept| {
                            let mut kept = kept.borrow_mut();
                            if kept.as_ref().is_some_and(|k| Rc::ptr_eq(k, &self.conn)) {
                                *kept = None;
                            }
                        });
                    }
                    Err(e)
                }
            }
        }

        /// A kept connection that broke is most often one whose Redis went
        /// away between requests (a restart, a failover, an idle timeout):
        /// the command is sent once more on a fresh connection, which only a
        /// command that may run twice allows. Any other fails with the
        /// error, as does a fresh connection's.
        async fn execute_replayable(
            &mut self,
            command: &str,
            args: &[Arg<'_>],
        ) -> Result<Vec<Reply>, RedisError> {
            match self.execute(command, args).await {
                Err(RedisError::Unreachable(_)) if self.kept => {
                    *self = Self::open().await?;
                    self.execute(command, args).await
                }
                other => other,
            }
        }
    }
}

pub use imp::SpinRedis;

/// Spin words an error reply as "An error was signalled by the server - ..."
/// or, for codes its client does not know, "WRONGTYPE: ..."; anything else
/// (refused, timed out, reset) means the server could not be reached.
fn is_server_error(message: &str) -> bool {
    message.contains("signalled by the server")
        || message.split_once(": ").is_some_and(|(code, _)| {
            !code.is_empty() && code.bytes().all(|b| b.is_ascii_uppercase())
        })
}
