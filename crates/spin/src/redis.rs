//! [`SpinRedis`]: the core's Redis seam over Spin's outbound Redis, routed
//! over a Redis Cluster by the core's [`ClusterRedis`] (Spin's client does
//! not follow `MOVED` or `ASK`); a single Redis, or a proxy, gets every
//! command as before. On WASI 0.2 connections are opened per request (the
//! instance, and so the connection, lives for one request), and a
//! cluster's layout is kept in the key-value store `default` when
//! `redis_cluster` says the address is a cluster. On WASI 0.3 an instance
//! serves many requests, several at once, and they share the connections
//! it keeps, one per node, opened on first use and dropped when they fail
//! to reach Redis, and the layout it learnt.

use flashspin_core::cluster::{ClusterRedis, Connector, MapCache, SlotMap};
use flashspin_core::redis::{Arg, Redis, RedisError, Reply, url_with_password};

/// The Spin variable holding the Redis URL, `redis[s]://host[:port]`.
pub const ADDRESS_VARIABLE: &str = "redis_address";

/// The Spin variable holding the Redis password; empty for none. It cannot
/// ride in `redis_address`, which is also an `allowed_outbound_hosts` entry,
/// where Spin refuses user info.
pub const PASSWORD_VARIABLE: &str = "redis_password";

/// The Spin variable saying whether `redis_address` is a node of a Redis
/// Cluster (`true`), so that its layout is worth keeping between requests;
/// `false` by default. A cluster is routed either way.
pub const CLUSTER_VARIABLE: &str = "redis_cluster";

/// The Spin variable holding how many replicas an acknowledged order or
/// purchase waits for (`WAIT`) before the client is told; `0`, the
/// default, waits for none.
pub const WAIT_REPLICAS_VARIABLE: &str = "redis_wait_replicas";

/// The longest a write waits for its replicas: the latency a purchase
/// gains while a replica is down or far behind.
const REPLICA_WAIT_MS: u32 = 100;

fn variable(name: &str) -> Result<String, RedisError> {
    use flashspin_core::config::Variables;
    crate::variables::SpinVariables
        .get(name)
        .map_err(|e| RedisError::Unreachable(format!("variable {name}: {e}")))
}

/// Where the app's Redis is: the configured address and password.
#[derive(Clone)]
struct Address {
    /// `redis[s]://host[:port]`, as configured.
    seed: String,
    password: String,
}

impl Address {
    fn read() -> Result<Self, RedisError> {
        Ok(Self {
            seed: variable(ADDRESS_VARIABLE)?,
            password: variable(PASSWORD_VARIABLE)?,
        })
    }

    /// The configured address, authenticated with the password if any.
    fn seed_url(&self) -> String {
        url_with_password(&self.seed, &self.password)
    }

    /// A cluster node's address (`host:port`), with the configured
    /// address's scheme and password: the nodes of one cluster share them.
    fn node_url(&self, node: &str) -> String {
        let scheme = self.seed.split_once("://").map_or("redis", |(s, _)| s);
        url_with_password(&format!("{scheme}://{node}"), &self.password)
    }
}

/// The core's Redis over Spin's, routed over a cluster when it is one.
pub struct SpinRedis {
    routed: ClusterRedis<imp::SpinConnector, imp::Layout>,
}

impl SpinRedis {
    /// The request's Redis; connections open on first use.
    pub async fn connect() -> Result<Self, RedisError> {
        let address = Address::read()?;
        let cluster = variable(CLUSTER_VARIABLE).is_ok_and(|v| v.trim() == "true");
        let layout = imp::Layout::new(&address.seed, cluster);
        let replicas = match variable(WAIT_REPLICAS_VARIABLE)?.trim() {
            "" => 0,
            n => n.parse::<u32>().map_err(|_| {
                RedisError::Unreachable(format!(
                    "variable {WAIT_REPLICAS_VARIABLE}: {n:?} is not a number of replicas"
                ))
            })?,
        };
        Ok(Self {
            routed: ClusterRedis::new(imp::SpinConnector { address }, layout)
                .wait_for_replicas(replicas, REPLICA_WAIT_MS),
        })
    }
}

