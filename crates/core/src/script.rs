//! Running Lua scripts: `EVALSHA` first, `EVAL` when Redis does not know the
//! script yet (after a restart or on first use), so a script costs one round
//! trip and its source crosses the network only once per Redis. Also a
//! cursor for reading the flat replies scripts return.

use crate::redis::{Arg, Redis, RedisError, Reply};

/// A Lua script and its SHA-1, the name Redis caches it under (computed
/// when the crate is compiled).
pub struct Script {
    pub name: &'static str,
    source: &'static str,
    sha1: [u8; 40],
}

impl Script {
    pub const fn new(name: &'static str, source: &'static str) -> Self {
        Self {
            name,
            source,
            sha1: crate::sha1::hex_digest(source.as_bytes()),
        }
    }

    pub fn source(&self) -> &'static str {
        self.source
    }

    /// The hex SHA-1 `EVALSHA` names the script by.
    pub fn sha1(&self) -> &[u8] {
        &self.sha1
    }

    /// Runs the script with `keys` and `args`.
    pub fn run(
        &self,
        redis: &mut impl Redis,
        keys: &[&str],
        args: &[Arg<'_>],
    ) -> Result<Vec<Reply>, RedisError> {
        let mut full: Vec<Arg<'_>> = Vec::with_capacity(2 + keys.len() + args.len());
        full.push(Arg::Bytes(&self.sha1));
        full.push(Arg::Int(keys.len() as i64));
        full.extend(keys.iter().map(|k| Arg::from(*k)));
        full.extend_from_slice(args);
        match redis.execute("EVALSHA", &full) {
            Err(RedisError::Server(message)) if is_noscript(&message) => {
                full[0] = Arg::from(self.source);
                redis.execute("EVAL", &full)
            }
            other => other,
        }
        .map_err(|e| match e {
            RedisError::Server(m) => RedisError::Server(format!("script {}: {m}", self.name)),
            e => e,
        })
    }
}

/// Redis answers `NOSCRIPT ...`; Spin's client words it `NoScriptError`.
fn is_noscript(message: &str) -> bool {
    message.contains("NOSCRIPT") || message.contains("NoScriptError")
}

/// Declares a script made of files in `scripts/`, joined in order (shared
/// Lua such as `gcra.lua` comes first). What is embedded is the copy
/// `build.rs` makes, without comments or indentation.
macro_rules! script {
    ($name:ident, $label:literal, [$($file:literal),+]) => {
        pub static $name: $crate::script::Script = $crate::script::Script::new(
            $label,
            concat!($(include_str!(concat!(env!("OUT_DIR"), "/scripts/", $file)), "\n"),+),
        );
    };
}
pub(crate) use script;

/// Reads a script's flat reply front to back.
pub struct ReplyReader {
    script: &'static str,
    items: std::vec::IntoIter<Reply>,
}

impl ReplyReader {
    pub fn new(script: &Script, replies: Vec<Reply>) -> Self {
        Self {
            script: script.name,
            items: replies.into_iter(),
        }
    }

    fn unexpected(&self, wanted: &str, got: Option<Reply>) -> RedisError {
        RedisError::UnexpectedReply(format!(
            "script {}: wanted {wanted}, got {got:?}",
            self.script
        ))
    }

    pub fn int(&mut self) -> Result<i64, RedisError> {
        match self.items.next() {
            Some(Reply::Int(i)) => Ok(i),
            other => Err(self.unexpected("an integer", other)),
        }
    }

    pub fn bytes(&mut self) -> Result<Vec<u8>, RedisError> {
        match self.items.next() {
            Some(Reply::Bytes(b)) => Ok(b),
            other => Err(self.unexpected("a string", other)),
        }
    }

    pub fn string(&mut self) -> Result<String, RedisError> {
        let bytes = self.bytes()?;
        String::from_utf8(bytes)
            .map_err(|e| self.unexpected("UTF-8", Some(Reply::Bytes(e.into_bytes()))))
    }

    pub fn is_empty(&self) -> bool {
        self.items.len() == 0
    }
}
