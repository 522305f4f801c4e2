//! A user's own lists (their orders, the goods they hold codes of): adding
//! a purchase once it succeeded, and reading them in pages: how many to
//! return (`limit`) and where the previous page stopped (`cursor`, opaque to
//! clients: dot-separated numbers that only this API writes).

use crate::error::ApiError;
use crate::redis::{Arg, Redis, RedisError, Reply};
use crate::scripts::record_purchase;

/// Adds `member` with `score` to the user's list `key` (see
/// `scripts/record_purchase.lua`).
pub async fn record(
    redis: &mut impl Redis,
    key: &str,
    score: i64,
    member: &str,
) -> Result<(), RedisError> {
    record_purchase::run(
        redis,
        &record_purchase::Keys { list: key },
        &record_purchase::Args { score, member },
    )
    .await?;
    Ok(())
}

/// `?limit=`: 20 unless given, at most 100.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSize(usize);

impl PageSize {
    pub const DEFAULT: usize = 20;
    pub const MAX: usize = 100;

    pub fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        let Some(raw) = raw else {
            return Ok(Self(Self::DEFAULT));
        };
        match crate::ids::digits(raw) {
            Some(n) if (1..=Self::MAX as u64).contains(&n) => Ok(Self(n as usize)),
            _ => Err(ApiError::invalid(format!(
                "limit must be a whole number from 1 to {}",
                Self::MAX
            ))),
        }
    }

    pub fn get(self) -> usize {
        self.0
    }
}

/// The numbers of a cursor, checked for count; the caller gives them their
/// meaning.
pub fn cursor_numbers(raw: &str, counts: &[usize]) -> Result<Vec<u64>, ApiError> {
    let numbers: Option<Vec<u64>> = raw.split('.').map(crate::ids::digits).collect();
    match numbers {
        Some(numbers) if counts.contains(&numbers.len()) => Ok(numbers),
        _ => Err(ApiError::invalid("cursor is not one this API handed out")),
    }
}

/// Members of the sorted set `key` from score `max` (inclusive; `None`:
/// the highest) down, at most `count`, each followed by its score when
/// `with_scores`: one `ZRANGE ... BYSCORE REV LIMIT`.
pub async fn newest_first(
    redis: &mut impl Redis,
    key: &str,
    max: Option<u64>,
    count: usize,
    with_scores: bool,
) -> Result<Vec<Reply>, RedisError> {
    let max = max.map_or("+inf".to_string(), |m| m.to_string());
    let mut args = vec![
        Arg::from(key),
        Arg::from(max.as_str()),
        Arg::from("-inf"),
        Arg::from("BYSCORE"),
        Arg::from("REV"),
        Arg::from("LIMIT"),
        Arg::Int(0),
        Arg::Int(count as i64),
    ];
    if with_scores {
        args.push(Arg::from("WITHSCORES"));
    }
    redis.execute_replayable("ZRANGE", &args).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_default_and_stay_in_range() {
        assert_eq!(PageSize::parse(None).unwrap().get(), 20);
        assert_eq!(PageSize::parse(Some("100")).unwrap().get(), 100);
        for bad in ["0", "101", "-1", "x", "", "+5", " 5"] {
            assert!(PageSize::parse(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn cursors_are_dotted_numbers() {
        assert_eq!(cursor_numbers("5.7", &[2]).unwrap(), [5, 7]);
        assert_eq!(cursor_numbers("5", &[1, 3]).unwrap(), [5]);
        for bad in [
            "",
            "5.",
            "a.b",
            "1.2.3.4",
            "-1.2",
            "+1.2",
            "1.99999999999999999999",
        ] {
            assert!(cursor_numbers(bad, &[2, 3]).is_err(), "{bad}");
        }
    }
}
