//! The HTTP server: each request is routed, given Spin's request headers and
//! handled by a fresh instance of its component. A trap or panic in the
//! component costs that request a 500 and nothing else.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot};
use wasmtime::Store;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::app::{App, LoadedComponent, MAX_INSTANCES};
use crate::router::RouteMatch;
use crate::state::RequestState;

/// A client must send its request head within this time.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A guest still running after this long is stopped (it traps); the
/// environment variable `FLASHSPIN_GUEST_TIME_LIMIT_MS` changes it.
const GUEST_TIME_LIMIT: Duration = Duration::from_secs(30);

pub struct Server {
    app: Arc<App>,
    listen: SocketAddr,
    instances: Arc<Semaphore>,
    /// Epoch ticks a guest may run for.
    guest_ticks: u64,
}

impl Server {
    pub fn new(app: App, listen: SocketAddr) -> Arc<Self> {
        let limit = std::env::var("FLASHSPIN_GUEST_TIME_LIMIT_MS")
            .ok()
            .and_then(|ms| ms.parse().ok())
            .map(Duration::from_millis)
            .unwrap_or(GUEST_TIME_LIMIT);
        Arc::new(Self {
            app: Arc::new(app),
            listen,
            instances: Arc::new(Semaphore::new(MAX_INSTANCES as usize)),
            guest_ticks: (limit.as_millis() / crate::app::EPOCH_TICK.as_millis()).max(1) as u64,
        })
    }

