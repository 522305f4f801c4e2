//! Sending login codes: a JSON POST to the SMS gateway named by the
//! `sms_webhook_origin` and `sms_webhook_path` variables, through Spin's
//! outbound HTTP with a 5 s limit on connecting and on the answer. With no
//! gateway configured ([`NO_GATEWAY`]) the code goes to the component's log
//! instead, which is for development only.

use std::time::Duration;

use flashspin_core::ApiError;
use flashspin_core::config::{Variables, read};
use flashspin_core::login::LoginCode;
use flashspin_core::phone::Phone;
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(5);

/// The `sms_webhook_origin` that means "no gateway". The origin is also an
/// `allowed_outbound_hosts` entry, which Spin refuses to load when empty, so
/// "none" has to be a well-formed origin: `.invalid` is reserved never to
/// resolve (RFC 6761), so even a mistaken send could reach nobody.
pub const NO_GATEWAY: &str = "http://sms.invalid";

/// Where codes go.
pub enum SmsSender {
    Gateway {
        /// `https` rather than `http`.
        https: bool,
        authority: String,
        path: String,
    },
    Log,
}

impl SmsSender {
    pub fn from_vars(vars: &impl Variables) -> Result<Self, ApiError> {
        let origin: String = read(vars, "sms_webhook_origin")?;
        let path: String = read(vars, "sms_webhook_path")?;
        if origin == NO_GATEWAY {
            return Ok(SmsSender::Log);
        }
        let bad = || {
            ApiError::Internal(format!(
                "sms_webhook_origin={origin:?} is not scheme://host[:port]"
            ))
        };
        let (scheme, authority) = origin.split_once("://").ok_or_else(bad)?;
        let https = match scheme {
            "http" => false,
            "https" => true,
            _ => return Err(bad()),
        };
        let authority = authority.trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') {
            return Err(bad());
        }
        let path = if path.starts_with('/') {
            path
        } else {
            format!("/{path}")
        };
        Ok(SmsSender::Gateway {
            https,
            authority: authority.to_string(),
            path,
        })
    }

    /// Delivers `code` to `phone`; `Err` carries the reason for the log.
    pub async fn send(&self, phone: &Phone, code: &LoginCode, ttl_secs: u32) -> Result<(), String> {
        let text = format!(
            "Your login code is {}. It expires in {} minutes. Never share it.",
            code.reveal(),
            ttl_secs.div_ceil(60)
        );
        match self {
            SmsSender::Log => {
                println!(
                    "login code for {}: {} (no SMS gateway configured)",
                    phone.masked(),
                    code.reveal()
                );
                Ok(())
            }
            SmsSender::Gateway {
                https,
                authority,
                path,
            } => {
                let body = json!({"phone": phone.as_str(), "code": code.reveal(), "text": text});
                imp::post_json(*https, authority, path, body.to_string().as_bytes()).await
            }
        }
    }
}

#[cfg(not(feature = "wasip3"))]
mod imp {
    //! WASI 0.2: `wasi:http/outgoing-handler`, blocking.

    use super::TIMEOUT;
    use spin_sdk::http::{Fields, Method, OutgoingBody, OutgoingRequest, Scheme};
    use spin_sdk::wit::wasi::http0_2_0::outgoing_handler;
    use spin_sdk::wit::wasi::http0_2_0::types::{ErrorCode, RequestOptions};

    /// The common transport failures by name; the derived `Debug` of
    /// `ErrorCode` would add several KB to the component for a log line.
    fn describe(code: ErrorCode) -> String {
        match code {
            ErrorCode::DnsTimeout => "DNS timeout",
            ErrorCode::DnsError(_) => "DNS error",
            ErrorCode::DestinationNotFound => "destination not found",
            ErrorCode::DestinationUnavailable => "destination unavailable",
            ErrorCode::ConnectionRefused => "connection refused",
            ErrorCode::ConnectionTerminated => "connection terminated",
            ErrorCode::ConnectionTimeout => "connection timeout",
            ErrorCode::ConnectionReadTimeout => "read timeout",
            ErrorCode::HttpResponseTimeout => "response timeout",
            ErrorCode::HttpRequestDenied => "request denied by allowed_outbound_hosts",
            ErrorCode::TlsCertificateError => "TLS certificate error",
            ErrorCode::TlsProtocolError => "TLS protocol error",
            _ => "transport error",
        }
        .to_string()
    }

    pub async fn post_json(
        https: bool,
        authority: &str,
        path: &str,
        body: &[u8],
    ) -> Result<(), String> {
        let scheme = if https { Scheme::Https } else { Scheme::Http };
        let scheme = &scheme;
        let headers = Fields::from_list(&[
            ("content-type".to_string(), b"application/json".to_vec()),
            (
                "content-length".to_string(),
                body.len().to_string().into_bytes(),
            ),
        ])
        .map_err(|_| "invalid request headers".to_string())?;
        let request = OutgoingRequest::new(headers);
        let set = request.set_method(&Method::Post).is_ok()
            && request.set_scheme(Some(scheme)).is_ok()
            && request.set_authority(Some(authority)).is_ok()
            && request.set_path_with_query(Some(path)).is_ok();
        if !set {
            return Err("invalid gateway address".into());
        }
        let outgoing = request
            .body()
            .map_err(|()| "request body unavailable".to_string())?;
        let options = RequestOptions::new();
        let nanos = TIMEOUT.as_nanos() as u64;
        // Unsupported options are not fatal: the host may enforce its own.
        let _ = options.set_connect_timeout(Some(nanos));
        let _ = options.set_first_byte_timeout(Some(nanos));
        let _ = options.set_between_bytes_timeout(Some(nanos));
        let pending = outgoing_handler::handle(request, Some(options)).map_err(describe)?;
        {
            let stream = outgoing
                .write()
                .map_err(|()| "request body stream unavailable".to_string())?;
            stream
                .blocking_write_and_flush(body)
                .map_err(|_| "writing the request failed".to_string())?;
        }
        OutgoingBody::finish(outgoing, None).map_err(describe)?;
        pending.subscribe().block();
        let response = match pending.get() {
            Some(Ok(Ok(response))) => response,
            Some(Ok(Err(code))) => return Err(describe(code)),
            Some(Err(())) | None => return Err("no response".into()),
        };
        let status = response.status();
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(format!("gateway answered {status}"))
        }
    }
}

#[cfg(feature = "wasip3")]
mod imp {
    //! WASI 0.3: the SDK's async `send`, raced against [`TIMEOUT`].

    use super::TIMEOUT;
    use bytes::Bytes;
    use futures::future::{Either, select};
    use spin_sdk_wasip3::http::{FullBody, send};

    pub async fn post_json(
        https: bool,
        authority: &str,
        path: &str,
        body: &[u8],
    ) -> Result<(), String> {
        let scheme = if https { "https" } else { "http" };
        let request = spin_sdk_wasip3::http::Request::builder()
            .method("POST")
            .uri(format!("{scheme}://{authority}{path}"))
            .header("content-type", "application/json")
            .header("content-length", body.len())
            .body(FullBody::new(Bytes::copy_from_slice(body)))
            .map_err(|_| "invalid gateway address".to_string())?;
        let sent = Box::pin(send(request));
        let timeout = Box::pin(spin_sdk_wasip3::time::sleep(TIMEOUT));
        let response = match select(sent, timeout).await {
            Either::Left((Ok(response), _)) => response,
            Either::Left((Err(code), _)) => return Err(format!("transport error: {code:?}")),
            Either::Right(_) => return Err("response timeout".into()),
        };
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(format!("gateway answered {status}"))
        }
    }
}
