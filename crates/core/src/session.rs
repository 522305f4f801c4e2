//! Session tokens: 256 random bits, given to the client as 64 hex digits and
//! stored in Redis only as the SHA-256 of the token, so a copy of the
//! database does not let anyone sign in. The first byte's low bits name the
//! user's shard (`shard.rs`), which leaves at least 250 random bits.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::keys;
use crate::shard::{Shard, Shards};

/// A well-formed session token (whether it is valid is Redis's business).
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken(String);

const TOKEN_HEX_LEN: usize = 64;

impl SessionToken {
    /// A fresh token from the operating system's CSPRNG, naming `shard`.
    pub fn generate_in(shard: Shard, shards: Shards) -> Self {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).expect("the CSPRNG is available");
        // Counts are powers of two up to 64: the low bits hold the index.
        bytes[0] = (bytes[0] & !(shards.count() - 1)) | shard.index();
        Self(hex(&bytes))
    }

    /// The shard this token's session lives in.
    pub fn shard(&self, shards: Shards) -> Shard {
        let first = u8::from_str_radix(&self.0[..2], 16).expect("parsed as hex");
        shards.of_token_byte(first)
    }

    /// Accepts exactly 64 lower-case hex digits.
    pub fn parse(s: &str) -> Option<Self> {
        let valid = s.len() == TOKEN_HEX_LEN
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        valid.then(|| Self(s.to_string()))
    }

    /// From `Authorization: Bearer <token>` or, failing that, the `token`
    /// cookie. A malformed token counts as none.
    pub fn from_headers(authorization: Option<&str>, cookie: Option<&str>) -> Option<Self> {
        if let Some(token) = authorization
            .and_then(|a| a.trim().strip_prefix("Bearer "))
            .and_then(|t| Self::parse(t.trim()))
        {
            return Some(token);
        }
        cookie?
            .split(';')
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == "token")
            .and_then(|(_, value)| Self::parse(value.trim()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The Redis key of this token's session: `<shard>:sess:<sha256 hex>`.
    pub fn redis_key(&self, shards: Shards) -> String {
        keys::session(self.shard(shards), &hex(&Sha256::digest(self.0.as_bytes())))
    }
}

// Tokens are secrets: never print them.
impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken(..)")
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

/// Session lifetimes: sliding idle timeout and absolute cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionSettings {
    pub idle_secs: u32,
    pub max_secs: u32,
}

impl SessionSettings {
    pub fn from_vars(vars: &impl crate::config::Variables) -> Result<Self, crate::ApiError> {
        let settings = Self {
            idle_secs: crate::config::read(vars, "session_idle_secs")?,
            max_secs: crate::config::read(vars, "session_max_secs")?,
        };
        if settings.idle_secs == 0 || settings.max_secs == 0 {
            return Err(crate::ApiError::Internal(
                "session_idle_secs and session_max_secs must be at least 1".into(),
            ));
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_unique_and_parse() {
        let a = SessionToken::generate_in(Shards::ONE.first(), Shards::ONE);
        let b = SessionToken::generate_in(Shards::ONE.first(), Shards::ONE);
        assert_ne!(a, b);
        assert_eq!(SessionToken::parse(a.as_str()), Some(a.clone()));
        assert_eq!(a.as_str().len(), 64);
        assert!(!format!("{a:?}").contains(a.as_str()));
    }

    #[test]
    fn only_well_formed_tokens_parse() {
        assert!(SessionToken::parse(&"a".repeat(64)).is_some());
        for bad in ["", "abc", &"A".repeat(64), &"g".repeat(64), &"a".repeat(65)] {
            assert!(SessionToken::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn tokens_come_from_bearer_or_cookie() {
        let t = "0".repeat(64);
        let bearer = format!("Bearer {t}");
        let cookie = format!("theme=dark; token={t}; other=1");
        assert!(SessionToken::from_headers(Some(&bearer), None).is_some());
        assert!(SessionToken::from_headers(None, Some(&cookie)).is_some());
        assert!(SessionToken::from_headers(Some("Basic x"), Some(&cookie)).is_some());
        assert!(SessionToken::from_headers(Some("Bearer nope"), None).is_none());
        assert!(SessionToken::from_headers(None, Some("token=short")).is_none());
    }

    #[test]
    fn the_redis_key_hides_the_token() {
        let t = SessionToken::generate_in(Shards::ONE.first(), Shards::ONE);
        let key = t.redis_key(Shards::ONE);
        assert!(key.starts_with("{gate}:sess:"));
        assert!(!key.contains(t.as_str()));
    }

    #[test]
    fn a_token_names_the_shard_it_was_made_for() {
        for count in [4, 16, 64] {
            let shards = Shards::new(count).unwrap();
            for shard in shards.all() {
                for _ in 0..4 {
                    let t = SessionToken::generate_in(shard, shards);
                    assert_eq!(t.shard(shards), shard);
                    assert!(t.redis_key(shards).starts_with(&shard.tag()));
                }
            }
        }
        // Any well-formed token names some shard: a forged one is looked
        // for there and not found.
        let forged = SessionToken::parse(&"f".repeat(64)).unwrap();
        assert_eq!(forged.shard(Shards::new(16).unwrap()).index(), 15);
    }
}
