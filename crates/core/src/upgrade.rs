//! Changing the number of the gate's shards (`redis_shards`) under an
//! existing shop: where each of the gate's keys goes (docs/CONFIGURATION.md,
//! "Changing redis_shards"). The `flashspin-upgrade` tool finds the keys on
//! each node and applies these steps, with the app stopped.
//!
//! Users, their lists, phone indexes and order index entries move to the
//! shard the new count gives them; user ids and order ids do not change.
//! Sessions, login codes and their locks, limiters and order sequences are
//! dropped: users sign in again, and order ids after the upgrade come from
//! new sequences whose ids end in their shard. The user sequences are set so
//! that no new user id meets an old one.

use crate::ids::{DecimalId, OrderId, UserId};
use crate::keys;
use crate::phone::Phone;
use crate::redis::{Arg, Redis, RedisError, Reply};
use crate::shard::{Shard, Shards};

/// What becomes of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Renamed to this key (in another slot, perhaps on another node).
    Move(String),
    /// Deleted.
    Drop,
    /// The key of a user sequence: its number counts towards the highest
    /// user id, and it is then deleted.
    UserSequence,
    /// Already where the new count puts it, or not one of the gate's keys.
    Keep,
}

/// The step for `key` when the count goes from `from` to `to`. A key whose
/// tag is none of `from`'s shards is kept: it is not the gate's (or was
/// moved already).
pub fn plan(key: &str, from: Shards, to: Shards) -> Step {
    let Some(rest) = from.all().find_map(|s| key.strip_prefix(&s.tag())) else {
        return Step::Keep;
    };
    let Some(rest) = rest.strip_prefix(':') else {
        return Step::Keep;
    };
    let moved = |shard: Shard| {
        let target = format!("{}:{rest}", shard.tag());
        if target == key {
            Step::Keep
        } else {
            Step::Move(target)
        }
    };
    let (kind, name) = rest.split_once(':').unwrap_or((rest, ""));
    match kind {
        "uid" => match Phone::parse(name) {
            Ok(phone) => moved(to.of_phone(&phone)),
            Err(_) => Step::Keep,
        },
        "user" => {
            let id = name.split(':').next().unwrap_or("");
            match UserId::parse(id) {
                Some(id) => moved(to.of_user(id)),
                None => Step::Keep,
            }
        }
        "order" => match OrderId::parse_decimal(name) {
            Some(id) => moved(to.of_order(id)),
            None => Step::Keep,
        },
        "user-seq" => Step::UserSequence,
        "sess" | "code" | "code-gap" | "code-locked" | "rl" | "order-seq" => Step::Drop,
        _ => Step::Keep,
    }
}

/// The user id a key names or holds, for the user sequences: a user
/// record's or list's id, a phone index's value (read by the caller).
pub fn user_id_of(key: &str) -> Option<UserId> {
    let (_, rest) = key.split_once("}:user:")?;
    UserId::parse(rest.split(':').next()?)
}

/// Moves `key` to `target`: its value (`DUMP` and `RESTORE`, whatever its
/// type) and its time to live, then deletes it. Moving again after a crash
/// is harmless: a key already moved is gone from its old place.
pub async fn move_key(redis: &mut impl Redis, key: &str, target: &str) -> Result<(), RedisError> {
    let dumped = redis.execute("DUMP", &[Arg::from(key)]).await?;
    let payload = match dumped.as_slice() {
        [Reply::Bytes(payload)] => payload.clone(),
        [Reply::Nil] => return Ok(()),
        other => {
            return Err(RedisError::UnexpectedReply(format!(
                "DUMP {key}: {other:?}"
            )));
        }
    };
    let ttl = match redis.execute("PTTL", &[Arg::from(key)]).await?.as_slice() {
        [Reply::Int(ms)] if *ms > 0 => *ms,
        _ => 0,
    };
    redis
        .execute(
            "RESTORE",
            &[
                Arg::from(target),
                Arg::Int(ttl),
                Arg::Bytes(&payload),
                Arg::from("REPLACE"),
            ],
        )
        .await?;
    redis.execute("DEL", &[Arg::from(key)]).await?;
    Ok(())
}

/// Sets every new shard's user sequence so that its next user id (the
/// shard's next number × the count + its index) is above `highest`, the
/// highest user id there is. A sequence already further on is left.
pub async fn set_user_sequences(
    redis: &mut impl Redis,
    to: Shards,
    highest: u64,
) -> Result<(), RedisError> {
    let floor = (highest / u64::from(to.count())) as i64;
    for shard in to.all() {
        let key = keys::user_sequence(shard);
        let current = read_number(redis, &key).await?.unwrap_or(0) as i64;
        if current < floor {
            redis
                .execute("SET", &[Arg::from(key.as_str()), Arg::Int(floor)])
                .await?;
        }
    }
    Ok(())
}

