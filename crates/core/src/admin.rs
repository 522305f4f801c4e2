//! Admin access: `Authorization: Bearer <admin_key>`, compared in constant
//! time. An empty `admin_key` (the default) lets nobody in.

use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// Checks the `Authorization` header against the configured key.
pub fn authorize(configured_key: &str, authorization: Option<&str>) -> Result<(), ApiError> {
    let presented = authorization
        .and_then(|a| a.trim().strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        Some(presented) if !configured_key.is_empty() && same(configured_key, presented) => Ok(()),
        _ => Err(ApiError::Unauthorized),
    }
}

/// Compares digests byte by byte without an early exit, so the time taken
/// says nothing about how much of the key was right (or how long it is).
fn same(a: &str, b: &str) -> bool {
    let (x, y) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    x.iter()
        .zip(y.iter())
        .fold(0u8, |acc, (p, q)| acc | (p ^ q))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_configured_key_gets_in() {
        assert!(authorize("s3cret", Some("Bearer s3cret")).is_ok());
        for wrong in [
            None,
            Some("Bearer s3cre"),
            Some("Bearer s3cret2"),
            Some("s3cret"),
            Some("Basic s3cret"),
        ] {
            assert_eq!(
                authorize("s3cret", wrong),
                Err(ApiError::Unauthorized),
                "{wrong:?}"
            );
        }
    }

    #[test]
    fn an_empty_key_lets_nobody_in() {
        assert_eq!(authorize("", Some("Bearer ")), Err(ApiError::Unauthorized));
        assert_eq!(authorize("", Some("Bearer x")), Err(ApiError::Unauthorized));
    }
}
