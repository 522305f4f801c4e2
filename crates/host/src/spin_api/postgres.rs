//! `spin:postgres/postgres@4.2.0`: outbound PostgreSQL as Spin provides it
//! to spin-sdk 5.2's `pg4` (which imports 4.0.0, a subset) and to spin-sdk
//! 7's `pg` (which uses the `*-async` functions of 4.2.0; their host side
//! waits for PostgreSQL outside the store, and `query-async` streams its
//! rows), as Spin's `crates/factor-outbound-pg` does, on
//! the same `tokio-postgres` release (0.7.12), so that connection strings
//! parse alike. Every address the client would dial, each host and each
//! `hostaddr`, is checked against `allowed_outbound_hosts` (scheme
//! `postgres`, default port 5432) before any connection, and errors
//! carry the variants and wording Spin's host gives them, quirks included:
//!
//! - a connection that cannot be made reads as deadpool (Spin's pool)
//!   reports it: `Error occurred while creating a new object: ...` with the
//!   causes below it;
//! - a parameter that cannot be converted is `value-conversion-failed` in
//!   `execute` but `bad-parameter` in `query`;
//! - a server error while a `query` runs (after it was prepared), or a
//!   column that cannot be read (a `timestamptz`, which Spin reads as a
//!   timestamp without zone), reaches Spin's `query` through its row stream
//!   and is flattened there into `query-failed(text(...))` holding the
//!   debug form of the error, where `execute` and preparing keep a server
//!   error's structure (`db-error`);
//! - PostgreSQL's one-byte `"char"` is `other("char")`, its values
//!   `unsupported`, as no case of the interface covers it;
//! - a result of more than 128 MiB fails.
//!
//! Connections are pooled per component as Spin pools them (`pg_pool`).
//! A `connection-builder` with a CA root fails to build: this host has no
//! TLS (see below).
//!
//! Where this host differs, it is stricter or slower, never more lenient:
//! `hostaddr` is checked where Spin 4.0.2 checks only host names (and lets
//! a string of `hostaddr` alone through unchecked), the connection is
//! always plain TCP (`sslmode=require` fails), and ranges and
//! intervals are not converted (a parameter of those kinds is refused, a
//! column of those types reads as `unsupported`). Unlike Spin 4.0.2, a
//! `query` that returns no rows answers (its columns, no rows) instead of
//! hanging, as Spin does since its fix f0256b37; guests meant for Spin 4.0.2
//! must not rely on it.

// The interface's error carries a whole server error, as in Spin, which
// allows the same lint.
#![allow(clippy::result_large_err)]

use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};

use anyhow::Context as _;
use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use futures::StreamExt as _;
use tokio_postgres::types::{FromSql, ToSql, Type};
use tokio_postgres::{Config, Row, RowStream};
use wasmtime::StoreContextMut;
use wasmtime::component::{
    Accessor, Destination, FutureReader, Resource, StreamProducer, StreamReader, StreamResult,
};

use super::SpinHost;
use super::pg_pool::{PgPools, Pooled};
use super::spin::postgres::postgres::{
    Column, DbDataType, DbError, DbValue, Error, Host, HostConnection, HostConnectionBuilder,
    HostConnectionBuilderWithStore, HostConnectionWithStore, ParameterValue, QueryError, RowSet,
};
use crate::state::RequestState;

/// Connections one instance may hold at once (Spin's resource table size).
const MAX_CONNECTIONS_PER_INSTANCE: usize = 1024;

/// The most a query's rows may take in the host (Spin's
/// `MAX_HOST_BUFFERED_BYTES`), counted as Spin counts them.
const MAX_RESULT_BYTES: usize = 128 << 20;

/// The host state behind a guest's `connection` resource.
pub struct PgConnection {
    client: Arc<Pooled>,
}

/// The host state behind a guest's `connection-builder` resource.
pub struct PgConnectionBuilder {
    address: String,
    ca_root: Option<String>,
}

