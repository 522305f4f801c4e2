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

    use super::{RawRequest, declared_length, take_chunk};
    use crate::http::Response;
    use flashspin_core::ApiError;

    /// The request type the build's handler receives.
    pub type SdkRequest = IncomingRequest;
    /// The response type the build's handler returns.
    pub type SdkResponse = spin_sdk::http::Response;

    pub async fn read_parts(req: SdkRequest) -> Result<RawRequest, ApiError> {
        let method = match req.method() {
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
        };
        let headers = req.headers().entries();
        let query = req
            .path_with_query()
            .and_then(|p| p.split_once('?').map(|(_, q)| q.to_string()))
            .unwrap_or_default();
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
}

#[cfg(feature = "wasip3")]
mod imp {
    use bytes::Bytes;
    use futures::StreamExt;
    use spin_sdk_wasip3 as sdk7;
    use spin_sdk_wasip3::http::body::IncomingBodyExt;

    use super::{RawRequest, declared_length, take_chunk};
    use crate::http::Response;
    use flashspin_core::ApiError;

    pub use spin_sdk_wasip3::http::{FromRequest, IntoResponse};
    pub use spin_sdk_wasip3::wasip3;

    /// The request type the build's handler receives.
    pub type SdkRequest = sdk7::http::Request;
    /// The response type the build's handler returns.
    pub type SdkResponse = sdk7::http::Response<sdk7::http::FullBody<Bytes>>;

    pub async fn read_parts(req: SdkRequest) -> Result<RawRequest, ApiError> {
        let (parts, body) = req.into_parts();
        let headers: Vec<(String, Vec<u8>)> = parts
            .headers
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.as_bytes().to_vec()))
            .collect();
        if declared_length(&headers).is_some_and(|n| n > super::MAX_BODY_BYTES) {
            return Err(ApiError::PayloadTooLarge);
        }
        let mut bytes = Vec::new();
        let mut stream = body.stream();
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|e| ApiError::InvalidRequest(format!("unreadable body: {e:?}")))?;
            take_chunk(&mut bytes, &chunk)?;
        }
        Ok(RawRequest {
            method: parts.method.as_str().to_string(),
            headers,
            query: parts.uri.query().unwrap_or_default().to_string(),
            body: bytes,
        })
    }

    /// The response with `content-length`: without it Spin 4.1 sends the
    /// body chunked, and the chunk terminator waits about 40 ms on Nagle and
    /// delayed ACK (Spin sets no TCP_NODELAY).
    pub fn to_sdk(response: Response) -> SdkResponse {
        let length = response.body.len();
        let mut builder = sdk7::http::Response::builder().status(response.status);
        for (name, value) in response.headers {
            builder = builder.header(name, value);
        }
        builder
            .header("content-length", length)
            .body(sdk7::http::FullBody::new(Bytes::from(response.body)))
            .unwrap_or_else(|_| {
                let mut fallback =
                    sdk7::http::Response::new(sdk7::http::FullBody::new(Bytes::new()));
                *fallback.status_mut() = sdk7::http::StatusCode::INTERNAL_SERVER_ERROR;
                fallback
            })
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
                        let request =
                            <$crate::sdk::SdkRequest as $crate::sdk::FromRequest>::from_request(
                                request,
                            )?;
                        let response = $crate::sdk::to_sdk(super::$serve(request).await);
                        $crate::sdk::IntoResponse::into_response(response)
                    }
                }
            }
        };
    }
}

pub use imp::*;