impl Redis for SpinRedis {
    async fn execute(&mut self, command: &str, args: &[Arg<'_>]) -> Result<Vec<Reply>, RedisError> {
        self.routed.execute(command, args).await
    }

    async fn execute_replayable(
        &mut self,
        command: &str,
        args: &[Arg<'_>],
    ) -> Result<Vec<Reply>, RedisError> {
        self.routed.execute_replayable(command, args).await
    }

    async fn confirm_durable(&mut self) -> Result<(), RedisError> {
        self.routed.confirm_durable().await
    }
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

    /// Opens a connection per node and request.
    pub struct SpinConnector {
        pub address: Address,
    }

    impl Connector for SpinConnector {
        type Connection = SpinConnection;

        async fn open_seed(&mut self) -> Result<SpinConnection, RedisError> {
            open(&self.address.seed_url())
        }

        async fn open(&mut self, node: &str) -> Result<SpinConnection, RedisError> {
            open(&self.address.node_url(node))
        }

        async fn pause(&mut self, duration: std::time::Duration) {
            crate::time::sleep(duration).await;
        }
    }

    fn open(url: &str) -> Result<SpinConnection, RedisError> {
        let conn = Connection::open(url).map_err(|e| core_error!(spin_sdk::redis, e))?;
        Ok(SpinConnection(conn))
    }

    pub struct SpinConnection(Connection);

    impl Redis for SpinConnection {
        /// Spin's WASI 0.2 client blocks: the future is ready when polled.
        async fn execute(
            &mut self,
            command: &str,
            args: &[Arg<'_>],
        ) -> Result<Vec<Reply>, RedisError> {
            let params = params!(spin_sdk::redis, args);
            let results = self
                .0
                .execute(command, &params)
                .map_err(|e| core_error!(spin_sdk::redis, e))?;
            Ok(replies!(spin_sdk::redis, results))
        }
    }

    /// A cluster's layout, kept between requests (each its own instance)
    /// in the key-value store `default` when the address is a cluster:
    /// read once per request, written when it changed. A store that fails
    /// costs the layout, not the request.
    pub struct Layout {
        key: Option<String>,
    }

    impl Layout {
        pub fn new(seed: &str, cluster: bool) -> Self {
            Self {
                // An address changed, or another app's cluster, never
                // lends its layout.
                key: cluster.then(|| format!("flashspin:redis-layout:{seed}")),
            }
        }
    }

    impl MapCache for Layout {
        fn load(&mut self) -> Option<SlotMap> {
            let key = self.key.as_ref()?;
            let store = spin_sdk::key_value::Store::open_default().ok()?;
            let text = store.get(key).ok()??;
            SlotMap::from_text(std::str::from_utf8(&text).ok()?)
        }

        fn save(&mut self, map: &SlotMap) {
            let Some(key) = &self.key else {
                return;
            };
            if let Ok(store) = spin_sdk::key_value::Store::open_default() {
                let _ = store.set(key, map.to_text().as_bytes());
            }
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
        /// The instance's connections, by node (`""` for the configured
        /// address), shared by the requests it serves.
        static KEPT: RefCell<Vec<(String, Rc<Connection>)>> = const { RefCell::new(Vec::new()) };
        /// The cluster's layout as the instance learnt it, by seed address.
        static LAYOUT: RefCell<Option<(String, SlotMap)>> = const { RefCell::new(None) };
    }

    /// Hands out the instance's connections, opening those it lacks.
    pub struct SpinConnector {
        pub address: Address,
    }

    impl Connector for SpinConnector {
        type Connection = SpinConnection;

        async fn open_seed(&mut self) -> Result<SpinConnection, RedisError> {
            SpinConnection::take(String::new(), self.address.seed_url()).await
        }

        async fn open(&mut self, node: &str) -> Result<SpinConnection, RedisError> {
            SpinConnection::take(node.to_string(), self.address.node_url(node)).await
        }

        async fn pause(&mut self, duration: std::time::Duration) {
            crate::time::sleep(duration).await;
        }
    }

    /// One of the instance's connections, as a request uses it.
    pub struct SpinConnection {
        node: String,
        url: String,
        conn: Rc<Connection>,
        /// Whether the connection was already open when this request took
        /// it: its Redis may have closed it since (a restart), unseen.
        kept: bool,
    }

    impl SpinConnection {
        /// The instance's connection to `node`, opened if it has none.
        async fn take(node: String, url: String) -> Result<Self, RedisError> {
            let kept = KEPT.with(|kept| {
                kept.borrow()
                    .iter()
                    .find(|(n, _)| *n == node)
                    .map(|(_, c)| c.clone())
            });
            match kept {
                Some(conn) => Ok(Self {
                    node,
                    url,
                    conn,
                    kept: true,
                }),
                None => Self::open(node, url).await,
            }
        }

        /// A fresh connection, kept for the instance's next requests.
        async fn open(node: String, url: String) -> Result<Self, RedisError> {
            let conn = Connection::open(url.clone())
                .await
                .map_err(|e| core_error!(spin_sdk_wasip3::redis, e))?;
            let conn = Rc::new(conn);
            // Two requests may have opened one each; the last one is kept.
            KEPT.with(|kept| {
                let mut kept = kept.borrow_mut();
                kept.retain(|(n, _)| *n != node);
                kept.push((node.clone(), conn.clone()));
            });
            Ok(Self {
                node,
                url,
                conn,
                kept: false,
            })
        }
    }

    impl Redis for SpinConnection {
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
                            kept.borrow_mut()
                                .retain(|(_, k)| !Rc::ptr_eq(k, &self.conn));
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
                    *self = Self::open(self.node.clone(), self.url.clone()).await?;
                    self.execute(command, args).await
                }
                other => other,
            }
        }
    }

    /// A cluster's layout, kept by the instance for its next requests.
    pub struct Layout {
        seed: String,
    }

    impl Layout {
        /// The instance keeps what it learns whatever `redis_cluster`
        /// says: its memory costs nothing to read.
        pub fn new(seed: &str, _cluster: bool) -> Self {
            Self {
                seed: seed.to_string(),
            }
        }
    }

    impl MapCache for Layout {
        fn load(&mut self) -> Option<SlotMap> {
            LAYOUT.with(|layout| match &*layout.borrow() {
                Some((seed, map)) if *seed == self.seed => Some(map.clone()),
                _ => None,
            })
        }

        fn save(&mut self, map: &SlotMap) {
            LAYOUT.with(|layout| *layout.borrow_mut() = Some((self.seed.clone(), map.clone())));
        }
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
