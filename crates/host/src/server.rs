//! The HTTP server: each request is routed, given Spin's request headers and
//! handled by its component: a WASI 0.2 component in a fresh instance, where
//! a trap or panic costs that request a 500 and nothing else; a WASI 0.3
//! component by an instance it may share with other requests (`wasip3`),
//! where a trap or panic costs a 500 to every request that instance runs.
//!
//! Every wait is bounded, so that slow or stalled clients and guests that
//! never finish cannot take the host's connections or instance slots for
//! good (docs/HOST.md, "Limits"):
//!
//! - at most [`MAX_CONNECTIONS`] connections are served at once; beyond
//!   that, new ones wait in the listen backlog;
//! - a request head must arrive within [`HEADER_READ_TIMEOUT`] (also how
//!   long a kept-alive connection may sit idle);
//! - from the arrival of its head, a request has [`REQUEST_TIME_LIMIT`] to
//!   deliver its body, get an instance slot and run its guest to the end,
//!   outbound calls included. The body (up to [`BODY_BUFFER`]) is read
//!   before a slot is taken, so a client that stalls holds no slot;
//! - a client that takes none of its response for as long is dropped;
//! - a guest running Wasm gives its thread back at every epoch tick, so a
//!   CPU-bound guest slows the others down but does not stop them.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot};
use wasmtime::Store;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::handler::{ExpirationError, InstantiationError, TrapOrPanicError};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::app::{App, HttpHandler, LoadedComponent};
use crate::router::RouteMatch;
use crate::state::RequestState;

/// How many connections are served at once.
const MAX_CONNECTIONS: usize = 1024;
/// A client must send its request head within this time.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request may take, from the arrival of its head to the end of
/// its guest; the environment variable `FLASHSPIN_REQUEST_TIME_LIMIT_MS`
/// changes it.
const REQUEST_TIME_LIMIT: Duration = Duration::from_secs(30);
/// How much of a request body is read before the guest starts; the rest is
/// streamed to it as it reads.
const BODY_BUFFER: usize = 64 << 10;
/// How long to wait before accepting again after `accept` failed (out of
/// file descriptors, say), rather than failing in a tight loop.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

pub struct Server {
    app: Arc<App>,
    listen: SocketAddr,
    connections: Arc<Semaphore>,
    instances: Arc<Semaphore>,
    request_time_limit: Duration,
}

