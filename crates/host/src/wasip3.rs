//! WASI 0.3 HTTP components (`wasi:http/handler@0.3.0`, spin-sdk 7), served
//! as Spin 4.1 serves them: through wasmtime-wasi-http's `ProxyHandler`,
//! which keeps an instance for several requests, some at once, instead of
//! a fresh instance per request as for WASI 0.2 components. Spin's
//! settings and defaults (`spin up` flags of Spin 4.1, its
//! `crates/trigger-http`): an instance takes up to 128 requests
//! (`--max-instance-reuse-count`), up to 16 at once
//! (`--max-instance-concurrent-reuse-count`), and is dropped once idle for
//! 1 s (`--idle-instance-timeout`); `--request-timeout` bounds a request's
//! guest. Each may be a range (`1..8`, `1..8s`), drawn afresh per instance.
//!
//! The host's own bounds hold here too (docs/HOST.md, "Limits"): a request
//! has until its deadline (the host's request time limit, from the arrival
//! of its head) for a response, then it expires and the instance takes no
//! more requests; an instance still busy that long after its last request
//! started, or still working after its last response, is dropped; an
//! instance holds one of the host's instance slots for its whole life, and
//! a fiber stack for each request it may run at once (each may be suspended
//! mid-run on a fiber of its own), and waits for them at most the request
//! time limit.
//!
//! A trap or panic ends the instance: every request it was running fails
//! with 500, as on Spin, and the next request gets a fresh instance; the
//! host logs it.

use std::fmt;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::component::GuestTaskId;
use wasmtime::{Engine, Store, StoreContextMut};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::handler::{
    HandlerState, Instance, Proxy, ProxyHandler, ShouldAccept, WorkerExpiration, WorkerState,
    WorkerStatus,
};
use wasmtime_wasi_http::p3::bindings::ServicePre;

use crate::app::EXTRA_FIBERS;
use crate::state::{ComponentContext, REDIS_CONNECTIONS_PER_REQUEST, RequestState};

/// How WASI 0.3 instances are reused: `spin up`'s settings.
#[derive(Debug, Clone, Copy)]
pub struct ReuseConfig {
    pub max_instance_reuse_count: Range<usize>,
    pub max_instance_concurrent_reuse_count: Range<usize>,
    pub request_timeout: Option<Range<Duration>>,
    pub idle_instance_timeout: Range<Duration>,
}

impl Default for ReuseConfig {
    /// Spin 4.1's defaults.
    fn default() -> Self {
        Self {
            max_instance_reuse_count: Range::Value(128),
            max_instance_concurrent_reuse_count: Range::Value(16),
            request_timeout: None,
            idle_instance_timeout: Range::Value(Duration::from_secs(1)),
        }
    }
}

/// A setting given as one value or as a range `a..b` (end excluded), from
/// which each instance draws its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range<T> {
    Value(T),
    Bounds(T, T),
}

impl Range<usize> {
    fn pick(self) -> usize {
        match self {
            Self::Value(v) => v,
            Self::Bounds(a, b) => a + random_below((b - a) as u64) as usize,
        }
    }
}

impl Range<Duration> {
    fn pick(self) -> Duration {
        match self {
            Self::Value(v) => v,
            Self::Bounds(a, b) => {
                let span = (b - a).as_nanos().min(u64::MAX as u128) as u64;
                a + Duration::from_nanos(random_below(span))
            }
        }
    }
}

/// A number in `0..n` (`n` > 0), from the standard library's random keys.
fn random_below(n: u64) -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(()) % n
}

/// Parses `N` or `A..B`, as Spin does; an empty range (which Spin accepts,
/// then fails on when an instance draws from it) is refused.
fn parse_range<T: FromStr + PartialOrd>(s: &str) -> Result<Range<T>, String>
where
    T::Err: fmt::Display,
{
    let error = |e: T::Err| format!("expected integer or range; got {s:?}; {e}");
    match s.split_once("..") {
        Some((start, end)) => {
            let (start, end) = (start.parse().map_err(error)?, end.parse().map_err(error)?);
            if start >= end {
                return Err(format!("the range {s:?} is empty"));
            }
            Ok(Range::Bounds(start, end))
        }
        None => Ok(Range::Value(s.parse().map_err(error)?)),
    }
}

/// `--max-instance-reuse-count` and `--max-instance-concurrent-reuse-count`.
pub fn parse_usize_range(s: &str) -> Result<Range<usize>, String> {
    parse_range(s)
}

