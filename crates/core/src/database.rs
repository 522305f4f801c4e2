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
    /// lost, a server that is shutting down or out of resources, a
    /// statement cancelled by a timeout, a lock not had in time, a deadlock
    /// or a serialization failure (SQLSTATE classes 08, 40, 53, 57, and
    /// 55P03). Any other refused statement is not.
    pub fn is_transient(&self) -> bool {
        match self {
            DatabaseError::Unreachable(_) | DatabaseError::Other(_) => true,
            DatabaseError::Refused { code, .. } => {
                code == "55P03"
                    || ["08", "40", "53", "57"]
                        .iter()
                        .any(|class| code.starts_with(class))
            }
        }
    }

    /// Whether the server refused the data itself, which no retry changes
    /// until someone changes the data's rules: a data exception (class 22),
    /// a constraint (class 23) or an exception a trigger raised (P0001).
    pub fn is_refused_data(&self) -> bool {
        matches!(self, DatabaseError::Refused { code, .. }
            if code.starts_with("22") || code.starts_with("23") || code == "P0001")
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
#[allow(async_fn_in_trait)] // Wasm is single-threaded: no `Send` to promise.
pub trait Database {
    /// Runs a statement; returns how many rows it touched.
    async fn execute(&mut self, statement: &str, params: &[SqlValue])
    -> Result<u64, DatabaseError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(code: &str) -> DatabaseError {
        DatabaseError::Refused {
            code: code.into(),
            message: String::new(),
        }
    }

    #[test]
    fn refusals_are_told_apart_by_sqlstate() {
        // Data a retry will not change: parked by the exporter.
        for code in ["22001", "22P02", "23505", "23514", "23502", "P0001"] {
            let e = refused(code);
            assert!(e.is_refused_data() && !e.is_transient(), "{code}");
        }
        // Gone by themselves: tried again, never parked.
        for code in [
            "08006", "40001", "40P01", "53300", "57014", "57P01", "55P03",
        ] {
            let e = refused(code);
            assert!(e.is_transient() && !e.is_refused_data(), "{code}");
        }
        for e in [
            DatabaseError::Unreachable("refused".into()),
            DatabaseError::Other("connection closed".into()),
        ] {
            assert!(e.is_transient() && !e.is_refused_data(), "{e}");
        }
        // Neither: the statement or the privileges are wrong.
        for code in ["42501", "42601", "P0002", "55000", "XX000"] {
            let e = refused(code);
            assert!(!e.is_transient() && !e.is_refused_data(), "{code}");
        }
    }
}
