//! Loading the application: compiling (or loading from the cache) every routed
//! component, linking it against WASI, wasi:http and the Spin interfaces (0.2
//! and 0.3 side by side), pre-instantiating it so a request only has to
//! create an instance, and telling by its exports how it is served: a WASI
//! 0.2 HTTP component gets a fresh instance per request (`server`), a WASI
//! 0.3 one reused instances (`wasip3`).

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p3::bindings::ServicePre;

use crate::manifest::Manifest;
use crate::router::Router;
use crate::spin_api::inbound_redis::RedisHandlerPre;
use crate::spin_api::inbound_redis::p3::RedisHandlerP3Pre;
use crate::state::{ComponentContext, RequestState};
use crate::variables::{AppVariables, ComponentVariables};
use crate::wasip3::ReuseConfig;

/// How many component instances may be alive at once. Requests beyond this
/// wait for a free slot, within their time limit (see `server`).
pub const MAX_INSTANCES: u32 = 512;

/// Fiber stacks beyond one per instance. A WASI 0.3 instance runs several
/// requests at once, and each may hold a fiber of its own while suspended
/// mid-run (at an epoch yield), so an instance reserves one per request it
/// may run at once; without the reservation wasmtime's pool runs out of
/// stacks long before the instance slots do, and fails instantiation.
pub const EXTRA_FIBERS: u32 = 4096;

pub struct LoadedComponent {
    pub context: Arc<ComponentContext>,
    pub handler: HttpHandler,
}

/// How a component's HTTP export is called.
pub enum HttpHandler {
    /// `wasi:http/incoming-handler@0.2`: a fresh instance per request.
    Wasi0_2(ProxyPre<RequestState>),
    /// `wasi:http/handler@0.3`: instances reused, as Spin 4.1 does.
    Wasi0_3(crate::wasip3::Handler),
}

/// A component run by `[[trigger.redis]]`.
pub struct RedisHandler {
    pub context: Arc<ComponentContext>,
    pub pre: RedisExport,
}

/// Which Redis export a component has.
pub enum RedisExport {
    /// `fermyon:spin/inbound-redis` (spin-sdk 5.x).
    Wasi0_2(RedisHandlerPre<RequestState>),
    /// `spin:redis/inbound-redis@3.0.0` (spin-sdk 7).
    Wasi0_3(RedisHandlerP3Pre<RequestState>),
}

pub struct App {
    pub engine: Engine,
    pub router: Router,
    pub components: HashMap<String, LoadedComponent>,
    pub redis_handlers: HashMap<String, RedisHandler>,
    /// The instance slots ([`MAX_INSTANCES`]): a WASI 0.2 request holds one
    /// while its instance lives, a WASI 0.3 instance for its whole life.
    pub instance_slots: Arc<Semaphore>,
}

