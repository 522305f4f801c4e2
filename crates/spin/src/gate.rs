//! Runs the core's request gate for a component: reads the limit and
//! session variables, connects to Redis and passes the request through
//! `flashspin_core::gate`. The connection is handed back for the action.

use flashspin_core::ApiError;
use flashspin_core::config::{RateLimits, read, trusted_proxies};
use flashspin_core::gate::{Access, GateRequest, Passed, pass, require_token};
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
    enter_gate(req, endpoint, access, false)
}

/// [`enter`] for a purchase: a signed-in user, limited per user by
/// `rate_limit_user`, and a number from today's order sequence allocated.
pub fn enter_for_purchase(
    req: &ApiRequest,
    endpoint: &'static str,
) -> Result<(SpinRedis, Passed), ApiError> {
    enter_gate(req, endpoint, Access::UserLimited, true)
}

/// [`enter`] for reading a user's own records: a signed-in user, limited
/// per user by `rate_limit_user_reads`, since each such read costs Redis
/// more than a purchase refusal does.
pub fn enter_for_reading(
    req: &ApiRequest,
    endpoint: &'static str,
) -> Result<(SpinRedis, Passed), ApiError> {
    enter_gate(req, endpoint, Access::UserReads, false)
}

fn enter_gate(
    req: &ApiRequest,
    endpoint: &'static str,
    access: Access,
    allocate_sequence: bool,
) -> Result<(SpinRedis, Passed), ApiError> {
    let token = req.token();
    require_token(access, token.as_ref())?;
    let vars = SpinVariables;
    let mut limits = RateLimits::from_vars(&vars)?;
    if access == Access::UserReads {
        limits.user = read(&vars, "rate_limit_user_reads")?;
    }
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
            allocate_sequence,
        },
    )?;
    Ok((redis, passed))
}
