//! Outgoing HTTP from components (`wasi:http/outgoing-handler`), checked
//! against the component's `allowed_outbound_hosts` before anything is sent.

use std::sync::Arc;

use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use crate::outbound::OutboundPolicy;

pub struct OutboundHttp {
    component: String,
    policy: Arc<OutboundPolicy>,
}

impl OutboundHttp {
    pub fn new(component: String, policy: Arc<OutboundPolicy>) -> Self {
        Self { component, policy }
    }

    /// As Spin checks `wasi:http` requests: the URI as a URL, `https` when
    /// it names no scheme. A relative URI (a request to the app itself) is
    /// never allowed here, as this host does not route those.
    fn allows(&self, uri: &http::Uri) -> bool {
        uri.authority().is_some() && self.policy.allows(&uri.to_string(), "https")
    }
}

type ResponseFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), Error>> + Send>,
                ),
                Error,
            >,
        > + Send,
>;

impl WasiHttpHooks for OutboundHttp {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> ResponseFuture {
        if !self.allows(request.uri()) {
            crate::log::denied(&self.component, "http", &request.uri().to_string());
            return Box::new(async { Err(Error::HttpRequestDenied) });
        }
        Box::new(async move {
            use http_body_util::BodyExt;
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = Result<(), Error>> + Send>,
            ))
        })
    }
}
