//! [`SpinPostgres`]: the core's PostgreSQL seam over `spin_sdk::pg4`
//! (Spin's `spin:postgres/postgres@4.0.0`). The connection is opened on
//! first use and opened again after a failure, so a run outlives a
//! PostgreSQL restart; Spin pools the sessions behind it. Each session
//! opened begins with the caller's set-up statement, if any (settings such
//! as timeouts, which last for the session).

use flashspin_core::database::{Database, DatabaseError, SqlValue};
use spin_sdk::pg4::{Connection, ParameterValue, PgError, QueryError};

/// The Spin variable holding the PostgreSQL URL
/// (`postgres://user:password@host:port/db`); empty when orders stay in
/// Redis only.
pub const ADDRESS_VARIABLE: &str = "pg_address";

pub struct SpinPostgres {
    address: String,
    setup: Option<String>,
    conn: Option<Connection>,
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

    fn open(&self) -> Result<Connection, DatabaseError> {
        let conn = Connection::open(&self.address).map_err(to_core_error)?;
        if let Some(setup) = &self.setup {
            conn.execute(setup, &[]).map_err(to_core_error)?;
        }
        Ok(conn)
    }
}

impl Database for SpinPostgres {
    /// Spin's pg4 client blocks: the future is ready when polled.
    async fn execute(
        &mut self,
        statement: &str,
        params: &[SqlValue],
    ) -> Result<u64, DatabaseError> {
        let params: Vec<ParameterValue> = params
            .iter()
            .map(|p| match p {
                SqlValue::Int(i) => ParameterValue::Int64(*i),
                SqlValue::Text(s) => ParameterValue::Str(s.clone()),
                SqlValue::Null => ParameterValue::DbNull,
                SqlValue::IntArray(v) => ParameterValue::ArrayInt64(v.clone()),
                SqlValue::TextArray(v) => ParameterValue::ArrayStr(v.clone()),
            })
            .collect();
        let conn = match self.conn.take() {
            Some(conn) => conn,
            None => self.open()?,
        };
        let result = conn.execute(statement, &params).map_err(to_core_error);
        // A connection that failed may be dead; the next call opens another.
        if result.is_ok() {
            self.conn = Some(conn);
        }
        result
    }
}

fn to_core_error(e: PgError) -> DatabaseError {
    match e {
        PgError::ConnectionFailed(m) => DatabaseError::Unreachable(m),
        PgError::QueryFailed(QueryError::DbError(db)) => DatabaseError::Refused {
            code: db.code,
            message: db.message,
        },
        PgError::QueryFailed(QueryError::Text(m)) => DatabaseError::Other(m),
        PgError::BadParameter(m) | PgError::ValueConversionFailed(m) | PgError::Other(m) => {
            DatabaseError::Other(m)
        }
    }
}