/// `--request-timeout` and `--idle-instance-timeout`: seconds, or a number
/// suffixed with `s`, `ms`, `us`, `μs` or `ns`, or a range of those.
pub fn parse_duration_range(s: &str) -> Result<Range<Duration>, String> {
    parse_range::<ParsedDuration>(s).map(|range| match range {
        Range::Value(v) => Range::Value(v.0),
        Range::Bounds(a, b) => Range::Bounds(a.0, b.0),
    })
}

#[derive(PartialEq, PartialOrd)]
struct ParsedDuration(Duration);

impl FromStr for ParsedDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let error = |e: &dyn fmt::Display| {
            format!("expected integer suffixed by `s`, `ms`, `us`, `μs`, or `ns`; got {s:?}; {e}")
        };
        if let Ok(secs) = s.parse() {
            return Ok(Self(Duration::from_secs(secs)));
        }
        let number = |n: &str| n.parse::<u64>().map_err(|e| error(&e));
        let duration = if let Some(n) = s.strip_suffix("ms") {
            Duration::from_millis(number(n)?)
        } else if let Some(n) = s.strip_suffix("us").or(s.strip_suffix("μs")) {
            Duration::from_micros(number(n)?)
        } else if let Some(n) = s.strip_suffix("ns") {
            Duration::from_nanos(number(n)?)
        } else if let Some(n) = s.strip_suffix('s') {
            Duration::from_secs(number(n)?)
        } else {
            return Err(error(&"invalid digit found in string"));
        };
        Ok(Self(duration))
    }
}

/// Serves one WASI 0.3 component.
pub type Handler = ProxyHandler<Component>;

/// Makes the instances of one WASI 0.3 component.
pub struct Component {
    engine: Engine,
    pre: ServicePre<RequestState>,
    context: Arc<ComponentContext>,
    slots: Arc<Semaphore>,
    fibers: Arc<Semaphore>,
    reuse: ReuseConfig,
    time_limit: Duration,
}

impl Component {
    pub fn handler(
        engine: Engine,
        pre: ServicePre<RequestState>,
        context: Arc<ComponentContext>,
        slots: Arc<Semaphore>,
        fibers: Arc<Semaphore>,
        reuse: ReuseConfig,
        time_limit: Duration,
    ) -> Handler {
        ProxyHandler::new(Self {
            engine,
            pre,
            context,
            slots,
            fibers,
            reuse,
            time_limit,
        })
    }
}

/// What the server hands a request to the instance with.
pub struct RequestData {
    /// When the request runs out of time.
    pub deadline: tokio::time::Instant,
    /// Its Redis commands, for the request log.
    pub redis_commands: Arc<AtomicU32>,
    /// Set once an instance has taken it.
    pub started: Arc<AtomicBool>,
}

/// No instance slot came free within the request time limit.
#[derive(Debug)]
pub struct NoInstanceSlot;

impl fmt::Display for NoInstanceSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no instance slot came free in time")
    }
}

impl std::error::Error for NoInstanceSlot {}

impl HandlerState for Component {
    type StoreData = RequestState;
    type WorkerExpiration = Expiration;
    type WorkerState = Worker;

    async fn instantiate(&self) -> wasmtime::Result<Instance<RequestState, Expiration, Worker>> {
        let max_concurrent = self
            .reuse
            .max_instance_concurrent_reuse_count
            .pick()
            .clamp(1, EXTRA_FIBERS as usize);
        // An instance slot, and a fiber for each request it may run at once.
        let slots = async {
            let slot = self.slots.clone().acquire_owned().await.ok()?;
            let fibers = self
                .fibers
                .clone()
                .acquire_many_owned(max_concurrent as u32)
                .await
                .ok()?;
            Some((slot, fibers))
        };
        let slots = tokio::time::timeout(self.time_limit, slots)
            .await
            .ok()
            .flatten()
            .ok_or(NoInstanceSlot)?;
        let mut state = RequestState::new(self.context.clone());
        state.redis_connection_limit = REDIS_CONNECTIONS_PER_REQUEST * max_concurrent;
        let mut store = Store::new(&self.engine, state);
        // Running Wasm gives its thread back at every epoch tick, so that
        // an instance computing for ever can be stopped (`Expiration`).
        store.set_epoch_deadline(1);
        store.epoch_deadline_async_yield_and_update(1);
        let service = self.pre.instantiate_async(&mut store).await?;
        let request_timeout = self.reuse.request_timeout.map(|range| range.pick());
        Ok(Instance {
            store,
            proxy: Proxy::P3(service),
            view: <RequestState as WasiHttpView>::http,
            expiration: Expiration {
                idle: self.reuse.idle_instance_timeout.pick(),
                busy: request_timeout.map_or(self.time_limit, |t| t.min(self.time_limit)),
                sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
            },
            state: Worker {
                id: self.context.id.clone(),
                max_total: self.reuse.max_instance_reuse_count.pick(),
                max_concurrent,
                request_timeout,
                _slots: slots,
            },
        })
    }
}