/// [`REQUEST_TIME_LIMIT`], or what `FLASHSPIN_REQUEST_TIME_LIMIT_MS` says.
pub fn request_time_limit() -> Duration {
    std::env::var("FLASHSPIN_REQUEST_TIME_LIMIT_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map(Duration::from_millis)
        .unwrap_or(REQUEST_TIME_LIMIT)
}

impl Server {
    pub fn new(app: Arc<App>, listen: SocketAddr) -> Arc<Self> {
        Arc::new(Self {
            instances: app.instance_slots.clone(),
            app,
            listen,
            connections: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
            request_time_limit: request_time_limit(),
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
            // A connection slot first: beyond the cap, clients wait in the
            // listen backlog until a connection ends.
            let slot = tokio::select! {
                slot = self.connections.clone().acquire_owned() => slot?,
                () = &mut shutdown => return Ok(()),
            };
            let (stream, client) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        eprintln!("accept failed: {e}");
                        tokio::time::sleep(ACCEPT_RETRY).await;
                        continue;
                    }
                },
                () = &mut shutdown => return Ok(()),
            };
            let _ = stream.set_nodelay(true);
            let server = self.clone();
            let io = TokioIo::new(WriteStallLimit::new(stream, self.request_time_limit));
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let server = server.clone();
                    async move { Ok::<_, Infallible>(server.handle(req, client).await) }
                });
                // Errors here are clients going away mid-request; nothing to do.
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .serve_connection(io, service)
                    .await;
                drop(slot);
            });
        }
    }

    async fn handle(
        &self,
        req: Request<Incoming>,
        client: SocketAddr,
    ) -> Response<HyperOutgoingBody> {
        let started = Instant::now();
        let deadline = tokio::time::Instant::from_std(started) + self.request_time_limit;
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
            Ok(req) => match &component.handler {
                HttpHandler::Wasi0_2(pre) => {
                    self.run(component, pre, req, deadline, Arc::clone(&redis_commands))
                        .await
                }
                HttpHandler::Wasi0_3(handler) => {
                    self.run_p3(id, handler, req, deadline, Arc::clone(&redis_commands))
                        .await
                }
            },
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
        pre: &ProxyPre<RequestState>,
        req: Request<Incoming>,
        deadline: tokio::time::Instant,
        redis_commands: Arc<std::sync::atomic::AtomicU32>,
    ) -> Response<HyperOutgoingBody> {
        let id = component.context.id.clone();
        let limit = self.request_time_limit;
        // The body before a slot: a client that sends its head and then
        // stalls waits here holding nothing but its connection.
        let Ok(req) = tokio::time::timeout_at(deadline, buffer_body(req)).await else {
            eprintln!("[{id}] the request body did not arrive within {limit:?}");
            return request_timeout();
        };
        let waiting_for_body = req.body().waiting.clone();
        let permit =
            match tokio::time::timeout_at(deadline, self.instances.clone().acquire_owned()).await {
                Ok(Ok(permit)) => permit,
                Ok(Err(_closed)) => return status_only(StatusCode::SERVICE_UNAVAILABLE),
                Err(_elapsed) => {
                    eprintln!("[{id}] no instance was free within {limit:?}");
                    return status_only(StatusCode::SERVICE_UNAVAILABLE);
                }
            };
        let mut state = RequestState::new(component.context.clone());
        state.redis_commands = redis_commands;
        let mut store = Store::new(&self.app.engine, state);
        // Running Wasm gives its thread back at every epoch tick; the
        // deadline below is what stops a guest.
        store.set_epoch_deadline(1);
        store.epoch_deadline_async_yield_and_update(1);
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
                eprintln!("[{id}] cannot pass the request: {e:?}");
                return status_only(StatusCode::INTERNAL_SERVER_ERROR);
            }
        };
        let pre = pre.clone();
        // The guest runs in its own task: it may keep streaming the body after
        // the response head has been handed back. At the deadline it is
        // dropped wherever it is (running, or waiting for the request body,
        // an outbound call or the client), which frees its slot.
        let task = tokio::spawn(async move {
            let result = tokio::time::timeout_at(deadline, async {
                let proxy = pre.instantiate_async(&mut store).await?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, req, out)
                    .await
            })
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
                    match task.await {
                        Ok(Ok(Err(e))) => {
                            eprintln!("[{id}] component failed after responding: {e:?}");
                        }
                        Ok(Err(_elapsed)) => eprintln!(
                            "[{id}] component stopped after responding: still running after {limit:?}"
                        ),
                        Ok(Ok(Ok(()))) | Err(_) => {}
                    }
                });
                response
            }
            Ok(Err(code)) => {
                eprintln!("[{id}] the component answered with an error: {code:?}");
                status_only(StatusCode::INTERNAL_SERVER_ERROR)
            }
            // The component ended without setting a response: it trapped,
            // panicked, simply returned or ran out of time.
            Err(_) => {
                match task.await {
                    Ok(Ok(Err(e))) => eprintln!("[{id}] component failed: {e:?}"),
                    Ok(Ok(Ok(()))) => eprintln!("[{id}] component returned without a response"),
                    // Stopped while waiting for the rest of a large body:
                    // the client's fault, as when it stalls before.
                    Ok(Err(_elapsed)) if waiting_for_body.load(Ordering::Relaxed) => {
                        eprintln!("[{id}] the request body did not arrive within {limit:?}");
                        return request_timeout();
                    }
                    Ok(Err(_elapsed)) => {
                        eprintln!("[{id}] component stopped: still running after {limit:?}")
                    }
                    Err(e) => eprintln!("[{id}] component task failed: {e}"),
                }
                status_only(StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    }

    /// Hands the request to a WASI 0.3 component's instances. The body is
    /// read as for WASI 0.2 ([`buffer_body`]) before an instance takes the
    /// request; the request has until `deadline` for its response head.
    async fn run_p3(
        &self,
        id: &str,
        handler: &crate::wasip3::Handler,
        req: Request<Incoming>,
        deadline: tokio::time::Instant,
        redis_commands: Arc<std::sync::atomic::AtomicU32>,
    ) -> Response<HyperOutgoingBody> {
        let limit = self.request_time_limit;
        let Ok(req) = tokio::time::timeout_at(deadline, buffer_body(req)).await else {
            eprintln!("[{id}] the request body did not arrive within {limit:?}");
            return request_timeout();
        };
        let waiting_for_body = req.body().waiting.clone();
        let req = req.map(|body| body.map_err(wasmtime_wasi_http::Error::from).boxed_unsync());
        let started = Arc::new(AtomicBool::new(false));
        let data = crate::wasip3::RequestData {
            deadline,
            redis_commands,
            started: started.clone(),
        };
        let outcome = tokio::time::timeout_at(deadline, handler.handle(data, req)).await;
        let error = match outcome {
            Ok(Ok(response)) => return response,
            Ok(Err(e)) => e,
            Err(_elapsed) if !started.load(Ordering::Relaxed) => {
                eprintln!("[{id}] no instance was free within {limit:?}");
                return status_only(StatusCode::SERVICE_UNAVAILABLE);
            }
            Err(_elapsed) => wasmtime::Error::from(ExpirationError),
        };
        if error.is::<ExpirationError>() {
            // Expired while waiting for more of a large body: the client's
            // fault, as when it stalls before.
            if waiting_for_body.load(Ordering::Relaxed) {
                eprintln!("[{id}] the request body did not arrive within {limit:?}");
                return request_timeout();
            }
            eprintln!("[{id}] component stopped: no response within its time limit");
        } else if let Some(failed) =
            error.downcast_ref::<InstantiationError<crate::wasip3::RequestData>>()
        {
            if failed.error.is::<crate::wasip3::NoInstanceSlot>() {
                eprintln!("[{id}] no instance was free within {limit:?}");
                return status_only(StatusCode::SERVICE_UNAVAILABLE);
            }
            eprintln!(
                "[{id}] cannot instantiate the component: {:?}",
                failed.error
            );
        } else if error.is::<TrapOrPanicError>() {
            eprintln!("[{id}] component failed: its instance trapped or panicked");
        } else {
            eprintln!("[{id}] component failed: {error:?}");
        }
        status_only(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

/// Reads the request body until it ends, fails or [`BODY_BUFFER`] bytes
/// have come; the guest then gets what was read, and the rest as it comes.
async fn buffer_body(req: Request<Incoming>) -> Request<BufferedBody> {
    let (parts, mut body) = req.into_parts();
    let mut frames = VecDeque::new();
    let mut read = 0;
    let mut error = None;
    let rest = loop {
        if body.is_end_stream() {
            break None;
        }
        if read >= BODY_BUFFER {
            break Some(body);
        }
        match body.frame().await {
            None => break None,
            Some(Ok(frame)) => {
                read += frame.data_ref().map_or(0, Bytes::len);
                frames.push_back(frame);
            }
            // The guest sees the error where it would have.
            Some(Err(e)) => {
                error = Some(e);
                break None;
            }
        }
    };
    Request::from_parts(
        parts,
        BufferedBody {
            frames,
            error,
            rest,
            waiting: Arc::default(),
        },
    )
}

/// A request body as [`buffer_body`] left it: the frames read, then the
/// error that stopped the reading or the rest of the body.
struct BufferedBody {
    frames: VecDeque<Frame<Bytes>>,
    error: Option<hyper::Error>,
    rest: Option<Incoming>,
    /// Whether the guest is waiting for more of the body from the client.
    waiting: Arc<AtomicBool>,
}

impl Body for BufferedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        if let Some(frame) = this.frames.pop_front() {
            return Poll::Ready(Some(Ok(frame)));
        }
        if let Some(e) = this.error.take() {
            return Poll::Ready(Some(Err(e)));
        }
        match &mut this.rest {
            Some(rest) => {
                let polled = Pin::new(rest).poll_frame(cx);
                this.waiting.store(polled.is_pending(), Ordering::Relaxed);
                polled
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty()
            && self.error.is_none()
            && self.rest.as_ref().is_none_or(Body::is_end_stream)
    }
}

/// A connection whose writes may not stall for longer than `limit`: when
/// the client takes none of what the host writes for that long, the write
/// fails and hyper drops the connection.
struct WriteStallLimit<S> {
    inner: S,
    limit: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> WriteStallLimit<S> {
    fn new(inner: S, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            stalled: None,
        }
    }

    /// Passes on what a write returned, starting the stall timer when it
    /// made no progress and failing the write when the timer has run out.
    fn check<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let limit = self.limit;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client took none of the response in time",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteStallLimit<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteStallLimit<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.check(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.check(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.check(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.check(cx, polled)
    }
}

/// 408, closing the connection: what is left of the body is not read.
fn request_timeout() -> Response<HyperOutgoingBody> {
    let mut response = status_only(StatusCode::REQUEST_TIMEOUT);
    response
        .headers_mut()
        .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    response
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

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn a_write_the_client_never_takes_fails_at_the_limit() {
        let (near, _far) = tokio::io::duplex(16);
        let limit = Duration::from_millis(200);
        let mut conn = WriteStallLimit::new(near, limit);
        let started = Instant::now();
        let e = conn.write_all(&[0; 64]).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= limit);
    }

    #[tokio::test]
    async fn a_slow_client_that_keeps_reading_is_not_cut_off() {
        let (near, mut far) = tokio::io::duplex(16);
        let limit = Duration::from_millis(200);
        let mut conn = WriteStallLimit::new(near, limit);
        let reader = tokio::spawn(async move {
            let mut read = 0;
            let mut buf = [0; 16];
            while read < 256 {
                tokio::time::sleep(limit / 4).await;
                read += far.read(&mut buf).await.unwrap();
            }
        });
        // 16 stalls of 50 ms each: far longer than the limit in all.
        let started = Instant::now();
        conn.write_all(&[0; 256]).await.unwrap();
        reader.await.unwrap();
        assert!(started.elapsed() > limit);
    }
}