type HostResult<T> = wasmtime::Result<Result<T, Error>>;

impl Host for RequestState {}

impl RequestState {
    /// Every address the connection string makes the client dial must be
    /// allowed: each host name (Spin's check) and each `hostaddr` (which
    /// Spin does not check, though it is what is dialled when given), and
    /// a string that names neither is refused.
    fn check_pg_address(&self, config: &Config) -> Result<(), Error> {
        let targets = pg_targets(config)?;
        if targets.is_empty() {
            return Err(Error::ConnectionFailed(
                "address names no host: not permitted".into(),
            ));
        }
        for url in targets {
            if !self.component.outbound.allows(&url, "postgres") {
                self.log_denied("postgres", &format!("postgres://{url}"));
                return Err(Error::ConnectionFailed(format!(
                    "address postgres://{url} is not permitted"
                )));
            }
        }
        Ok(())
    }

    fn pg_client(&mut self, res: &Resource<PgConnection>) -> wasmtime::Result<Arc<Pooled>> {
        // Shared so a statement runs without holding a borrow of the table.
        Ok(self.table.get(res)?.client.clone())
    }

    /// Parses and checks `address`, and reserves one of the instance's
    /// connections for it.
    fn pg_reserve(&mut self, address: &str) -> Result<Config, Error> {
        let config =
            Config::from_str(address).map_err(|e| Error::ConnectionFailed(e.to_string()))?;
        self.check_pg_address(&config)?;
        if self.pg_connections >= MAX_CONNECTIONS_PER_INSTANCE {
            return Err(Error::ConnectionFailed("too many connections".into()));
        }
        self.pg_connections += 1;
        Ok(config)
    }

    /// Hands the guest the connection [`pg_reserve`](Self::pg_reserve) was
    /// for, or gives the reservation back.
    fn pg_push(&mut self, connected: Result<Pooled, Error>) -> HostResult<Resource<PgConnection>> {
        match connected {
            Ok(client) => Ok(Ok(self.table.push(PgConnection {
                client: Arc::new(client),
            })?)),
            Err(e) => {
                self.pg_connections = self.pg_connections.saturating_sub(1);
                Ok(Err(e))
            }
        }
    }

    fn pg_builder(
        &mut self,
        res: &Resource<PgConnectionBuilder>,
    ) -> wasmtime::Result<Result<String, Error>> {
        let builder = self.table.get(res)?;
        if builder.ca_root.is_some() {
            return Ok(Err(Error::ConnectionFailed(
                "a CA root needs TLS, which this host does not support".into(),
            )));
        }
        Ok(Ok(builder.address.clone()))
    }
}

/// A connection to `address` from the component's pool.
async fn pg_connect(pools: Arc<PgPools>, address: &str, config: &Config) -> Result<Pooled, Error> {
    pools
        .get(address, config)
        .await
        .map_err(|e| Error::ConnectionFailed(error_chain(&PoolCreate(e))))
}

/// Prepares `statement` (as Spin since f0256b37, so the columns are known
/// even when no row comes) and starts it; a parameter that cannot be
/// converted is `bad-parameter`.
async fn start_query(
    client: &Pooled,
    statement: &str,
    params: Vec<ParameterValue>,
) -> Result<(Vec<Column>, RowStream), Error> {
    let params = to_sql_parameters(params).map_err(Error::BadParameter)?;
    let stmt = client.prepare(statement).await.map_err(query_failed)?;
    let columns = stmt
        .columns()
        .iter()
        .map(|c| Column {
            name: c.name().to_owned(),
            data_type: data_type(c.type_()),
        })
        .collect();
    let stream = client
        .query_raw(&stmt, params)
        .await
        .map_err(query_failed)?;
    Ok((columns, stream))
}