/// The life of one instance.
pub struct Worker {
    id: String,
    max_total: usize,
    max_concurrent: usize,
    request_timeout: Option<Duration>,
    /// Its instance slot and fibers, given back when it is dropped.
    _slots: (OwnedSemaphorePermit, OwnedSemaphorePermit),
}

impl WorkerState for Worker {
    type StoreData = RequestState;
    type RequestData = RequestData;

    fn should_accept_request(&self, concurrent: usize, total: usize) -> ShouldAccept {
        if total >= self.max_total {
            ShouldAccept::Never
        } else if concurrent >= self.max_concurrent {
            ShouldAccept::No
        } else {
            ShouldAccept::Yes
        }
    }

    /// The request expires at its deadline, or sooner with
    /// `--request-timeout`.
    fn on_request_start(
        &self,
        mut store: StoreContextMut<'_, RequestState>,
        data: RequestData,
        task: GuestTaskId,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + Sync>> {
        data.started.store(true, Ordering::Relaxed);
        store.data_mut().start_request(task, &data.redis_commands);
        let expires = match self.request_timeout {
            Some(timeout) => data.deadline.min(tokio::time::Instant::now() + timeout),
            None => data.deadline,
        };
        Box::pin(tokio::time::sleep_until(expires))
    }

    fn drop(&self, store: Store<RequestState>, result: wasmtime::Result<()>) {
        store.data().finish_output();
        if let Err(e) = result {
            eprintln!(
                "[{}] instance failed and was discarded (the requests it was running failed with it): {e:?}",
                self.id
            );
        }
    }
}

/// When an instance is dropped: idle for its idle timeout, or busy (with
/// requests, or with work after its responses) for the request time limit
/// (or `--request-timeout`) since its last request started or its last
/// response went. Checked outside the instance's event loop, so a guest
/// that computes for ever is stopped too.
pub struct Expiration {
    idle: Duration,
    busy: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl WorkerExpiration for Expiration {
    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        status: WorkerStatus,
        since: Instant,
    ) -> Poll<()> {
        let timeout = match status {
            WorkerStatus::Idle => self.idle,
            WorkerStatus::Requests | WorkerStatus::PostReturn => self.busy,
        };
        let Some(deadline) = since.checked_add(timeout) else {
            return Poll::Pending;
        };
        let deadline = tokio::time::Instant::from_std(deadline);
        if self.sleep.deadline() != deadline {
            self.sleep.as_mut().reset(deadline);
        }
        self.sleep.as_mut().poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_as_spin_parses_them() {
        assert_eq!(parse_usize_range("128"), Ok(Range::Value(128)));
        assert_eq!(parse_usize_range("1..8"), Ok(Range::Bounds(1, 8)));
        assert!(parse_usize_range("x").is_err());
        assert!(parse_usize_range("8..1").is_err());
        let secs = Duration::from_secs;
        assert_eq!(parse_duration_range("1"), Ok(Range::Value(secs(1))));
        assert_eq!(parse_duration_range("2s"), Ok(Range::Value(secs(2))));
        assert_eq!(
            parse_duration_range("500ms"),
            Ok(Range::Value(Duration::from_millis(500)))
        );
        assert_eq!(
            parse_duration_range("7us"),
            Ok(Range::Value(Duration::from_micros(7)))
        );
        assert_eq!(
            parse_duration_range("7μs"),
            Ok(Range::Value(Duration::from_micros(7)))
        );
        assert_eq!(
            parse_duration_range("9ns"),
            Ok(Range::Value(Duration::from_nanos(9)))
        );
        assert_eq!(
            parse_duration_range("1..8s"),
            Ok(Range::Bounds(secs(1), secs(8)))
        );
        assert!(parse_duration_range("1m").is_err());
    }

    #[test]
    fn a_range_is_drawn_from_within_its_bounds() {
        for _ in 0..100 {
            assert!((3..5).contains(&Range::Bounds(3, 5).pick()));
            let d = Range::Bounds(Duration::from_millis(1), Duration::from_millis(2)).pick();
            assert!(d >= Duration::from_millis(1) && d < Duration::from_millis(2));
        }
    }
}