impl App {
    /// `reuse` and `time_limit` (the request time limit) shape how WASI
    /// 0.3 components are served.
    pub fn load(
        manifest: &Manifest,
        variables: &AppVariables,
        reuse: ReuseConfig,
        time_limit: Duration,
    ) -> anyhow::Result<Self> {
        let engine = new_engine()?;
        let router = Router::new(&manifest.routes)?;
        let instance_slots = Arc::new(Semaphore::new(MAX_INSTANCES as usize));
        // The stacks beyond one per instance: a WASI 0.3 instance holds
        // one per request it may run at once.
        let fiber_slots = Arc::new(Semaphore::new(EXTRA_FIBERS as usize));
        let mut linker = Linker::<RequestState>::new(&engine);
        // A spin-sdk 7 component imports WASI 0.3 and, through Rust's
        // standard library, WASI 0.2: both are linked, as in Spin.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(wasm_err)?;
        wasmtime_wasi::p3::add_to_linker(&mut linker).map_err(wasm_err)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(wasm_err)?;
        wasmtime_wasi_http::p3::add_to_linker(&mut linker).map_err(wasm_err)?;
        crate::spin_api::add_to_linker(&mut linker).map_err(wasm_err)?;

        let cache = CompileCache::new(&engine);
        let key_value = Arc::new(crate::spin_api::KeyValueStores::default());
        // Each component is compiled and linked, then checked for the export
        // its trigger calls.
        let prepare = |decl: &crate::manifest::ComponentDecl| {
            let id = &decl.id;
            let context = Arc::new(component_context(decl, variables, &key_value)?);
            let component = cache.load(&decl.source).with_context(|| {
                format!("component `{id}`: cannot load {}", decl.source.display())
            })?;
            let pre = linker
                .instantiate_pre(&component)
                .map_err(wasm_err)
                .with_context(|| {
                    format!("component `{id}` imports what this host does not provide")
                })?;
            anyhow::Ok((context, pre))
        };
        let mut components = HashMap::new();
        for decl in manifest.triggered_components() {
            let (context, pre) = prepare(decl)?;
            // As Spin tells them apart (`HandlerType::from_instance_pre`).
            let handler = match (
                ProxyPre::new(pre.clone()).ok(),
                ServicePre::new(pre.clone()).ok(),
            ) {
                (Some(p2), None) => HttpHandler::Wasi0_2(p2),
                (None, Some(p3)) => HttpHandler::Wasi0_3(crate::wasip3::Component::handler(
                    engine.clone(),
                    p3,
                    context.clone(),
                    instance_slots.clone(),
                    fiber_slots.clone(),
                    reuse,
                    time_limit,
                )),
                (None, None) => anyhow::bail!(
                    "component `{}` cannot run here (is it a wasi:http component? It exports \
                     neither wasi:http/incoming-handler@0.2 nor wasi:http/handler@0.3)",
                    decl.id
                ),
                (Some(_), Some(_)) => anyhow::bail!(
                    "component `{}` exports multiple different handlers but it's expected to \
                     export only one",
                    decl.id
                ),
            };
            components.insert(decl.id.clone(), LoadedComponent { context, handler });
        }
        let mut redis_handlers = HashMap::new();
        for decl in manifest.redis_components() {
            let (context, pre) = prepare(decl)?;
            let pre = match RedisHandlerPre::new(pre.clone()) {
                Ok(p2) => RedisExport::Wasi0_2(p2),
                Err(_) => RedisExport::Wasi0_3(RedisHandlerP3Pre::new(pre).map_err(wasm_err).with_context(|| {
                    format!(
                        "component `{}` does not export a Redis interface (fermyon:spin/inbound-redis or spin:redis/inbound-redis@3.0.0)",
                        decl.id
                    )
                })?),
            };
            redis_handlers.insert(decl.id.clone(), RedisHandler { context, pre });
        }
        Ok(Self {
            engine,
            router,
            components,
            redis_handlers,
            instance_slots,
        })
    }
}

/// What a component is given: its variables, its allowed hosts, its
/// environment.
fn component_context(
    decl: &crate::manifest::ComponentDecl,
    variables: &AppVariables,
    key_value: &Arc<crate::spin_api::KeyValueStores>,
) -> anyhow::Result<ComponentContext> {
    let id = &decl.id;
    (|| -> anyhow::Result<ComponentContext> {
        let component_variables = ComponentVariables::resolve(id, variables, &decl.variables)?;
        let outbound = crate::loader::resolve_allowed_hosts(variables, decl)?;
        Ok(ComponentContext {
            id: id.clone(),
            variables: component_variables,
            outbound: Arc::new(outbound),
            environment: decl.environment.clone().into_iter().collect(),
            pg_pools: Default::default(),
            key_value_stores: decl.key_value_stores.clone(),
            key_value: key_value.clone(),
        })
    })()
    .with_context(|| format!("component `{id}`"))
}

/// wasmtime has its own error type; the CLI reports with `anyhow`.
pub fn wasm_err(e: wasmtime::Error) -> anyhow::Error {
    anyhow::anyhow!("{e:?}")
}

fn new_engine() -> anyhow::Result<Engine> {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(MAX_INSTANCES)
        .total_core_instances(MAX_INSTANCES * 8)
        .total_memories(MAX_INSTANCES * 2)
        .total_tables(MAX_INSTANCES * 4)
        .total_stacks(MAX_INSTANCES + EXTRA_FIBERS)
        .max_core_instances_per_component(32)
        .max_memories_per_component(4)
        .max_tables_per_component(16)
        // Components built for the edge stay small; 128 MiB of linear memory
        // per instance keeps the reserved address space modest.
        .max_memory_size(128 << 20)
        .max_component_instance_size(1 << 20)
        .max_core_instance_size(1 << 20)
        .table_elements(20_000);
    let mut config = Config::new();
    config.wasm_component_model(true);
    // WASI 0.3 components (async exports and imports, streams, futures), as
    // Spin's engine has them; concurrency support comes with the feature.
    config.wasm_component_model_async(true);
    // Guests check the epoch as they run: each store yields its thread to
    // other requests at every tick (see `server`).
    config.epoch_interruption(true);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    let engine = Engine::new(&config).map_err(wasm_err)?;
    // The clock guests yield by: one tick per EPOCH_TICK.
    let ticker = engine.weak();
    std::thread::spawn(move || {
        while let Some(engine) = ticker.upgrade() {
            engine.increment_epoch();
            drop(engine);
            std::thread::sleep(EPOCH_TICK);
        }
    });
    Ok(engine)
}

