//! The data of an instance's store: WASI and wasi:http contexts, the
//! resource table, and the component's resolved configuration. A WASI 0.2
//! instance serves one request; a WASI 0.3 one may serve many, some at once
//! (`wasip3`), so what is counted per request is kept per guest task there.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Weak};

use wasmtime::component::{GuestTaskId, ResourceTable};
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::guest_output::GuestOutput;
use crate::outbound::OutboundPolicy;
use crate::outbound_http::OutboundHttp;
use crate::variables::ComponentVariables;

/// Everything about a component that is fixed once the app has started.
#[derive(Debug)]
pub struct ComponentContext {
    pub id: String,
    pub variables: ComponentVariables,
    pub outbound: Arc<OutboundPolicy>,
    pub environment: Vec<(String, String)>,
    /// PostgreSQL connections kept between requests, as Spin keeps them.
    pub pg_pools: Arc<crate::spin_api::PgPools>,
    /// The labels of `key_value_stores`: the stores it may open.
    pub key_value_stores: Vec<String>,
    /// The app's key-value stores, shared by all its components.
    pub key_value: Arc<crate::spin_api::KeyValueStores>,
}

pub struct RequestState {
    pub component: Arc<ComponentContext>,
    pub table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    http_hooks: OutboundHttp,
    pub redis_connections: usize,
    /// How many Redis connections the instance may hold at once: 8 per
    /// request it may run at once.
    pub redis_connection_limit: usize,
    pub pg_connections: usize,
    /// Key-value stores the instance holds open.
    pub key_value_stores_open: usize,
    /// Redis commands the guest has sent (each one is a round trip), shared
    /// with the server for the request's log line. For a WASI 0.3 instance,
    /// which runs several requests, the counters are by guest task instead
    /// (`request_redis_commands`), this one counting what no request claims.
    pub redis_commands: Arc<AtomicU32>,
    /// The Redis command counters of the requests a WASI 0.3 instance has
    /// started, by the guest task that runs each; a counter is dropped
    /// once its request has been logged.
    request_redis_commands: HashMap<GuestTaskId, Weak<AtomicU32>>,
    /// The guest's stdout and stderr, forwarded line by line as written.
    stdout: GuestOutput,
    stderr: GuestOutput,
}

impl RequestState {
    pub fn new(component: Arc<ComponentContext>) -> Self {
        let stdout = GuestOutput::new(&component.id, false);
        let stderr = GuestOutput::new(&component.id, true);
        let mut wasi = WasiCtx::builder();
        wasi.stdout(stdout.clone()).stderr(stderr.clone());
        for (k, v) in &component.environment {
            wasi.env(k, v);
        }
        // Spin's wasmtime lets guests use TCP and UDP, gated by the address
        // check, and not name lookup; newer wasmtime turns all three off
        // unless asked.
        wasi.allow_tcp(true)
            .allow_udp(true)
            .allow_ip_name_lookup(false)
            .socket_addr_check(socket_check(component.clone()));
        Self {
            http_hooks: OutboundHttp::new(component.id.clone(), component.outbound.clone()),
            component,
            table: ResourceTable::new(),
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            redis_connections: 0,
            redis_connection_limit: REDIS_CONNECTIONS_PER_REQUEST,
            pg_connections: 0,
            key_value_stores_open: 0,
            redis_commands: Default::default(),
            request_redis_commands: HashMap::new(),
            stdout,
            stderr,
        }
    }

    /// Counts the Redis commands of the request guest task `task` runs
    /// (a WASI 0.3 instance) on `counter`.
    pub fn start_request(&mut self, task: GuestTaskId, counter: &Arc<AtomicU32>) {
        self.request_redis_commands
            .retain(|_, counter| counter.strong_count() > 0);
        self.request_redis_commands
            .insert(task, Arc::downgrade(counter));
    }

    /// Where a Redis command sent by guest task `task` (the task of the
    /// export call the host made, if known) is counted.
    pub fn redis_commands_of(&self, task: Option<GuestTaskId>) -> Arc<AtomicU32> {
        task.and_then(|task| self.request_redis_commands.get(&task))
            .and_then(Weak::upgrade)
            .unwrap_or_else(|| self.redis_commands.clone())
    }

    pub fn log_denied(&self, what: &str, target: &str) {
        crate::log::denied(&self.component.id, what, target);
    }

    /// Writes out the guest's last lines if they lacked a newline.
    pub fn finish_output(&self) {
        self.stdout.finish();
        self.stderr.finish();
    }
}

/// Redis connections one request may hold open at once.
pub const REDIS_CONNECTIONS_PER_REQUEST: usize = 8;

/// Which socket addresses the guest may use through `wasi:sockets`, as
/// Spin 4.0.2 decides: TCP connects and UDP binds and sends when
/// `allowed_outbound_hosts` allows the address under the scheme `tcp` or
/// `udp` (so `*://` entries cover both, `redis://` entries neither); no TCP
/// listener, ever. wasmtime 48 also asks about the implicit bind to the
/// unspecified address that precedes a connect, and about datagrams
/// received; Spin's wasmtime asked neither, so both pass.
fn socket_check(
    component: Arc<ComponentContext>,
) -> impl Fn(SocketAddr, SocketAddrUse) -> Pin<Box<dyn Future<Output = bool> + Send + Sync>>
+ Send
+ Sync
+ 'static {
    move |addr, addr_use| {
        let implicit_bind = addr.ip().is_unspecified() && addr.port() == 0;
        let allowed = match addr_use {
            SocketAddrUse::TcpBind => implicit_bind,
            SocketAddrUse::TcpListen | SocketAddrUse::TcpAccept => false,
            SocketAddrUse::TcpConnect => component.outbound.allows(&addr.to_string(), "tcp"),
            SocketAddrUse::UdpBind | SocketAddrUse::UdpSend => {
                component.outbound.allows(&addr.to_string(), "udp")
            }
            SocketAddrUse::UdpReceive => true,
        };
        if !allowed {
            crate::log::denied(&component.id, &format!("{addr_use:?}"), &addr.to_string());
        }
        Box::pin(std::future::ready(allowed))
    }
}

impl WasiView for RequestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for RequestState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.http_hooks,
        }
    }
}
