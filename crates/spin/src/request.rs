//! Reading an incoming request into what the core needs: method, path
//! captures, the headers the gate uses, and a body of at most 16 KiB
//! (bigger bodies are refused without being read to the end).

use flashspin_core::ApiError;
use flashspin_core::body::JsonObject;
use flashspin_core::client_ip::{ClientIp, TrustedProxies};
use flashspin_core::session::SessionToken;

use crate::sdk::{SdkRequest, read_parts};

pub use crate::sdk::MAX_BODY_BYTES;

/// A request read and ready for the core.
pub struct ApiRequest {
    /// `GET`, `POST`...
    pub method: String,
    headers: Vec<(String, Vec<u8>)>,
    pub query: String,
    pub body: Vec<u8>,
}

impl ApiRequest {
    /// Reads `req`, refusing bodies over [`MAX_BODY_BYTES`].
    pub async fn read(req: SdkRequest) -> Result<Self, ApiError> {
        let raw = read_parts(req).await?;
        Ok(Self {
            method: raw.method,
            headers: raw.headers,
            query: raw.query,
            body: raw.body,
        })
    }

    /// The first line of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// Every line of the list header `name`, in order, joined with `,`
    /// (which is what several lines of a list header mean in HTTP). A line
    /// that is not UTF-8 stays in place, garbled, so it still counts as an
    /// entry.
    pub fn header_list(&self, name: &str) -> Option<String> {
        let lines: Vec<_> = self
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v))
            .collect();
        (!lines.is_empty()).then(|| lines.join(","))
    }

    /// A `:name` capture of the route, from Spin's `spin-path-match-<name>`.
    pub fn path_param(&self, name: &str) -> Option<&str> {
        self.header(&format!("spin-path-match-{name}"))
    }

    /// The id in the `:name` capture: a malformed id names nothing, so it
    /// is 404 like an unknown one.
    pub fn path_id<T>(&self, name: &str) -> Result<T, ApiError>
    where
        T: flashspin_core::ids::DecimalId,
    {
        self.path_param(name)
            .and_then(T::parse_decimal)
            .ok_or(ApiError::NotFound)
    }

    /// The route pattern Spin matched, e.g. `/api/vouchers/:id`.
    pub fn route(&self) -> &str {
        self.header("spin-component-route").unwrap_or_default()
    }

    /// What `/...` matched, e.g. `/orders` under `/api/me/...`.
    pub fn path_info(&self) -> &str {
        self.header("spin-path-info").unwrap_or_default()
    }

    /// A query parameter, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == name).then(|| percent_decode(v))
        })
    }

    pub fn token(&self) -> Option<SessionToken> {
        SessionToken::from_headers(self.header("authorization"), self.header("cookie"))
    }

    /// The client's address, from the peer or, behind `proxies`, from
    /// every `x-forwarded-for` line (see [`ClientIp::from_headers`]).
    pub fn client_ip(&self, proxies: TrustedProxies) -> Option<ClientIp> {
        ClientIp::from_headers(
            self.header("spin-client-addr"),
            self.header_list("x-forwarded-for").as_deref(),
            proxies,
        )
    }

    /// Refuses any method but `allowed` (e.g. `"POST"`).
    pub fn expect_method(&self, allowed: &'static str) -> Result<(), ApiError> {
        if self.method == allowed {
            Ok(())
        } else {
            Err(ApiError::MethodNotAllowed(allowed))
        }
    }

    /// The body as a JSON object, to be read field by field.
    pub fn json(&self) -> Result<JsonObject, ApiError> {
        JsonObject::parse(&self.body)
    }
}

fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = match bytes[i] {
            b'%' if i + 2 < bytes.len() => hex(bytes[i + 1]).zip(hex(bytes[i + 2])),
            _ => None,
        };
        match (decoded, bytes[i]) {
            (Some((hi, lo)), _) => {
                out.push(hi << 4 | lo);
                i += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                i += 1;
            }
            (None, b) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &[u8])]) -> ApiRequest {
        ApiRequest {
            method: "GET".into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_vec()))
                .collect(),
            query: String::new(),
            body: Vec::new(),
        }
    }

    #[test]
    fn list_headers_join_every_line_in_order() {
        let req = request(&[
            ("x-forwarded-for", b"6.6.6.6, 7.7.7.7"),
            ("spin-client-addr", b"10.0.0.1:5555"),
            ("X-Forwarded-For", b"\xff"),
            ("x-forwarded-for", b"2.2.2.2"),
        ]);
        assert_eq!(
            req.header_list("x-forwarded-for").as_deref(),
            Some("6.6.6.6, 7.7.7.7,\u{fffd},2.2.2.2")
        );
        assert_eq!(req.header("x-forwarded-for"), Some("6.6.6.6, 7.7.7.7"));
        assert_eq!(req.header_list("cookie"), None);
        let ip = |n| req.client_ip(TrustedProxies(n)).map(|ip| ip.0.to_string());
        assert_eq!(ip(0).as_deref(), Some("10.0.0.1"));
        assert_eq!(ip(1).as_deref(), Some("2.2.2.2"));
        assert_eq!(ip(2).as_deref(), Some("10.0.0.1"), "garbled: the peer");
        assert_eq!(ip(3).as_deref(), Some("7.7.7.7"));
    }

    #[test]
    fn decodes_query_values() {
        assert_eq!(percent_decode("a%20b+c"), "a b c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
