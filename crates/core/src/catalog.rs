//! What vouchers and lottery goods share: decimal ids, and allocating an id
//! that is listed before its item is written (`catalog_index.lua`).

use crate::redis::{Redis, RedisError};
use crate::script::{ReplyReader, script};

script!(CATALOG_INDEX, "catalog_index", ["catalog_index.lua"]);

/// Parses an id: decimal digits, 1 to `u64::MAX`, no sign or spaces.
pub fn parse_id(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|id| *id > 0)
}

/// Takes the next id from `sequence` and lists it in `listing`.
pub fn allocate_listed_id(
    redis: &mut impl Redis,
    sequence: &str,
    listing: &str,
) -> Result<u64, RedisError> {
    let reply = CATALOG_INDEX.run(redis, &[sequence, listing], &[])?;
    Ok(ReplyReader::new(&CATALOG_INDEX, reply).int()? as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_plain_positive_decimals() {
        assert_eq!(parse_id("42"), Some(42));
        for bad in [
            "",
            "0",
            "-1",
            "+1",
            "1.0",
            " 1",
            "abc",
            "99999999999999999999999",
        ] {
            assert_eq!(parse_id(bad), None, "{bad}");
        }
    }
}
