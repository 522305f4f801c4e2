//! Running Lua scripts: `EVALSHA` first, `EVAL` when Redis does not know the
//! script yet (after a restart or on first use), so a script costs one round
//! trip and its source crosses the network only once per Redis. Also the
//! reader the scripts' reply decoders are made of.
//!
//! Each script's typed contract (keys, arguments, outcome, reply) is
//! generated from its declaration by `build.rs` into [`crate::scripts`].

use crate::redis::{Arg, Redis, RedisError, Reply};

/// A Lua script and its SHA-1, the name Redis caches it under (computed
/// when the crate is compiled).
pub struct Script {
    pub name: &'static str,
    source: &'static str,
    sha1: [u8; 40],
    replayable: bool,
}

impl Script {
    pub const fn new(name: &'static str, source: &'static str) -> Self {
        Self {
            name,
            source,
            sha1: crate::sha1::hex_digest(source.as_bytes()),
            replayable: false,
        }
    }

    /// Marks a script whose second run, right after a first with the same
    /// keys and arguments, leaves nothing a shopper or an operator would
    /// call wrong (`--@ replayable` in its header, with the reason): it is
    /// run with [`Redis::execute_replayable`].
    pub const fn replayable(mut self) -> Self {
        self.replayable = true;
        self
    }

    /// Whether the script may run twice for one call (see
    /// [`Script::replayable`]).
    pub fn is_replayable(&self) -> bool {
        self.replayable
    }

    pub fn source(&self) -> &'static str {
        self.source
    }

    /// The hex SHA-1 `EVALSHA` names the script by.
    pub fn sha1(&self) -> &[u8] {
        &self.sha1
    }

    /// Runs the script with `keys` and `args`.
    pub async fn run(
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
        match self.execute(redis, "EVALSHA", &full).await {
            Err(RedisError::Server(message)) if is_noscript(&message) => {
                full[0] = Arg::from(self.source);
                self.execute(redis, "EVAL", &full).await
            }
            other => other,
        }
        .map_err(|e| match e {
            RedisError::Server(m) => RedisError::Server(format!("script {}: {m}", self.name)),
            e => e,
        })
    }

    /// `command` as the script may be sent: again on a fresh connection
    /// when it is replayable.
    async fn execute(
        &self,
        redis: &mut impl Redis,
        command: &str,
        args: &[Arg<'_>],
    ) -> Result<Vec<Reply>, RedisError> {
        if self.replayable {
            redis.execute_replayable(command, args).await
        } else {
            redis.execute(command, args).await
        }
    }
}

/// Redis answers `NOSCRIPT ...`; Spin's client words it `NoScriptError`.
fn is_noscript(message: &str) -> bool {
    message.contains("NOSCRIPT") || message.contains("NoScriptError")
}

/// Reads a script's flat reply front to back. The decoders generated from
/// the scripts' declarations use it, and so does code that reads a reply's
/// declared `rest`, which must end with [`ReplyReader::finish`].
pub struct ReplyReader {
    script: &'static str,
    items: std::vec::IntoIter<Reply>,
}

impl ReplyReader {
    pub fn new(script: &Script, replies: Vec<Reply>) -> Self {
        Self::named(script.name, replies)
    }

    /// A reader of a reply that is not a script's; `what` names it in errors.
    pub fn named(what: &'static str, replies: Vec<Reply>) -> Self {
        Self {
            script: what,
            items: replies.into_iter(),
        }
    }

    fn unexpected(&self, wanted: &str, got: Option<Reply>) -> RedisError {
        RedisError::UnexpectedReply(format!(
            "script {}: wanted {wanted}, got {got:?}",
            self.script
        ))
    }

    /// An outcome the script's declaration does not have.
    pub fn unexpected_outcome(&self, outcome: i64) -> RedisError {
        RedisError::UnexpectedReply(format!("script {}: outcome {outcome}", self.script))
    }

    pub fn int(&mut self) -> Result<i64, RedisError> {
        match self.items.next() {
            Some(Reply::Int(i)) => Ok(i),
            other => Err(self.unexpected("an integer", other)),
        }
    }

    /// 1 or 0.
    pub fn flag(&mut self) -> Result<bool, RedisError> {
        match self.items.next() {
            Some(Reply::Int(1)) => Ok(true),
            Some(Reply::Int(0)) => Ok(false),
            other => Err(self.unexpected("1 or 0", other)),
        }
    }

    /// A non-negative integer, sent as a number or as decimal text (an id
    /// a script passes on as it got it); 0 when there is none (0 or '').
    pub fn id(&mut self) -> Result<u64, RedisError> {
        match self.items.next() {
            Some(Reply::Int(i)) if i >= 0 => Ok(i as u64),
            Some(Reply::Bytes(b)) if b.is_empty() => Ok(0),
            Some(Reply::Bytes(b)) if !b.is_empty() && b.iter().all(u8::is_ascii_digit) => {
                match std::str::from_utf8(&b).ok().and_then(|s| s.parse().ok()) {
                    Some(id) => Ok(id),
                    None => Err(self.unexpected("an id", Some(Reply::Bytes(b)))),
                }
            }
            other => Err(self.unexpected("an id", other)),
        }
    }

    /// An integer, sent as a number or as decimal text (a hash field a
    /// script passes on as Redis stored it); 0 for ''.
    pub fn num(&mut self) -> Result<i64, RedisError> {
        match self.items.next() {
            Some(Reply::Int(i)) => Ok(i),
            Some(Reply::Bytes(b)) if b.is_empty() => Ok(0),
            Some(Reply::Bytes(b)) => {
                match std::str::from_utf8(&b).ok().and_then(|s| s.parse().ok()) {
                    Some(n) => Ok(n),
                    None => Err(self.unexpected("a number", Some(Reply::Bytes(b)))),
                }
            }
            other => Err(self.unexpected("a number", other)),
        }
    }

    pub fn string(&mut self) -> Result<String, RedisError> {
        match self.items.next() {
            Some(Reply::Bytes(b)) => String::from_utf8(b)
                .map_err(|e| self.unexpected("UTF-8", Some(Reply::Bytes(e.into_bytes())))),
            other => Err(self.unexpected("a string", other)),
        }
    }

    /// Whether every element has been read.
    pub fn at_end(&self) -> bool {
        self.items.len() == 0
    }

    /// Ends the reading: a reply with elements left over does not have the
    /// shape the script declares.
    pub fn finish(mut self) -> Result<(), RedisError> {
        match self.items.next() {
            None => Ok(()),
            extra => Err(self.unexpected("the end of the reply", extra)),
        }
    }
}
