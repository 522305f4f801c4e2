//! [`SpinPostgres`]: the core's PostgreSQL seam over Spin's
//! `spin:postgres/postgres@4`: spin-sdk 5's blocking `pg4` client on WASI
//! 0.2, spin-sdk 7's async one on WASI 0.3. The connection is opened on
//! first use and opened again after a failure, so a run outlives a
//! PostgreSQL restart; Spin pools the sessions behind it. Each session
//! opened begins with the caller's set-up statement, if any (settings such
//! as timeouts, which last for the session).

use flashspin_core::database::{Database, DatabaseError, SqlValue};

/// The Spin variable holding the PostgreSQL URL
/// (`postgres://user:password@host:port/db`); empty when orders stay in
/// Redis only.
pub const ADDRESS_VARIABLE: &str = "pg_address";

/// The parameters as Spin's client takes them.
macro_rules! params {
    ($sdk:path, $params:expr) => {{
        use $sdk as pg_sdk;
        $params
            .iter()
            .map(|p| match p {
                SqlValue::Int(i) => pg_sdk::ParameterValue::Int64(*i),
                SqlValue::Text(s) => pg_sdk::ParameterValue::Str(s.clone()),
                SqlValue::Null => pg_sdk::ParameterValue::DbNull,
                SqlValue::IntArray(v) => pg_sdk::ParameterValue::ArrayInt64(v.clone()),
                SqlValue::TextArray(v) => pg_sdk::ParameterValue::ArrayStr(v.clone()),
            })
            .collect::<Vec<_>>()
    }};
}

/// Spin's errors as the core's: no server, a statement the server
/// refused (with its SQLSTATE), or anything else.
macro_rules! core_error {
    ($sdk:path, $e:expr) => {{
        use $sdk as pg_sdk;
        match $e {
            pg_sdk::PgError::ConnectionFailed(m) => DatabaseError::Unreachable(m),
            pg_sdk::PgError::QueryFailed(pg_sdk::QueryError::DbError(db)) => {
                DatabaseError::Refused {
                    code: db.code,
                    message: db.message,
                }
            }
            pg_sdk::PgError::QueryFailed(pg_sdk::QueryError::Text(m)) => DatabaseError::Other(m),
            pg_sdk::PgError::BadParameter(m)
            | pg_sdk::PgError::ValueConversionFailed(m)
            | pg_sdk::PgError::Other(m) => DatabaseError::Other(m),
        }
    }};
}

pub struct SpinPostgres {
    address: String,
    setup: Option<String>,
    conn: Option<imp::Connection>,
}

impl SpinPostgres {
    /// A database at `address`; nothing is opened yet.
    pub fn new(address: String) -> Self {
        Self {
            address,
            setup: None,
            conn: None,
        }
    }

    /// Runs `statement` first on every session this opens.
    pub fn with_setup(mut self, statement: String) -> Self {
        self.setup = Some(statement);
        self
    }
}

impl Database for SpinPostgres {
    async fn execute(
        &mut self,
        statement: &str,
        params: &[SqlValue],
    ) -> Result<u64, DatabaseError> {
        let conn = match self.conn.take() {
            Some(conn) => conn,
            None => {
                let conn = imp::open(&self.address).await?;
                if let Some(setup) = &self.setup {
                    imp::execute(&conn, setup, &[]).await?;
                }
                conn
            }
        };
        let result = imp::execute(&conn, statement, params).await;
        // A connection that failed may be dead; the next call opens another.
        if result.is_ok() {
            self.conn = Some(conn);
        }
        result
    }
}

#[cfg(not(feature = "wasip3"))]
mod imp {
    use super::*;
    pub use spin_sdk::pg4::Connection;

    /// Spin's WASI 0.2 client blocks: the future is ready when polled.
    pub async fn open(address: &str) -> Result<Connection, DatabaseError> {
        Connection::open(address).map_err(|e| core_error!(spin_sdk::pg4, e))
    }

    pub async fn execute(
        conn: &Connection,
        statement: &str,
        params: &[SqlValue],
    ) -> Result<u64, DatabaseError> {
        conn.execute(statement, &params!(spin_sdk::pg4, params))
            .map_err(|e| core_error!(spin_sdk::pg4, e))
    }
}

#[cfg(feature = "wasip3")]
mod imp {
    use super::*;
    // The interface itself rather than the SDK's wrapper, whose row
    // decoding (chrono and all) would come along: the exporter only writes.
    pub use spin_sdk_wasip3::pg::wit::postgres::Connection;

    pub async fn open(address: &str) -> Result<Connection, DatabaseError> {
        Connection::open_async(address.to_string())
            .await
            .map_err(|e| core_error!(spin_sdk_wasip3::pg, e))
    }

    pub async fn execute(
        conn: &Connection,
        statement: &str,
        params: &[SqlValue],
    ) -> Result<u64, DatabaseError> {
        conn.execute_async(statement.to_string(), params!(spin_sdk_wasip3::pg, params))
            .await
            .map_err(|e| core_error!(spin_sdk_wasip3::pg, e))
    }
}
