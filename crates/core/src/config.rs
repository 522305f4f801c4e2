//! Configuration from Spin variables, parsed into typed settings. Each
//! component reads only the variables it needs. Defaults live in one place,
//! `spin.toml`: a variable that is not declared for the component, or whose
//! value does not parse, is an [`ApiError::Internal`] naming the variable,
//! never a silent default.

use std::str::FromStr;

use crate::client_ip::TrustedProxies;
use crate::error::ApiError;
use crate::ratelimit::Rate;

/// Where variables come from: Spin's variables in a component, a map in
/// tests.
pub trait Variables {
    /// The value; an error says why there is none (e.g. the variable is not
    /// declared for this component).
    fn get(&self, name: &str) -> Result<String, String>;
}

impl Variables for std::collections::HashMap<&str, &str> {
    fn get(&self, name: &str) -> Result<String, String> {
        self.get(name)
            .map(|v| v.to_string())
            .ok_or_else(|| "not defined".to_string())
    }
}

/// Reads and parses `name`.
pub fn read<T: FromStr>(vars: &impl Variables, name: &str) -> Result<T, ApiError>
where
    T::Err: std::fmt::Display,
{
    let raw = vars.get(name).map_err(|e| missing(name, &e))?;
    raw.trim().parse().map_err(|e| malformed(name, &raw, &e))
}

// The error paths are kept out of the generic function, so each type read
// does not carry its own copy of the formatting code (Wasm size).
#[inline(never)]
pub(crate) fn missing(name: &str, why: &str) -> ApiError {
    ApiError::Internal(format!("variable {name}: {why}"))
}

#[inline(never)]
fn malformed(name: &str, raw: &str, why: &dyn std::fmt::Display) -> ApiError {
    ApiError::Internal(format!("variable {name}={raw:?}: {why}"))
}

/// The request limits of the API: per user (purchase endpoints only), per
/// client IP and for all clients together, each per endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    pub user: Rate,
    pub ip: Rate,
    pub global: Rate,
}

impl RateLimits {
    pub fn from_vars(vars: &impl Variables) -> Result<Self, ApiError> {
        Ok(Self {
            user: read(vars, "rate_limit_user")?,
            ip: read(vars, "rate_limit_ip")?,
            global: read(vars, "rate_limit_global")?,
        })
    }
}

/// Whose `x-forwarded-for` entries name the client: `trusted_proxy_count`
/// proxies when `trust_forwarded_for` is on, none otherwise (see
/// [`ClientIp::from_headers`](crate::client_ip::ClientIp::from_headers)).
pub fn trusted_proxies(vars: &impl Variables) -> Result<TrustedProxies, ApiError> {
    let trust: bool = read(vars, "trust_forwarded_for")?;
    let count: u32 = read(vars, "trusted_proxy_count")?;
    Ok(TrustedProxies(if trust { count } else { 0 }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn values_parse_and_missing_or_bad_ones_are_named() {
        let mut vars = HashMap::from([
            ("rate_limit_ip", "5/2"),
            ("rate_limit_user", "1/5"),
            ("rate_limit_global", "10/1"),
        ]);
        let limits = RateLimits::from_vars(&vars).unwrap();
        assert_eq!(limits.ip, Rate::new(5, 2).unwrap());
        vars.insert("rate_limit_global", "lots");
        let err = RateLimits::from_vars(&vars).unwrap_err();
        assert!(
            matches!(&err, ApiError::Internal(m) if m.contains("rate_limit_global")),
            "{err}"
        );
        // No silent default: a variable the component was not given is an
        // error naming it.
        let err = trusted_proxies(&HashMap::new()).unwrap_err();
        assert!(
            matches!(&err, ApiError::Internal(m) if m.contains("trust_forwarded_for")),
            "{err}"
        );
        let err = trusted_proxies(&HashMap::from([("trust_forwarded_for", "true")])).unwrap_err();
        assert!(
            matches!(&err, ApiError::Internal(m) if m.contains("trusted_proxy_count")),
            "{err}"
        );
    }

    #[test]
    fn forwarded_for_counts_only_when_trusted() {
        let vars = |trust, count| {
            HashMap::from([
                ("trust_forwarded_for", trust),
                ("trusted_proxy_count", count),
            ])
        };
        assert_eq!(trusted_proxies(&vars("false", "2")), Ok(TrustedProxies(0)));
        assert_eq!(trusted_proxies(&vars("true", "2")), Ok(TrustedProxies(2)));
        assert_eq!(trusted_proxies(&vars("true", "0")), Ok(TrustedProxies(0)));
        let err = trusted_proxies(&vars("true", "-1")).unwrap_err();
        assert!(
            matches!(&err, ApiError::Internal(m) if m.contains("trusted_proxy_count")),
            "{err}"
        );
    }
}
