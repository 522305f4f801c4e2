//! PostgreSQL connections kept between requests, as Spin keeps them: one
//! pool per component and address (Spin's `PooledTokioClientFactory`, a
//! deadpool of at most 64 connections, recycled with deadpool's `Clean`
//! method). A guest's `open` takes a connection from the pool, or waits
//! for one when 64 are in use; dropping the resource (or the instance
//! ending) gives it back. Without this the host would pay a new connection,
//! and a new server process, for every request, and measure PostgreSQL far
//! slower than Spin runs it.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::{Client, Config, NoTls};

/// Connections of one pool at once (Spin's `max_size`).
const MAX_CONNECTIONS: usize = 64;

/// What deadpool-postgres runs on a connection before handing it out
/// again (`RecyclingMethod::Clean`): the session as a fresh one would be.
const CLEAN: &str = "CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; UNLISTEN *; \
     SELECT pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES;";

/// A component's pools, by connection string.
#[derive(Default)]
pub struct PgPools {
    pools: Mutex<HashMap<String, Arc<Pool>>>,
}

impl std::fmt::Debug for PgPools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pools = self.pools.lock().unwrap();
        f.debug_struct("PgPools")
            .field("addresses", &pools.len())
            .finish()
    }
}

impl PgPools {
    /// A connection to `address` (already parsed as `config`).
    pub async fn get(
        &self,
        address: &str,
        config: &Config,
    ) -> Result<Pooled, tokio_postgres::Error> {
        let pool = {
            let mut pools = self.pools.lock().unwrap();
            pools.entry(address.to_string()).or_default().clone()
        };
        pool.get(config).await
    }
}

struct Pool {
    idle: Mutex<Vec<Client>>,
    permits: Arc<Semaphore>,
}

impl Default for Pool {
    fn default() -> Self {
        Self {
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
        }
    }
}

impl Pool {
    async fn get(self: &Arc<Self>, config: &Config) -> Result<Pooled, tokio_postgres::Error> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the pool's semaphore is never closed");
        loop {
            let idle = self.idle.lock().unwrap().pop();
            let Some(client) = idle else { break };
            // A connection that died or cannot be cleaned is dropped.
            if !client.is_closed() && client.batch_execute(CLEAN).await.is_ok() {
                return Ok(self.pooled(client, permit));
            }
        }
        let (client, connection) = config.connect(NoTls).await?;
        // The connection's task ends when its client is dropped.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(self.pooled(client, permit))
    }

    fn pooled(self: &Arc<Self>, client: Client, permit: OwnedSemaphorePermit) -> Pooled {
        Pooled {
            client: Some(client),
            pool: self.clone(),
            _permit: permit,
        }
    }
}

/// A connection taken from a pool; back to it when dropped.
pub struct Pooled {
    client: Option<Client>,
    pool: Arc<Pool>,
    _permit: OwnedSemaphorePermit,
}

impl Deref for Pooled {
    type Target = Client;

    fn deref(&self) -> &Client {
        self.client.as_ref().expect("present until dropped")
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(client) = self.client.take()
            && !client.is_closed()
        {
            self.pool.idle.lock().unwrap().push(client);
        }
    }
}
