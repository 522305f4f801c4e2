//! Runs the core's request gate for a component: reads the limit and
//! session variables, connects to Redis and passes the request through
//! `flashspin_core::gate`. The connection is handed back for the action.

use flashspin_core::ApiError;
use flashspin_core::config::{RateLimits, trusted_proxies};
use flashspin_core::gate::{Access, GateRequest, Note, Passed, pass, require_token};
use flashspin_core::session::SessionSettings;

use crate::redis::SpinRedis;
use crate::request::ApiRequest;
use crate::variables::SpinVariables;

/// Authenticates `req` and applies `endpoint`'s limits in one round trip.
pub fn enter(
    req: &ApiRequest,
    endpoint: &'static str,
    access: Access,
) -> Result<(SpinRedis, Passed), ApiError> {
    enter_with(req, endpoint, access, None, false)
}

/// [`enter`], also noting the request in one of the user's sets and/or
/// allocating an order sequence number (see `flashspin_core::gate`).
pub fn enter_with(
    req: &ApiRequest,
    endpoint: &'static str,
    access: Access,
    note: Option<Note<'_>>,
    allocate_sequence: bool,
) -> Result<(SpinRedis, Passed), ApiError> {
    let token = req.token();
    require_token(access, token.as_ref())?;
    let vars = SpinVariables;
    let limits = RateLimits::from_vars(&vars)?;
    let session = SessionSettings::from_vars(&vars)?;
    let ip = req.client_ip(trusted_proxies(&vars)?);
    let mut redis = SpinRedis::connect()?;
    let passed = pass(
        &mut redis,
        &GateRequest {
            endpoint,
            access,
            token: token.as_ref(),
            ip,
            limits,
            session,
            note,
            allocate_sequence,
        },
    )?;
    Ok((redis, passed))
}
