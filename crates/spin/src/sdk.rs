//! The edge between Flashspin's own request and response types and the
//! Spin SDK of the build: spin-sdk 5 for WASI 0.2 (Spin 3.x, 4.0, SpinKube),
//! spin-sdk 7 for WASI 0.3 (Spin 4.1+), chosen by the `wasip3` feature.
//! Everything above this module is the same source for both builds.

use flashspin_core::ApiError;

/// A request's parts, read from whichever SDK the build uses.
pub struct RawRequest {
    pub method: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub query: String,
    pub body: Vec<u8>,
}

/// The most body a request may carry; bigger ones are refused without
/// being read to the end.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// The body length a request declares, if it declares one.
fn declared_length(headers: &[(String, Vec<u8>)]) -> Option<usize> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| std::str::from_utf8(v).ok()?.trim().parse::<usize>().ok())
}

/// The path of a request's `path?query`, without the query.
fn path_of(path_with_query: Option<String>) -> String {
    let full = path_with_query.unwrap_or_default();
    match full.split_once('?') {
        Some((path, _)) => path.to_string(),
        None => full,
    }
}

/// The query of a request's `path?query`; empty when it has none.
fn query_of(path_with_query: Option<String>) -> String {
    path_with_query
        .and_then(|p| p.split_once('?').map(|(_, q)| q.to_string()))
        .unwrap_or_default()
}

/// Appends `chunk` to `body`, refusing to grow past [`MAX_BODY_BYTES`].
fn take_chunk(body: &mut Vec<u8>, chunk: &[u8]) -> Result<(), ApiError> {
    if body.len() + chunk.len() > MAX_BODY_BYTES {
        return Err(ApiError::PayloadTooLarge);
    }
    body.extend_from_slice(chunk);
    Ok(())
}

#[cfg(not(feature = "wasip3"))]
mod imp {
    use futures::StreamExt;
    use spin_sdk::http::{IncomingRequest, Method};

    use super::{RawRequest, declared_length, path_of, query_of, take_chunk};
    use crate::http::Response;
    use flashspin_core::ApiError;

    /// The request type the build's handler receives.
    pub type SdkRequest = IncomingRequest;
    /// The response type the build's handler returns.
    pub type SdkResponse = spin_sdk::http::Response;

    fn method(req: &SdkRequest) -> String {
        match req.method() {
            Method::Get => "GET".into(),
            Method::Post => "POST".into(),
            Method::Put => "PUT".into(),
            Method::Delete => "DELETE".into(),
            Method::Patch => "PATCH".into(),
            Method::Head => "HEAD".into(),
            Method::Options => "OPTIONS".into(),
            Method::Connect => "CONNECT".into(),
            Method::Trace => "TRACE".into(),
            Method::Other(m) => m,
        }
    }

    /// The request's method and path (without its query). Taken from the
    /// raw request, not the SDK's `Request`, whose URL parser would double
    /// a small component's size.
    pub fn method_and_path(req: &SdkRequest) -> (String, String) {
        (method(req), path_of(req.path_with_query()))
    }

    pub async fn read_parts(req: SdkRequest) -> Result<RawRequest, ApiError> {
        let method = method(&req);
        let headers = req.headers().entries();
        let query = query_of(req.path_with_query());
        if declared_length(&headers).is_some_and(|n| n > super::MAX_BODY_BYTES) {
            return Err(ApiError::PayloadTooLarge);
        }
        let mut body = Vec::new();
        let mut stream = req.into_body_stream();
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|e| ApiError::InvalidRequest(format!("unreadable body: {e:?}")))?;
            take_chunk(&mut body, &chunk)?;
        }
        Ok(RawRequest {
            method,
            headers,
            query,
            body,
        })
    }

    pub fn to_sdk(response: Response) -> SdkResponse {
        let mut builder = SdkResponse::builder();
        builder.status(response.status);
        for (name, value) in response.headers {
            builder.header(name, value);
        }
        builder.body(response.body).build()
    }

    /// A component's HTTP handler on WASI 0.2: the SDK's macro, around
    /// `$serve`, an `async fn(SdkRequest) -> Response`.
    #[macro_export]
    #[doc(hidden)]
    macro_rules! __http_entry {
        ($serve:ident) => {
            #[spin_sdk::http_component]
            async fn __flashspin_http_entry(
                req: $crate::sdk::SdkRequest,
            ) -> $crate::sdk::SdkResponse {
                $crate::sdk::to_sdk($serve(req).await)
            }
        };
    }

    /// A component's Redis-message handler on WASI 0.2: the SDK's macro,
    /// around `$handle`, an `async fn(Vec<u8>) -> Result<(), String>`.
    #[macro_export]
    #[doc(hidden)]
    macro_rules! __redis_entry {
        ($handle:ident) => {
            #[spin_sdk::redis_component]
            async fn __flashspin_redis_entry(message: Vec<u8>) -> Result<(), String> {
                $crate::variables::prepare(env!("CARGO_PKG_NAME")).await;
                $handle(message).await
            }
        };
    }
}