async fn run_execute(
    client: &Pooled,
    statement: &str,
    params: Vec<ParameterValue>,
) -> Result<u64, Error> {
    let params = to_sql_parameters(params).map_err(Error::ValueConversionFailed)?;
    let refs: Vec<&(dyn ToSql + Sync)> = params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect();
    client.execute(statement, &refs).await.map_err(query_failed)
}

impl HostConnection for RequestState {
    async fn open(&mut self, address: String) -> HostResult<Resource<PgConnection>> {
        let config = match self.pg_reserve(&address) {
            Ok(config) => config,
            Err(e) => return Ok(Err(e)),
        };
        let connected = pg_connect(self.component.pg_pools.clone(), &address, &config).await;
        self.pg_push(connected)
    }

    async fn query(
        &mut self,
        res: Resource<PgConnection>,
        statement: String,
        params: Vec<ParameterValue>,
    ) -> HostResult<RowSet> {
        let client = self.pg_client(&res)?;
        let (columns, stream) = match start_query(&client, &statement, params).await {
            Ok(started) => started,
            Err(e) => return Ok(Err(e)),
        };
        let mut stream = std::pin::pin!(stream);
        let mut rows = Vec::new();
        let mut size = std::mem::size_of::<RowSet>();
        while let Some(row) = stream.next().await {
            let row = row.map_err(query_failed).and_then(|row| {
                convert_row(&row).map_err(|e| Error::QueryFailed(QueryError::Text(error_chain(&e))))
            });
            // Spin's row stream yields the interface's error, which its
            // `query` turns into text.
            let row = match row {
                Ok(row) => row,
                Err(e) => return Ok(Err(Error::QueryFailed(QueryError::Text(error_chain(&e))))),
            };
            size += row.iter().map(memory_size).sum::<usize>();
            if size > MAX_RESULT_BYTES {
                return Ok(Err(Error::QueryFailed(QueryError::Text(format!(
                    "query result exceeds limit of {MAX_RESULT_BYTES} bytes"
                )))));
            }
            rows.push(row);
        }
        Ok(Ok(RowSet { columns, rows }))
    }

    async fn execute(
        &mut self,
        res: Resource<PgConnection>,
        statement: String,
        params: Vec<ParameterValue>,
    ) -> HostResult<u64> {
        let client = self.pg_client(&res)?;
        Ok(run_execute(&client, &statement, params).await)
    }

    async fn drop(&mut self, res: Resource<PgConnection>) -> wasmtime::Result<()> {
        self.table.delete(res)?;
        self.pg_connections = self.pg_connections.saturating_sub(1);
        Ok(())
    }
}

impl HostConnectionBuilder for RequestState {
    async fn new(&mut self, address: String) -> wasmtime::Result<Resource<PgConnectionBuilder>> {
        Ok(self.table.push(PgConnectionBuilder {
            address,
            ca_root: None,
        })?)
    }

    async fn set_ca_root(
        &mut self,
        res: Resource<PgConnectionBuilder>,
        certificate: String,
    ) -> HostResult<()> {
        self.table.get_mut(&res)?.ca_root = Some(certificate);
        Ok(Ok(()))
    }

    async fn build(
        &mut self,
        res: Resource<PgConnectionBuilder>,
    ) -> HostResult<Resource<PgConnection>> {
        match self.pg_builder(&res)? {
            Ok(address) => self.open(address).await,
            Err(e) => Ok(Err(e)),
        }
    }

    async fn drop(&mut self, res: Resource<PgConnectionBuilder>) -> wasmtime::Result<()> {
        self.table.delete(res)?;
        Ok(())
    }
}

/// `open-async` and `build-async`: checks in the store, the connection
/// outside it.
async fn open_async(
    accessor: &Accessor<RequestState, SpinHost>,
    address: String,
) -> HostResult<Resource<PgConnection>> {
    let reserved = accessor.with(|mut access| {
        let state = access.get();
        state
            .pg_reserve(&address)
            .map(|config| (config, state.component.pg_pools.clone()))
    });
    let (config, pools) = match reserved {
        Ok(reserved) => reserved,
        Err(e) => return Ok(Err(e)),
    };
    let connected = pg_connect(pools, &address, &config).await;
    accessor.with(|mut access| access.get().pg_push(connected))
}

