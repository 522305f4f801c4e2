//! The one seam between the core and PostgreSQL, like [`crate::redis`] is
//! for Redis: the core writes statements and their parameters, an adapter
//! (for Spin: `flashspin-spin` over `spin_sdk::pg4`) runs them. Only what the
//! order exporter needs: statements that return a row count.

use std::fmt;

/// One parameter of a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlValue {
    Int(i64),
    Text(String),
    Null,
    /// A `bigint[]`, elements possibly NULL.
    IntArray(Vec<Option<i64>>),
    /// A `text[]`, elements possibly NULL.
    TextArray(Vec<Option<String>>),
}

/// PostgreSQL could not be used, or refused a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseError {
    /// No connection: the server is down, unreachable or refuses us.
    Unreachable(String),
    /// The server refused the statement, with its SQLSTATE code.
    Refused { code: String, message: String },
    /// Anything else (a parameter the adapter could not send, a lost
    /// connection in the middle of a statement...).
    Other(String),
}

impl DatabaseError {
    /// SQLSTATE `42P01` or `42703`: a table or a column is not there (yet),
    /// i.e. the database is behind the migrations.
    pub fn is_missing_schema(&self) -> bool {
        matches!(self, DatabaseError::Refused { code, .. } if code == "42P01" || code == "42703")
    }
}

impl DatabaseError {
    /// Whether trying again later may succeed: no connection, a connection
    /// lost, or a server that is shutting down or out of resources
    /// (SQLSTATE classes 08, 53, 57). A refused statement is not.
    pub fn is_transient(&self) -> bool {
        match self {
            DatabaseError::Unreachable(_) | DatabaseError::Other(_) => true,
            DatabaseError::Refused { code, .. } => ["08", "53", "57"]
                .iter()
                .any(|class| code.starts_with(class)),
        }
    }
}

impl fmt::Display for DatabaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseError::Unreachable(m) => write!(f, "unreachable: {m}"),
            DatabaseError::Refused { code, message } => write!(f, "refused ({code}): {message}"),
            DatabaseError::Other(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for DatabaseError {}

/// Something that runs statements on one PostgreSQL session.
pub trait Database {
    /// Runs a statement; returns how many rows it touched.
    fn execute(&mut self, statement: &str, params: &[SqlValue]) -> Result<u64, DatabaseError>;
}