    /// Accepts connections until `shutdown` resolves.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> anyhow::Result<()> {
        tokio::pin!(shutdown);
        loop {
            let (stream, client) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        eprintln!("accept failed: {e}");
                        continue;
                    }
                },
                () = &mut shutdown => return Ok(()),
            };
            let _ = stream.set_nodelay(true);
            let server = self.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let server = server.clone();
                    async move { Ok::<_, Infallible>(server.handle(req, client).await) }
                });
                // Errors here are clients going away mid-request; nothing to do.
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }

    async fn handle(
        &self,
        req: Request<Incoming>,
        client: SocketAddr,
    ) -> Response<HyperOutgoingBody> {
        let started = Instant::now();
        let method = req.method().to_string();
        let path = req.uri().path().to_string();
        if let Some(what) = path.strip_prefix("/.well-known/spin/") {
            // Spin answers these itself, before routing.
            return match what {
                "health" => text(StatusCode::OK, "OK"),
                _ => status_only(StatusCode::NOT_FOUND),
            };
        }
        let Some(route) = self.app.router.route(&path) else {
            let response = status_only(StatusCode::NOT_FOUND);
            crate::log::request(&method, &path, "-", 404, started.elapsed(), 0);
            return response;
        };
        let id = route.target.component.as_str();
        let component = &self.app.components[id];
        let redis_commands = Arc::default();
        let response = match self.prepare(req, &route, client) {
            Ok(req) => self.run(component, req, Arc::clone(&redis_commands)).await,
            Err(e) => {
                eprintln!("[{id}] bad request: {e}");
                status_only(StatusCode::BAD_REQUEST)
            }
        };
        crate::log::request(
            &method,
            &path,
            id,
            response.status().as_u16(),
            started.elapsed(),
            redis_commands.load(std::sync::atomic::Ordering::Relaxed),
        );
        response
    }

    /// Gives the request an absolute URI and Spin's headers, as Spin does for
    /// WASI 0.2 components. (wasi:http itself hides the `host` header.)
    fn prepare(
        &self,
        req: Request<Incoming>,
        route: &RouteMatch<'_>,
        client: SocketAddr,
    ) -> anyhow::Result<Request<Incoming>> {
        let (mut parts, body) = req.into_parts();
        let host = match parts.headers.get(http::header::HOST) {
            Some(h) => h.to_str()?.to_string(),
            None => self.listen.to_string(),
        };
        let path_and_query = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let full_url = format!("http://{host}{path_and_query}");
        parts.uri = full_url.parse::<Uri>()?;
        parts.headers.remove(http::header::CONNECTION);

        let headers = &mut parts.headers;
        let mut set = |name: &str, value: &str| -> anyhow::Result<()> {
            headers.insert(
                HeaderName::from_bytes(name.as_bytes())?,
                HeaderValue::from_str(value)?,
            );
            Ok(())
        };
        let target = route.target;
        set("spin-path-info", &route.path_info)?;
        set("spin-full-url", &full_url)?;
        set("spin-matched-route", &target.based)?;
        set("spin-base-path", "/")?;
        set("spin-raw-component-route", &target.raw)?;
        set("spin-component-route", &target.prefix)?;
        set("spin-client-addr", &client.to_string())?;
        for (name, value) in &route.captures {
            let name = name.replace('_', "-").to_ascii_lowercase();
            set(&format!("spin-path-match-{name}"), value)?;
        }
        Ok(Request::from_parts(parts, body))
    }

    async fn run(
        &self,
        component: &LoadedComponent,
        req: Request<Incoming>,
        redis_commands: Arc<std::sync::atomic::AtomicU32>,
    ) -> Response<HyperOutgoingBody> {
        let Ok(permit) = self.instances.clone().acquire_owned().await else {
            return status_only(StatusCode::SERVICE_UNAVAILABLE);
        };
        let mut state = RequestState::new(component.context.clone());
        state.redis_commands = redis_commands;
        let mut store = Store::new(&self.app.engine, state);
        store.set_epoch_deadline(self.guest_ticks);
        store.epoch_deadline_trap();
        let (sender, receiver) = oneshot::channel();
        let prepared = (|| -> wasmtime::Result<_> {
            let mut http = store.data_mut().http();
            let req = http.new_incoming_request(Scheme::Http, req)?;
            let out = http.new_response_outparam(sender)?;
            Ok((req, out))
        })();
        let (req, out) = match prepared {
            Ok(handles) => handles,
            Err(e) => {
                eprintln!("[{}] cannot pass the request: {e:?}", component.context.id);
                return status_only(StatusCode::INTERNAL_SERVER_ERROR);
            }
        };
        let pre = component.pre.clone();
        let id = component.context.id.clone();
        // The guest runs in its own task: it may keep streaming the body after
        // the response head has been handed back.
        let task = tokio::spawn(async move {
            let result = async {
                let proxy = pre.instantiate_async(&mut store).await?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, req, out)
                    .await
            }
            .await;
            store.data().finish_output();
            drop(store);
            drop(permit);
            result
        });
        match receiver.await {
            Ok(Ok(response)) => {
                // The guest may still fail while streaming the body.
                let id = id.clone();
                tokio::spawn(async move {
                    if let Ok(Err(e)) = task.await {
                        eprintln!("[{id}] component failed after responding: {e:?}");
                    }
                });
                response
            }
            Ok(Err(code)) => {
                eprintln!("[{id}] the component answered with an error: {code:?}");
                status_only(StatusCode::INTERNAL_SERVER_ERROR)
            }
            // The component ended without setting a response: it trapped,
            // panicked or simply returned.
            Err(_) => {
                match task.await {
                    Ok(Err(e)) => eprintln!("[{id}] component failed: {e:?}"),
                    Ok(Ok(())) => eprintln!("[{id}] component returned without a response"),
                    Err(e) => eprintln!("[{id}] component task failed: {e}"),
                }
                status_only(StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    }
}

fn status_only(status: StatusCode) -> Response<HyperOutgoingBody> {
    let body = Empty::<Bytes>::new()
        .map_err(|never: Infallible| -> wasmtime_wasi_http::Error { match never {} })
        .boxed_unsync();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
}

fn text(status: StatusCode, body: &'static str) -> Response<HyperOutgoingBody> {
    let body = Full::new(Bytes::from_static(body.as_bytes()))
        .map_err(|never: Infallible| -> wasmtime_wasi_http::Error { match never {} })
        .boxed_unsync();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
}
