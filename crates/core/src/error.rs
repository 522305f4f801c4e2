//! [`ApiError`]: every way a request can fail, each with exactly one HTTP
//! status and one error code of the API contract.

use std::fmt;

use crate::ratelimit::Verdict;
use crate::redis::RedisError;

/// The 409 answers other than `already_purchased`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conflict {
    SaleNotStarted,
    SaleEnded,
    SoldOut,
    /// The order's status does not allow the change asked for.
    InvalidState,
    /// A payment whose amount is not the order's.
    AmountMismatch,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// Malformed JSON, a wrong type, a missing field, a number out of range.
    /// The message names the field.
    InvalidRequest(String),
    InvalidPhone,
    /// No valid session (or admin key) for a route that needs one.
    Unauthorized,
    /// A payment webhook whose signature is missing, wrong or stale.
    InvalidSignature,
    /// A login code that is wrong, expired or was never sent.
    InvalidCode,
    NotFound,
    /// The request is well formed but the resource's state refuses it.
    Conflict(Conflict),
    /// The buyer already holds an order for this voucher (the order, as
    /// the API shows it).
    AlreadyPurchased(serde_json::Value),
    /// The route exists but not for this method; lists the allowed ones.
    MethodNotAllowed(&'static str),
    PayloadTooLarge,
    RateLimited(Verdict),
    /// The SMS gateway refused the code or did not answer in time.
    SmsFailed,
    /// Redis could not be used; nothing was changed.
    Unavailable(RedisError),
    /// The shop's PostgreSQL could not be reached; what was to be written
    /// there waits in Redis.
    DatabaseUnavailable(String),
    /// The app is misconfigured (e.g. a malformed limit variable).
    Internal(String),
}

impl ApiError {
    /// A bad request; `message` names the field and what is wrong with it.
    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::InvalidRequest(message.into())
    }

    pub fn status(&self) -> u16 {
        match self {
            ApiError::InvalidRequest(_) | ApiError::InvalidPhone => 400,
            ApiError::Unauthorized | ApiError::InvalidSignature | ApiError::InvalidCode => 401,
            ApiError::NotFound => 404,
            ApiError::Conflict(_) | ApiError::AlreadyPurchased(_) => 409,
            ApiError::MethodNotAllowed(_) => 405,
            ApiError::PayloadTooLarge => 413,
            ApiError::RateLimited(_) => 429,
            ApiError::Internal(_) => 500,
            ApiError::SmsFailed => 502,
            ApiError::Unavailable(_) | ApiError::DatabaseUnavailable(_) => 503,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidRequest(_) => "invalid_request",
            ApiError::InvalidPhone => "invalid_phone",
            ApiError::Unauthorized => "unauthorized",
            ApiError::InvalidSignature => "invalid_signature",
            ApiError::InvalidCode => "invalid_code",
            ApiError::NotFound => "not_found",
            ApiError::Conflict(Conflict::SaleNotStarted) => "sale_not_started",
            ApiError::Conflict(Conflict::SaleEnded) => "sale_ended",
            ApiError::Conflict(Conflict::SoldOut) => "sold_out",
            ApiError::Conflict(Conflict::InvalidState) => "invalid_state",
            ApiError::Conflict(Conflict::AmountMismatch) => "amount_mismatch",
            ApiError::AlreadyPurchased(_) => "already_purchased",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::RateLimited(_) => "rate_limited",
            ApiError::SmsFailed => "sms_failed",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::DatabaseUnavailable(_) => "database_unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    /// Text for the client. Internal details (Redis errors, configuration)
    /// stay in the logs.
    pub fn message(&self) -> String {
        match self {
            ApiError::InvalidRequest(m) => m.clone(),
            ApiError::InvalidPhone => {
                "phone must be a mainland China mobile number: 11 digits starting 13-19".into()
            }
            ApiError::Unauthorized => "log in first".into(),
            ApiError::InvalidSignature => "the signature is missing, wrong or too old".into(),
            ApiError::InvalidCode => "the code is wrong or has expired".into(),
            ApiError::NotFound => "no such resource".into(),
            ApiError::Conflict(Conflict::SaleNotStarted) => "the sale has not started yet".into(),
            ApiError::Conflict(Conflict::SaleEnded) => "the sale has ended".into(),
            ApiError::Conflict(Conflict::SoldOut) => "sold out".into(),
            ApiError::Conflict(Conflict::InvalidState) => {
                "the order's status does not allow this".into()
            }
            ApiError::Conflict(Conflict::AmountMismatch) => {
                "the amount is not the order's amount".into()
            }
            ApiError::AlreadyPurchased(_) => "you already bought this voucher".into(),
            ApiError::MethodNotAllowed(allow) => format!("use {allow}"),
            ApiError::PayloadTooLarge => "the request body is larger than 16 KiB".into(),
            ApiError::RateLimited(v) => {
                format!("too many requests; retry in {} s", v.retry_after_secs())
            }
            ApiError::SmsFailed => "the SMS could not be sent; try again".into(),
            ApiError::Unavailable(_) => "the service is busy; try again shortly".into(),
            ApiError::DatabaseUnavailable(_) => {
                "PostgreSQL cannot be reached; the orders wait in Redis".into()
            }
            ApiError::Internal(_) => "internal error".into(),
        }
    }
}

/// An outage is 503 `unavailable` with `retry-after`; anything else Redis
/// says (a Lua error, a wrong-type command, a reply of the wrong shape) is a
/// bug of ours, 500 `internal`, logged with the script's name.
impl From<RedisError> for ApiError {
    fn from(e: RedisError) -> Self {
        if e.is_outage() {
            ApiError::Unavailable(e)
        } else {
            ApiError::Internal(e.to_string())
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::Unavailable(e) => write!(f, "unavailable: {e}"),
            ApiError::DatabaseUnavailable(e) => write!(f, "PostgreSQL unavailable: {e}"),
            ApiError::Internal(m) => write!(f, "internal: {m}"),
            other => write!(f, "{}: {}", other.code(), other.message()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_a_client_status_or_a_server_one_for_server_faults() {
        let client_errors = [
            ApiError::InvalidRequest("x".into()),
            ApiError::InvalidPhone,
            ApiError::Unauthorized,
            ApiError::InvalidCode,
            ApiError::NotFound,
            ApiError::Conflict(Conflict::SoldOut),
            ApiError::AlreadyPurchased(serde_json::Value::Null),
            ApiError::MethodNotAllowed("GET"),
            ApiError::PayloadTooLarge,
            ApiError::RateLimited(Verdict::unlimited()),
        ];
        for e in client_errors {
            assert!((400..500).contains(&e.status()), "{e}");
        }
        let unavailable = ApiError::from(RedisError::Unreachable("refused".into()));
        assert_eq!(
            (unavailable.status(), unavailable.code()),
            (503, "unavailable")
        );
        assert!(!unavailable.message().contains("refused"));
    }
}