/// How often the engine's epoch advances, and so how long a guest runs
/// before it gives its thread back: 10 ms, Spin's tick.
const EPOCH_TICK: std::time::Duration = std::time::Duration::from_millis(10);

/// Compiled components, keyed by the wasm's digest and the engine's settings,
/// so only the first start after a change pays for compilation.
struct CompileCache {
    dir: Option<PathBuf>,
    engine: Engine,
}

impl CompileCache {
    fn new(engine: &Engine) -> Self {
        let dir = std::env::var_os("FLASHSPIN_CACHE_DIR")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("XDG_CACHE_HOME")
                    .map(PathBuf::from)
                    .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                    .map(|d| d.join("flashspin"))
            })
            .filter(|d| std::fs::create_dir_all(d).is_ok());
        Self {
            dir,
            engine: engine.clone(),
        }
    }

    fn load(&self, source: &Path) -> anyhow::Result<Component> {
        let wasm = std::fs::read(source)?;
        let Some(dir) = &self.dir else {
            return Component::new(&self.engine, componentize(&wasm)?).map_err(wasm_err);
        };
        let mut hasher = Sha256::new();
        hasher.update(&wasm);
        // A core module's component depends on the adapter too.
        hasher.update(ADAPTER);
        std::hash::Hash::hash(
            &self.engine.precompile_compatibility_hash(),
            &mut HashWriter(&mut hasher),
        );
        let path = dir.join(format!("{}.cwasm", hex::encode(hasher.finalize())));
        if path.exists() {
            // SAFETY: the file was written by `precompile_component` of an
            // engine with the same compatibility hash (it is in the name), into
            // a cache directory only this tool writes.
            if let Ok(component) = unsafe { Component::deserialize_file(&self.engine, &path) } {
                return Ok(component);
            }
        }
        let compiled = self
            .engine
            .precompile_component(&componentize(&wasm)?)
            .map_err(wasm_err)?;
        let tmp = tempfile::NamedTempFile::new_in(dir)?;
        std::fs::write(tmp.path(), &compiled)?;
        tmp.persist(&path)?;
        // SAFETY: just produced by this engine.
        unsafe { Component::deserialize(&self.engine, &compiled) }.map_err(wasm_err)
    }
}

/// Adapts WASI preview 1 imports of core modules to WASI 0.2.
const ADAPTER: &[u8] =
    wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER;

/// A component as it is, or a core module turned into one as Spin does at
/// load: a module built with wit-bindgen 0.5 or newer carries its WIT world
/// in `component-type` custom sections, and WASI preview 1 imports, if any,
/// are adapted to WASI 0.2. Modules from older tool chains, which Spin
/// adapts with its own legacy adapters, are refused.
fn componentize(wasm: &[u8]) -> anyhow::Result<Cow<'_, [u8]>> {
    const MAGIC: &[u8] = b"\0asm";
    const CORE_VERSION: &[u8] = &[1, 0, 0, 0];
    anyhow::ensure!(wasm.starts_with(MAGIC), "not a WebAssembly binary");
    if wasm.get(4..8) != Some(CORE_VERSION) {
        return Ok(Cow::Borrowed(wasm));
    }
    let component = wit_component::ComponentEncoder::default()
        .validate(true)
        .module(wasm)
        .and_then(|encoder| {
            encoder.adapter("wasi_snapshot_preview1", ADAPTER)
        })
        .and_then(|mut encoder| encoder.encode())
        .context(
            "cannot turn this core module into a component (only modules built with wit-bindgen 0.5 or newer can be)",
        )?;
    Ok(Cow::Owned(component))
}

/// Feeds `Hash` output into a SHA-256 digest.
struct HashWriter<'a>(&'a mut Sha256);

impl std::hash::Hasher for HashWriter<'_> {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}
