//! What vouchers and lottery goods share: allocating an id that is listed
//! before its item is written (`catalog_index.lua`).

use crate::redis::{Redis, RedisError};
use crate::scripts::catalog_index;

/// Takes the next id from `sequence` and lists it in `listing`.
pub async fn allocate_listed_id(
    redis: &mut impl Redis,
    sequence: &str,
    listing: &str,
) -> Result<u64, RedisError> {
    let keys = catalog_index::Keys { sequence, listing };
    Ok(catalog_index::run(redis, &keys, &catalog_index::Args::NONE)
        .await?
        .id)
}