#[cfg(feature = "wasip3")]
mod imp {
    //! Straight on `wasi:http@0.3.0`'s types, without the SDK's `http`
    //! crate conversions: its header-name table and body adapters cost
    //! every component about 35 KB, for a request read once and a response
    //! written whole.

    use spin_sdk_wasip3::wasip3::http::types::{self, ErrorCode, Fields, Method};
    use spin_sdk_wasip3::wasip3::wit_bindgen::StreamResult;
    use spin_sdk_wasip3::wasip3::{wit_future, wit_stream};

    use super::{MAX_BODY_BYTES, RawRequest, declared_length, path_of, query_of, take_chunk};
    use crate::http::Response;
    use flashspin_core::ApiError;

    pub use spin_sdk_wasip3::wasip3;

    /// The request type the build's handler receives.
    pub type SdkRequest = types::Request;

    fn method(req: &SdkRequest) -> String {
        match req.get_method() {
            Method::Get => "GET".into(),
            Method::Head => "HEAD".into(),
            Method::Post => "POST".into(),
            Method::Put => "PUT".into(),
            Method::Delete => "DELETE".into(),
            Method::Connect => "CONNECT".into(),
            Method::Options => "OPTIONS".into(),
            Method::Trace => "TRACE".into(),
            Method::Patch => "PATCH".into(),
            Method::Other(m) => m,
        }
    }

    /// The request's method and path (without its query).
    pub fn method_and_path(req: &SdkRequest) -> (String, String) {
        (method(req), path_of(req.get_path_with_query()))
    }

    pub async fn read_parts(req: SdkRequest) -> Result<RawRequest, ApiError> {
        let method = method(&req);
        let query = query_of(req.get_path_with_query());
        let headers = req.get_headers().copy_all();
        if declared_length(&headers).is_some_and(|n| n > MAX_BODY_BYTES) {
            return Err(ApiError::PayloadTooLarge);
        }
        // `handled` tells the host how the request's handling ended; its
        // default, sent when it is dropped, is success.
        let (handled, handled_reader) = wit_future::new(|| Ok(()));
        let (mut stream, trailers) = types::Request::consume_body(req, handled_reader);
        let mut body = Vec::new();
        loop {
            let (result, chunk) = stream.read(Vec::with_capacity(MAX_BODY_BYTES)).await;
            take_chunk(&mut body, &chunk)?;
            match result {
                StreamResult::Complete(_) => {}
                StreamResult::Dropped | StreamResult::Cancelled => break,
            }
        }
        // The stream's end says nothing of how it ended: the trailers'
        // future does. The host's error code stays in its own log.
        if trailers.await.is_err() {
            return Err(ApiError::InvalidRequest("unreadable body".into()));
        }
        drop(handled);
        Ok(RawRequest {
            method,
            headers,
            query,
            body,
        })
    }

    /// The response with `content-length`: without it Spin 4.1 sends the
    /// body chunked, and the chunk terminator waits about 40 ms on Nagle and
    /// delayed ACK (Spin sets no TCP_NODELAY). The body is written after
    /// the response is handed over, by a task of the instance.
    pub fn to_wasi(response: Response) -> Result<types::Response, ErrorCode> {
        let mut entries: Vec<(String, Vec<u8>)> = response
            .headers
            .into_iter()
            .map(|(name, value)| (name, value.into_bytes()))
            .collect();
        entries.push((
            "content-length".into(),
            response.body.len().to_string().into_bytes(),
        ));
        let headers = Fields::from_list(&entries)
            .map_err(|_| ErrorCode::InternalError(Some("invalid response header".into())))?;
        let (mut writer, contents) = wit_stream::new::<u8>();
        let (trailers, trailers_reader) = wit_future::new(|| Ok(None));
        let (wasi, _sent) = types::Response::new(headers, Some(contents), trailers_reader);
        wasi.set_status_code(response.status)
            .map_err(|()| ErrorCode::InternalError(Some("invalid status".into())))?;
        let body = response.body;
        spin_sdk_wasip3::wasip3::spawn(async move {
            if !body.is_empty() {
                // What a client that went away leaves unwritten is dropped.
                let _unwritten = writer.write_all(body).await;
            }
            drop(writer);
            // No trailers: the default, `Ok(None)`, once dropped.
            drop(trailers);
        });
        Ok(wasi)
    }

