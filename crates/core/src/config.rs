//! Configuration from Spin variables, parsed into typed settings. Each
//! component reads only the variables it needs; a malformed value is an
//! [`ApiError::Internal`] naming the variable, never a silent default.

use std::str::FromStr;

use crate::error::ApiError;
use crate::ratelimit::Rate;

/// Where variables come from: Spin's variables in a component, a map in
/// tests.
pub trait Variables {
    /// The value, or `None` when the variable is not defined.
    fn get(&self, name: &str) -> Option<String>;
}

impl Variables for std::collections::HashMap<&str, &str> {
    fn get(&self, name: &str) -> Option<String> {
        self.get(name).map(|v| v.to_string())
    }
}

/// Reads `name`, falling back to `default` when it is not defined.
pub fn read<T: FromStr>(vars: &impl Variables, name: &str, default: &str) -> Result<T, ApiError>
where
    T::Err: std::fmt::Display,
{
    let raw = vars.get(name).unwrap_or_else(|| default.to_string());
    raw.trim()
        .parse()
        .map_err(|e| ApiError::Internal(format!("variable {name}={raw:?}: {e}")))
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
            user: read(vars, "rate_limit_user", "1/5")?,
            ip: read(vars, "rate_limit_ip", "50/1")?,
            global: read(vars, "rate_limit_global", "10000/1")?,
        })
    }
}

/// Whether `x-forwarded-for` names the client.
pub fn trust_forwarded_for(vars: &impl Variables) -> Result<bool, ApiError> {
    read(vars, "trust_forwarded_for", "false")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn defaults_apply_and_bad_values_are_named() {
        let vars = HashMap::from([("rate_limit_ip", "5/2")]);
        let limits = RateLimits::from_vars(&vars).unwrap();
        assert_eq!(limits.ip, Rate::new(5, 2).unwrap());
        assert_eq!(limits.user, Rate::new(1, 5).unwrap());
        let vars = HashMap::from([("rate_limit_global", "lots")]);
        let err = RateLimits::from_vars(&vars).unwrap_err();
        assert!(
            matches!(&err, ApiError::Internal(m) if m.contains("rate_limit_global")),
            "{err}"
        );
        assert!(!trust_forwarded_for(&HashMap::new()).unwrap());
    }
}