/// Rows for the guest's `stream<row>`, from the task reading them.
struct RowProducer(tokio::sync::mpsc::Receiver<Vec<DbValue>>);

impl<D> StreamProducer<D> for RowProducer {
    type Item = Vec<DbValue>;
    type Buffer = Option<Vec<DbValue>>;

    fn poll_produce<'a>(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut store: StoreContextMut<'a, D>,
        mut destination: Destination<'a, Self::Item, Self::Buffer>,
        finish: bool,
    ) -> Poll<wasmtime::Result<StreamResult>> {
        // A read of nothing only asks whether rows may come: say yes rather
        // than take one the guest might never read.
        if destination.remaining(&mut store) == Some(0) {
            return Poll::Ready(Ok(StreamResult::Completed));
        }
        match self.get_mut().0.poll_recv(cx) {
            Poll::Ready(Some(row)) => {
                destination.set_buffer(Some(row));
                Poll::Ready(Ok(StreamResult::Completed))
            }
            Poll::Ready(None) => Poll::Ready(Ok(StreamResult::Dropped)),
            Poll::Pending if finish => Poll::Ready(Ok(StreamResult::Cancelled)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Reads a query's rows into `rows` as the guest takes them, then says
/// how the query ended. As Spin's `query-async`: a server error keeps its
/// structure (`db-error`), a column that cannot be read is text, a row of
/// more than 128 MiB ends the query, and the reading stops when the guest
/// drops the stream.
async fn stream_rows(
    stream: RowStream,
    rows: tokio::sync::mpsc::Sender<Vec<DbValue>>,
    ended: tokio::sync::oneshot::Sender<Result<(), Error>>,
) {
    let mut stream = std::pin::pin!(stream);
    let outcome = loop {
        let row = tokio::select! {
            biased;
            () = rows.closed() => break Ok(()),
            row = stream.next() => row,
        };
        let Some(row) = row else { break Ok(()) };
        let row = match row.map_err(query_failed).and_then(|row| {
            convert_row(&row).map_err(|e| Error::QueryFailed(QueryError::Text(error_chain(&e))))
        }) {
            Ok(row) => row,
            Err(e) => break Err(e),
        };
        if row.iter().map(memory_size).sum::<usize>() > MAX_RESULT_BYTES {
            break Err(Error::QueryFailed(QueryError::Text(format!(
                "query result exceeds limit of {MAX_RESULT_BYTES} bytes"
            ))));
        }
        if rows.send(row).await.is_err() {
            break Ok(());
        }
    };
    let _ = ended.send(outcome);
}

impl HostConnectionWithStore<RequestState> for SpinHost {
    async fn open_async(
        accessor: &Accessor<RequestState, Self>,
        address: String,
    ) -> HostResult<Resource<PgConnection>> {
        open_async(accessor, address).await
    }

    async fn query_async(
        accessor: &Accessor<RequestState, Self>,
        res: Resource<PgConnection>,
        statement: String,
        params: Vec<ParameterValue>,
    ) -> HostResult<(
        Vec<Column>,
        StreamReader<Vec<DbValue>>,
        FutureReader<Result<(), Error>>,
    )> {
        let client = accessor.with(|mut access| access.get().pg_client(&res))?;
        let (columns, stream) = match start_query(&client, &statement, params).await {
            Ok(started) => started,
            Err(e) => return Ok(Err(e)),
        };
        let (rows_tx, rows_rx) = tokio::sync::mpsc::channel(4);
        let (ended_tx, ended_rx) = tokio::sync::oneshot::channel();
        // The connection stays in use until the rows are read or dropped.
        tokio::spawn(async move {
            stream_rows(stream, rows_tx, ended_tx).await;
            drop(client);
        });
        accessor.with(|mut access| {
            let rows = StreamReader::new(&mut access, RowProducer(rows_rx))?;
            let ended = FutureReader::new(&mut access, async move {
                Ok::<_, wasmtime::Error>(ended_rx.await.unwrap_or(Ok(())))
            })?;
            Ok(Ok((columns, rows, ended)))
        })
    }

    async fn execute_async(
        accessor: &Accessor<RequestState, Self>,
        res: Resource<PgConnection>,
        statement: String,
        params: Vec<ParameterValue>,
    ) -> HostResult<u64> {
        let client = accessor.with(|mut access| access.get().pg_client(&res))?;
        Ok(run_execute(&client, &statement, params).await)
    }
}

impl HostConnectionBuilderWithStore<RequestState> for SpinHost {
    async fn build_async(
        accessor: &Accessor<RequestState, Self>,
        res: Resource<PgConnectionBuilder>,
    ) -> HostResult<Resource<PgConnection>> {
        match accessor.with(|mut access| access.get().pg_builder(&res))? {
            Ok(address) => open_async(accessor, address).await,
            Err(e) => Ok(Err(e)),
        }
    }
}

/// What the allow-list must pass for `config`, as `host[:port]`, in the
/// order tokio-postgres tries them: at each index the host name, then the
/// `hostaddr` it dials instead when one is given. The port is the one at
/// the index, or the only one given; none reads as 5432, as it does to the
/// client (which refuses any other count of ports before dialling).
fn pg_targets(config: &Config) -> Result<Vec<String>, Error> {
    let hosts = config.get_hosts();
    let hostaddrs = config.get_hostaddrs();
    let ports = config.get_ports();
    let mut targets = Vec::new();
    for i in 0..hosts.len().max(hostaddrs.len()) {
        let port = ports
            .get(i)
            .or(if ports.len() == 1 {
                ports.first()
            } else {
                None
            })
            .map(|p| format!(":{p}"))
            .unwrap_or_default();
        match hosts.get(i) {
            Some(tokio_postgres::config::Host::Tcp(name)) => targets.push(format!("{name}{port}")),
            Some(tokio_postgres::config::Host::Unix(_)) => {
                return Err(Error::ConnectionFailed(
                    "Unix sockets are not supported on WebAssembly".into(),
                ));
            }
            None => {}
        }
        match hostaddrs.get(i) {
            Some(std::net::IpAddr::V4(ip)) => targets.push(format!("{ip}{port}")),
            Some(std::net::IpAddr::V6(ip)) => targets.push(format!("[{ip}]{port}")),
            None => {}
        }
    }
    Ok(targets)
}

/// A server's error keeps its structure (SQLSTATE, message, detail and the
/// other fields, named as Spin names them: `where_`, not `where`); anything
/// else (a lost connection, a parameter of the wrong type) is text.
fn query_failed(e: tokio_postgres::Error) -> Error {
    let Some(db) = e.as_db_error() else {
        return Error::QueryFailed(QueryError::Text(format!("{e:?}")));
    };
    let mut extras = Vec::new();
    let mut extra = |name: &str, value: Option<String>| {
        if let Some(v) = value {
            extras.push((name.to_owned(), v));
        }
    };
    extra("column", db.column().map(str::to_owned));
    extra("constraint", db.constraint().map(str::to_owned));
    extra("routine", db.routine().map(str::to_owned));
    extra("hint", db.hint().map(str::to_owned));
    extra("table", db.table().map(str::to_owned));
    extra("datatype", db.datatype().map(str::to_owned));
    extra("schema", db.schema().map(str::to_owned));
    extra("file", db.file().map(str::to_owned));
    extra("line", db.line().map(|l| l.to_string()));
    extra("where_", db.where_().map(str::to_owned));
    Error::QueryFailed(QueryError::DbError(DbError {
        as_text: format!("{e:?}"),
        severity: db.severity().to_owned(),
        code: db.code().code().to_owned(),
        message: db.message().to_owned(),
        detail: db.detail().map(str::to_owned),
        extras,
    }))
}

/// An error and its causes, as anyhow's `{:?}` (which Spin uses) shows
/// them, without a backtrace: the error, then `Caused by:` and the causes,
/// numbered when there are several.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let Some(first) = e.source() else {
        return text;
    };
    text.push_str("\n\nCaused by:");
    let numbered = first.source().is_some();
    let mut cause = Some(first);
    let mut n = 0;
    while let Some(c) = cause {
        for (i, line) in c.to_string().split('\n').enumerate() {
            text.push('\n');
            match (i, numbered) {
                (0, true) => text.push_str(&format!("{n: >5}: ")),
                (_, true) => text.push_str("       "),
                (_, false) => text.push_str("    "),
            }
            text.push_str(line);
        }
        cause = c.source();
        n += 1;
    }
    text
}

/// A connection that could not be made, as deadpool, Spin's pool, reports it.
#[derive(Debug)]
struct PoolCreate(tokio_postgres::Error);

impl std::fmt::Display for PoolCreate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Error occurred while creating a new object: {}", self.0)
    }
}