    /// A component's HTTP handler on WASI 0.3: exports `wasi:http/handler`
    /// around `$serve`, an `async fn(SdkRequest) -> Response`. Written out
    /// rather than through the SDK's attribute, which names `::spin_sdk`,
    /// the WASI 0.2 SDK in a component crate.
    #[macro_export]
    #[doc(hidden)]
    macro_rules! __http_entry {
        ($serve:ident) => {
            mod __flashspin_http_entry {
                use $crate::sdk::wasip3::http::types;

                struct Entry;
                $crate::sdk::wasip3::http::service::export!(Entry);

                impl $crate::sdk::wasip3::exports::http::handler::Guest for Entry {
                    async fn handle(
                        request: types::Request,
                    ) -> Result<types::Response, types::ErrorCode> {
                        $crate::sdk::to_wasi(super::$serve(request).await)
                    }
                }
            }
        };
    }

    /// The Redis trigger's export, `spin:redis/inbound-redis@3.0.0`, bound
    /// here rather than through the SDK's attribute (which, like its HTTP
    /// one, names `::spin_sdk`). The interface is read from the host's copy
    /// of Spin's WIT, so guest and host cannot drift apart; its `redis`
    /// types are the SDK's own.
    pub mod redis_trigger {
        spin_sdk_wasip3::wit_bindgen::generate!({
            inline: "package flashspin:guest; world redis-trigger { export spin:redis/inbound-redis@3.0.0; }",
            path: ["../host/wit/deps/spin-redis@3.0.0"],
            runtime_path: "spin_sdk_wasip3::wit_bindgen::rt",
            with: { "spin:redis/redis@3.0.0": spin_sdk_wasip3::redis::wit::redis },
            pub_export_macro: true,
            export_macro_name: "__export_redis_trigger",
            default_bindings_module: "flashspin_spin::sdk::redis_trigger",
        });
        pub use self::exports::spin::redis::inbound_redis::Guest;
        pub use spin_sdk_wasip3::redis::wit::redis::Error;
    }

    /// A component's Redis-message handler on WASI 0.3: exports
    /// `spin:redis/inbound-redis@3.0.0` around `$handle`, an
    /// `async fn(Vec<u8>) -> Result<(), String>`. A failure is logged, as
    /// the WASI 0.2 SDK does.
    #[macro_export]
    #[doc(hidden)]
    macro_rules! __redis_entry {
        ($handle:ident) => {
            mod __flashspin_redis_entry {
                use $crate::sdk::redis_trigger::{Error, Guest};

                struct Entry;
                $crate::sdk::redis_trigger::__export_redis_trigger!(Entry with_types_in $crate::sdk::redis_trigger);

                impl Guest for Entry {
                    async fn handle_message(message: Vec<u8>) -> Result<(), Error> {
                        $crate::variables::prepare(env!("CARGO_PKG_NAME")).await;
                        super::$handle(message).await.map_err(|e| {
                            eprintln!("{e}");
                            Error::Other(e)
                        })
                    }
                }
            }
        };
    }
}

pub use imp::*;

/// A component that answers from what it was compiled with, by method and
/// path alone: no variable, no body, no Redis (`web`, `openapi`).
/// `$serve` is a `fn(&str, &str) -> Response` of the method and the path.
#[macro_export]
macro_rules! static_component {
    ($serve:ident) => {
        async fn __flashspin_serve(req: $crate::sdk::SdkRequest) -> $crate::http::Response {
            let (method, path) = $crate::sdk::method_and_path(&req);
            $serve(&method, &path)
        }
        $crate::__http_entry!(__flashspin_serve);
    };
}

/// A component's handler of Redis messages (`[[trigger.redis]]`):
/// `$handle` is an `async fn(Vec<u8>) -> Result<(), String>`; an error is
/// logged and tells Spin the message failed.
#[macro_export]
macro_rules! redis_component {
    ($handle:ident) => {
        $crate::__redis_entry!($handle);
    };
}
