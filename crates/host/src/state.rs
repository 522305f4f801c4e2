//! The data of one request's store: WASI and wasi:http contexts, the
//! resource table, and the component's resolved configuration.

use std::sync::Arc;

use wasmtime::component::ResourceTable;
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
}

pub struct RequestState {
    pub component: Arc<ComponentContext>,
    pub table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    http_hooks: OutboundHttp,
    pub redis_connections: usize,
    /// Redis commands the guest has sent (each one is a round trip), shared
    /// with the server for the request's log line.
    pub redis_commands: Arc<std::sync::atomic::AtomicU32>,
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
        Self {
            http_hooks: OutboundHttp::new(component.id.clone(), component.outbound.clone()),
            component,
            table: ResourceTable::new(),
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            redis_connections: 0,
            redis_commands: Default::default(),
            stdout,
            stderr,
        }
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
