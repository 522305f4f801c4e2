//! One exchange with the app: a [`Call`] is a request on its way whose
//! successful answer has type `T`; awaiting it gives the [`Answer`], the
//! response read whole, whose body can then be read as `T` or as the API's
//! [`ApiError`]. [`Failure`] says why a call did not give what a caller
//! needed, for callers (like the benchmark) that must not panic.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;

use reqwest::RequestBuilder;
use reqwest::header::HeaderMap;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::types::ApiError;

/// A request ready to be sent, answered with a `T` when it succeeds.
/// Await it (or call [`Call::send`]) to get the [`Answer`]; a request that
/// cannot be sent at all panics then, as a test wants. The builder methods
/// add to the request, to send what the typed route would not (a header,
/// another body).
#[must_use = "a call does nothing until it is awaited"]
pub struct Call<T> {
    request: RequestBuilder,
    answer: PhantomData<fn() -> T>,
}

impl<T> Call<T> {
    pub(crate) fn new(request: RequestBuilder) -> Self {
        Call {
            request,
            answer: PhantomData,
        }
    }

    /// Adds a header line (a second line if the name is already there).
    pub fn header(self, name: &str, value: &str) -> Self {
        Call::new(self.request.header(name, value))
    }

    /// `authorization: Bearer <token>`.
    pub fn bearer(self, token: &str) -> Self {
        Call::new(self.request.bearer_auth(token))
    }

    /// Sets the body to these bytes, as they are.
    pub fn body(self, body: impl Into<reqwest::Body>) -> Self {
        Call::new(self.request.body(body))
    }

    /// Sets the body to `body` as JSON.
    pub fn json(self, body: &impl Serialize) -> Self {
        Call::new(self.request.json(body))
    }

    /// The request itself, for a caller that sends it its own way (the
    /// benchmark's load driver).
    pub fn into_builder(self) -> RequestBuilder {
        self.request
    }

    /// Sends the request and reads the whole response.
    pub async fn try_send(self) -> Result<Answer<T>, Failure> {
        let response = self.request.send().await.map_err(Failure::Request)?;
        Answer::read(response).await
    }

    /// Sends the request and reads the whole response; panics when there
    /// is no response.
    pub async fn send(self) -> Answer<T> {
        match self.try_send().await {
            Ok(answer) => answer,
            Err(e) => panic!("{e}"),
        }
    }
}

impl<T: 'static> IntoFuture for Call<T> {
    type Output = Answer<T>;
    type IntoFuture = Pin<Box<dyn Future<Output = Answer<T>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}

/// A response, read whole: status, headers and body bytes, with ways to
/// read the body as the route's `T` or as the API's error body.
#[derive(Debug, Clone)]
pub struct Answer<T> {
    pub status: u16,
    pub headers: HeaderMap,
    pub bytes: Vec<u8>,
    answer: PhantomData<fn() -> T>,
}

impl<T> Answer<T> {
    /// Reads `response` whole.
    pub async fn read(response: reqwest::Response) -> Result<Self, Failure> {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.map_err(Failure::Request)?.to_vec();
        Ok(Answer {
            status,
            headers,
            bytes,
            answer: PhantomData,
        })
    }

    /// The same answer, its body untyped: to put answers of several routes
    /// in one list.
    pub fn untyped(self) -> Answer<serde_json::Value> {
        Answer {
            status: self.status,
            headers: self.headers,
            bytes: self.bytes,
            answer: PhantomData,
        }
    }

    /// The value of header `name`, if it is there and is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as text (for messages, and for checking what it contains).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// The body as the API's error body, if it is one.
    pub fn try_error(&self) -> Option<ApiError> {
        parse(&self.bytes).ok()
    }

    /// The body as the API's error body; panics if it is not one.
    pub fn error(&self) -> ApiError {
        self.try_error().unwrap_or_else(|| {
            panic!(
                "expected an error body, got {}: {}",
                self.status,
                self.text()
            )
        })
    }

    /// The error body's code, or "" when the body is not an error body.
    pub fn error_code(&self) -> String {
        self.try_error().map(|e| e.code).unwrap_or_default()
    }

    fn failure(&self, expected: String) -> Failure {
        Failure::Answer {
            status: self.status,
            expected,
            body: self.text(),
        }
    }
}

impl<T: DeserializeOwned> Answer<T> {
    /// The body as a `T`, if the status is 2xx and the body is one.
    pub fn try_ok(&self) -> Result<T, Failure> {
        if !(200..300).contains(&self.status) {
            return Err(self.failure("a 2xx status".into()));
        }
        self.try_body()
    }

    /// The body as a `T`, if the status is exactly `status` and the body
    /// is one.
    pub fn try_expect(&self, status: u16) -> Result<T, Failure> {
        if self.status != status {
            return Err(self.failure(format!("status {status}")));
        }
        self.try_body()
    }

    /// The body as a `T`, whatever the status.
    pub fn try_body(&self) -> Result<T, Failure> {
        parse(&self.bytes).map_err(|e| self.failure(format!("the body of the route ({e})")))
    }

    /// The body as a `T`; panics unless the status is 2xx and the body is
    /// one.
    pub fn ok(&self) -> T {
        self.try_ok().unwrap_or_else(|e| panic!("{e}"))
    }

    /// The body as a `T`; panics unless the status is exactly `status` and
    /// the body is one.
    pub fn expect(&self, status: u16) -> T {
        self.try_expect(status).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The body as a `T`, whatever the status (a degraded health check
    /// answers 503 with its usual body); panics if it is not one.
    pub fn body(&self) -> T {
        self.try_body().unwrap_or_else(|e| panic!("{e}"))
    }
}

/// Reads a JSON body; an empty body reads as `null`, so that a route that
/// answers with no body (204) is an `Answer<()>`.
fn parse<U: DeserializeOwned>(bytes: &[u8]) -> serde_json::Result<U> {
    let bytes = if bytes.is_empty() { b"null" } else { bytes };
    serde_json::from_slice(bytes)
}

/// Why a call did not give what its caller needed.
#[derive(Debug)]
pub enum Failure {
    /// The request could not be sent or its response not read.
    Request(reqwest::Error),
    /// The app answered, but not as expected.
    Answer {
        status: u16,
        expected: String,
        body: String,
    },
    /// The SMS sink received no code for this phone.
    NoCode(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Request(e) => write!(f, "the request failed: {e}"),
            Failure::Answer {
                status,
                expected,
                body,
            } => write!(f, "expected {expected}, got {status}: {body}"),
            Failure::NoCode(phone) => write!(f, "the SMS sink got no code for {phone}"),
        }
    }
}

impl std::error::Error for Failure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Failure::Request(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer<T>(status: u16, body: &str) -> Answer<T> {
        Answer {
            status,
            headers: HeaderMap::new(),
            bytes: body.as_bytes().to_vec(),
            answer: PhantomData,
        }
    }

    #[test]
    fn bodies_read_by_status() {
        let created = answer::<serde_json::Value>(201, r#"{"a":1}"#);
        assert_eq!(created.ok()["a"], 1);
        assert_eq!(created.expect(201)["a"], 1);
        assert!(created.try_expect(200).is_err());
        assert_eq!(created.error_code(), "");
        let refused = answer::<serde_json::Value>(
            409,
            r#"{"error":{"code":"sold_out","message":"sold out"}}"#,
        );
        assert!(refused.try_ok().is_err());
        assert_eq!(refused.error_code(), "sold_out");
        assert_eq!(refused.error().message, "sold out");
        answer::<()>(204, "").expect(204);
    }
}