impl std::error::Error for PoolCreate {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

type SqlParam = Box<dyn ToSql + Send + Sync>;

/// The parameters, or the text of the first that cannot be converted.
fn to_sql_parameters(params: Vec<ParameterValue>) -> Result<Vec<SqlParam>, String> {
    params
        .into_iter()
        .map(to_sql_parameter)
        .collect::<anyhow::Result<_>>()
        .map_err(|e| error_chain(e.as_ref()))
}

/// One parameter, with the messages of Spin's conversions.
fn to_sql_parameter(value: ParameterValue) -> anyhow::Result<SqlParam> {
    use ParameterValue as P;
    let invalid_date = |y, m, d| anyhow::anyhow!("invalid date y={y}, m={m}, d={d}");
    let invalid_time = |h, m, s, ns| anyhow::anyhow!("invalid time {h}:{m}:{s}:{ns}");
    Ok(match value {
        P::Boolean(v) => Box::new(v),
        P::Int8(v) => Box::new(v),
        P::Int16(v) => Box::new(v),
        P::Int32(v) => Box::new(v),
        P::Int64(v) => Box::new(v),
        P::Floating32(v) => Box::new(v),
        P::Floating64(v) => Box::new(v),
        P::Str(v) => Box::new(v),
        P::Binary(v) => Box::new(v),
        P::Date((y, m, d)) => Box::new(
            NaiveDate::from_ymd_opt(y, m.into(), d.into()).ok_or_else(|| invalid_date(y, m, d))?,
        ),
        P::Time((h, m, s, ns)) => Box::new(
            NaiveTime::from_hms_nano_opt(h.into(), m.into(), s.into(), ns)
                .ok_or_else(|| invalid_time(h, m, s, ns))?,
        ),
        P::Datetime((y, mo, d, h, mi, s, ns)) => {
            let date = NaiveDate::from_ymd_opt(y, mo.into(), d.into())
                .ok_or_else(|| invalid_date(y, mo, d))?;
            let time = NaiveTime::from_hms_nano_opt(h.into(), mi.into(), s.into(), ns)
                .ok_or_else(|| invalid_time(h, mi, s, ns))?;
            Box::new(NaiveDateTime::new(date, time))
        }
        P::Timestamp(secs) => Box::new(
            chrono::DateTime::<chrono::Utc>::from_timestamp(secs, 0)
                .ok_or_else(|| anyhow::anyhow!("invalid epoch timestamp {secs}"))?,
        ),
        P::Uuid(v) => {
            Box::new(uuid::Uuid::parse_str(&v).with_context(|| format!("invalid UUID {v}"))?)
        }
        P::Jsonb(v) => Box::new(
            serde_json::from_slice::<serde_json::Value>(&v)
                .with_context(|| format!("invalid JSON {}", String::from_utf8_lossy(&v)))?,
        ),
        P::Decimal(v) => Box::new(
            rust_decimal::Decimal::from_str_exact(&v)
                .with_context(|| format!("invalid decimal {v}"))?,
        ),
        P::ArrayInt32(v) => Box::new(v),
        P::ArrayInt64(v) => Box::new(v),
        P::ArrayStr(v) => Box::new(v),
        P::ArrayDecimal(v) => Box::new(
            v.into_iter()
                .map(|d| {
                    d.map(|d| {
                        rust_decimal::Decimal::from_str_exact(&d)
                            .with_context(|| format!("invalid decimal {d}"))
                    })
                    .transpose()
                })
                .collect::<anyhow::Result<Vec<_>>>()?,
        ),
        P::RangeInt32(_) | P::RangeInt64(_) | P::RangeDecimal(_) | P::Interval(_) => {
            anyhow::bail!("ranges and intervals are not supported by this host");
        }
        P::DbNull => Box::new(Null),
    })
}

/// NULL for a column of any type, as Spin sends `db-null`.
#[derive(Debug, Clone, Copy)]
struct Null;

impl ToSql for Null {
    fn to_sql(
        &self,
        _: &Type,
        _: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        Ok(tokio_postgres::types::IsNull::Yes)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

/// A column's type as Spin names it; PostgreSQL's `"char"` is not `int8`
/// there but `other("char")`.
fn data_type(ty: &Type) -> DbDataType {
    match *ty {
        Type::BOOL => DbDataType::Boolean,
        Type::INT2 => DbDataType::Int16,
        Type::INT4 => DbDataType::Int32,
        Type::INT8 => DbDataType::Int64,
        Type::FLOAT4 => DbDataType::Floating32,
        Type::FLOAT8 => DbDataType::Floating64,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR => DbDataType::Str,
        Type::BYTEA => DbDataType::Binary,
        Type::DATE => DbDataType::Date,
        Type::TIME => DbDataType::Time,
        Type::TIMESTAMP | Type::TIMESTAMPTZ => DbDataType::Datetime,
        Type::UUID => DbDataType::Uuid,
        Type::JSONB => DbDataType::Jsonb,
        Type::NUMERIC => DbDataType::Decimal,
        Type::INT4_ARRAY => DbDataType::ArrayInt32,
        Type::INT8_ARRAY => DbDataType::ArrayInt64,
        Type::NUMERIC_ARRAY => DbDataType::ArrayDecimal,
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY | Type::BPCHAR_ARRAY => DbDataType::ArrayStr,
        ref other => DbDataType::Other(other.name().to_owned()),
    }
}

fn convert_row(row: &Row) -> Result<Vec<DbValue>, tokio_postgres::Error> {
    (0..row.len()).map(|i| convert_entry(row, i)).collect()
}

/// What a value takes in the host, as Spin counts it against
/// [`MAX_RESULT_BYTES`].
fn memory_size(value: &DbValue) -> usize {
    use DbValue as V;
    let own = std::mem::size_of::<DbValue>();
    own + match value {
        V::ArrayInt32(v) => v.len() * std::mem::size_of::<Option<i32>>(),
        V::ArrayInt64(v) => v.len() * std::mem::size_of::<Option<i64>>(),
        V::ArrayDecimal(v) | V::ArrayStr(v) => v
            .iter()
            .map(|s| std::mem::size_of::<Option<String>>() + s.as_ref().map_or(0, String::len))
            .sum(),
        V::Str(s) | V::Uuid(s) | V::Decimal(s) => s.len(),
        V::Jsonb(b) | V::Binary(b) | V::Unsupported(b) => b.len(),
        _ => 0,
    }
}

/// Reads column `i` as Spin does: through the same Rust types, so a value
/// Spin cannot read (a `timestamptz`, which it reads as a timestamp without
/// zone) fails here too.
fn convert_entry(row: &Row, i: usize) -> Result<DbValue, tokio_postgres::Error> {
    fn get<'a, T: FromSql<'a>>(
        row: &'a Row,
        i: usize,
        f: impl FnOnce(T) -> DbValue,
    ) -> Result<DbValue, tokio_postgres::Error> {
        Ok(row.try_get::<_, Option<T>>(i)?.map_or(DbValue::DbNull, f))
    }
    let ty = row.columns()[i].type_().clone();
    match ty {
        Type::BOOL => get(row, i, DbValue::Boolean),
        Type::INT2 => get(row, i, DbValue::Int16),
        Type::INT4 => get(row, i, DbValue::Int32),
        Type::INT8 => get(row, i, DbValue::Int64),
        Type::FLOAT4 => get(row, i, DbValue::Floating32),
        Type::FLOAT8 => get(row, i, DbValue::Floating64),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR => get(row, i, DbValue::Str),
        Type::BYTEA => get(row, i, DbValue::Binary),
        Type::DATE => get(row, i, |d: NaiveDate| {
            DbValue::Date((d.year(), d.month() as u8, d.day() as u8))
        }),
        Type::TIME => get(row, i, |t: NaiveTime| {
            DbValue::Time((
                t.hour() as u8,
                t.minute() as u8,
                t.second() as u8,
                t.nanosecond(),
            ))
        }),
        Type::TIMESTAMP | Type::TIMESTAMPTZ => get(row, i, |dt: NaiveDateTime| {
            DbValue::Datetime((
                dt.year(),
                dt.month() as u8,
                dt.day() as u8,
                dt.hour() as u8,
                dt.minute() as u8,
                dt.second() as u8,
                dt.nanosecond(),
            ))
        }),
        Type::UUID => get(row, i, |u: uuid::Uuid| DbValue::Uuid(u.to_string())),
        Type::JSONB => get(row, i, |j: serde_json::Value| {
            DbValue::Jsonb(serde_json::to_vec(&j).unwrap_or_default())
        }),
        Type::NUMERIC => get(row, i, |d: rust_decimal::Decimal| {
            DbValue::Decimal(d.to_string())
        }),
        Type::INT4_ARRAY => get(row, i, DbValue::ArrayInt32),
        Type::INT8_ARRAY => get(row, i, DbValue::ArrayInt64),
        Type::NUMERIC_ARRAY => get(row, i, |v: Vec<Option<rust_decimal::Decimal>>| {
            DbValue::ArrayDecimal(v.into_iter().map(|d| d.map(|d| d.to_string())).collect())
        }),
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY | Type::BPCHAR_ARRAY => {
            get(row, i, DbValue::ArrayStr)
        }
        _ => get(row, i, |raw: Raw| DbValue::Unsupported(raw.0)),
    }
}

/// A column's bytes as the server sent them, for types with no conversion.
struct Raw(Vec<u8>);

impl<'a> FromSql<'a> for Raw {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(raw.to_vec()))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets(address: &str) -> Vec<String> {
        pg_targets(&Config::from_str(address).unwrap()).unwrap()
    }

    #[test]
    fn every_address_dialled_is_a_target() {
        assert_eq!(
            targets("host=db hostaddr=10.0.0.5 port=6000"),
            ["db:6000", "10.0.0.5:6000"]
        );
        assert_eq!(
            targets("hostaddr=169.254.169.254 port=80"),
            ["169.254.169.254:80"]
        );
        assert_eq!(
            targets("postgres://u@db:7/x?hostaddr=::1"),
            ["db:7", "[::1]:7"]
        );
        assert_eq!(
            targets("host=a,b hostaddr=10.0.0.1,10.0.0.2 port=1,2"),
            ["a:1", "10.0.0.1:1", "b:2", "10.0.0.2:2"]
        );
        assert_eq!(targets("host=db"), ["db"]);
        assert!(targets("user=postgres").is_empty());
    }
}