/// What an upgrade did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub moved: u64,
    pub dropped: u64,
    pub kept: u64,
    /// The highest user id found, below every new user's.
    pub highest_user: u64,
}

/// The pattern that finds the gate's keys with `SCAN ... MATCH`, whatever
/// the count: `{gate}` and `{gate-<k>-<n>}`.
pub const GATE_KEYS: &str = "{gate*";

/// Applies [`plan`] to each of `found` (the gate's keys, as `SCAN` with
/// [`GATE_KEYS`] finds them on every primary), then sets the new user
/// sequences. Safe to run again after a crash, or with keys found twice.
pub async fn reshard_gate(
    redis: &mut impl Redis,
    found: impl IntoIterator<Item = String>,
    from: Shards,
    to: Shards,
) -> Result<Report, RedisError> {
    let mut report = Report::default();
    for key in found {
        if let Some(id) = user_id_of(&key) {
            report.highest_user = report.highest_user.max(id.get());
        }
        match plan(&key, from, to) {
            Step::Move(target) => {
                if key.contains("}:uid:")
                    && let Some(id) = read_number(redis, &key).await?
                {
                    report.highest_user = report.highest_user.max(id);
                }
                move_key(redis, &key, &target).await?;
                report.moved += 1;
            }
            Step::Drop => {
                redis.execute("DEL", &[Arg::from(key.as_str())]).await?;
                report.dropped += 1;
            }
            Step::UserSequence => {
                // Shard s of K handed out ids n × K + s up to its number n.
                let shard = from.all().find(|s| key.starts_with(&s.tag()));
                if let (Some(n), Some(shard)) = (read_number(redis, &key).await?, shard) {
                    let highest = n * u64::from(from.count()) + u64::from(shard.index());
                    report.highest_user = report.highest_user.max(highest);
                }
                redis.execute("DEL", &[Arg::from(key.as_str())]).await?;
                report.dropped += 1;
            }
            Step::Keep => report.kept += 1,
        }
    }
    set_user_sequences(redis, to, report.highest_user).await?;
    Ok(report)
}

async fn read_number(redis: &mut impl Redis, key: &str) -> Result<Option<u64>, RedisError> {
    Ok(
        match redis.execute("GET", &[Arg::from(key)]).await?.as_slice() {
            [Reply::Bytes(b)] => std::str::from_utf8(b).ok().and_then(|s| s.parse().ok()),
            _ => None,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sixteen() -> Shards {
        Shards::new(16).unwrap()
    }

    #[test]
    fn users_phones_and_orders_move_to_their_new_shards() {
        let (one, to) = (Shards::ONE, sixteen());
        let user = UserId::new(37).unwrap();
        let home = to.of_user(user).tag();
        assert_eq!(
            plan("{gate}:user:37", one, to),
            Step::Move(format!("{home}:user:37"))
        );
        assert_eq!(
            plan("{gate}:user:37:voucher-orders", one, to),
            Step::Move(format!("{home}:user:37:voucher-orders"))
        );
        let phone = Phone::parse("13800000001").unwrap();
        assert_eq!(
            plan("{gate}:uid:13800000001", one, to),
            Step::Move(format!("{}:uid:13800000001", to.of_phone(&phone).tag()))
        );
        let order = OrderId::from_raw(123_456_789_011);
        assert_eq!(
            plan("{gate}:order:123456789011", one, to),
            Step::Move(format!("{}:order:123456789011", to.of_order(order).tag()))
        );
    }

    #[test]
    fn what_lives_briefly_is_dropped_and_the_rest_kept() {
        let (one, to) = (Shards::ONE, sixteen());
        for dropped in [
            "{gate}:sess:abc",
            "{gate}:code:13800000001",
            "{gate}:code-gap:13800000001",
            "{gate}:code-locked:13800000001",
            "{gate}:rl:login:all",
            "{gate}:order-seq:340",
        ] {
            assert_eq!(plan(dropped, one, to), Step::Drop, "{dropped}");
        }
        assert_eq!(plan("{gate}:user-seq", one, to), Step::UserSequence);
        for kept in ["{v:1}:info", "{catalog}:goods", "{gate}:user:x", "other"] {
            assert_eq!(plan(kept, one, to), Step::Keep, "{kept}");
        }
        // A key of the new layout is not touched again.
        let user = UserId::new(37).unwrap();
        let moved = format!("{}:user:37", to.of_user(user).tag());
        assert_eq!(plan(&moved, one, to), Step::Keep);
        assert_eq!(plan(&moved, to, to), Step::Keep);
    }

    #[test]
    fn user_ids_are_read_from_records_and_lists() {
        assert_eq!(user_id_of("{gate}:user:37").map(UserId::get), Some(37));
        assert_eq!(
            user_id_of("{gate-3-9}:user:37:lottery-goods").map(UserId::get),
            Some(37)
        );
        assert_eq!(user_id_of("{gate}:uid:13800000001"), None);
    }
}
