//! Redis Cluster routing, for adapters whose client does not route (Spin's
//! outbound Redis passes `MOVED` and `ASK` on as errors): which slot a
//! command's key hashes to ([`slot`], [`command_slot`]), which node serves
//! each slot ([`SlotMap`], read from `CLUSTER NODES`), what a redirection
//! says ([`Redirect`]), and [`ClusterRedis`], a [`Redis`] that sends each
//! command to the node owning its slot over connections a [`Connector`]
//! opens.
//!
//! A plain Redis, or a proxy in front of a cluster, never redirects: the
//! router then sends everything to the configured address, as before, and
//! never asks for the cluster's layout.

use crate::redis::{Arg, Redis, RedisError, Reply};

/// The number of hash slots of a Redis Cluster.
pub const SLOTS: u16 = 16384;

/// How many redirections one command may follow before it fails: a
/// reshard moves a slot once (`ASK`, then `MOVED`), a failover once more.
pub const MAX_REDIRECTS: usize = 5;

/// How long the router waits before it sends again a command a node
/// answered `TRYAGAIN` (a multi-key command whose keys are half-way
/// through a slot's move): moving one slot's keys takes milliseconds.
pub const TRYAGAIN_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

/// Whether an error reply is `TRYAGAIN`, as Redis or Spin's client words it.
fn is_try_again(message: &str) -> bool {
    message.contains("TRYAGAIN") || message.contains("TryAgain")
}

/// CRC16-CCITT (XModem), the checksum Redis Cluster hashes keys with.
fn crc16(bytes: &[u8]) -> u16 {
    crc16_extend(0, bytes)
}

/// `crc16` of some bytes followed by `bytes`, given `crc16` of the first.
fn crc16_extend(mut crc: u16, bytes: &[u8]) -> u16 {
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The part of `key` that is hashed: the text between the first `{` and
/// the first `}` after it when that is not empty (a hash tag), else all of
/// it. Keys with one tag share a slot, which is what lets a script touch
/// several keys.
pub fn hash_tag(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{')
        && let Some(len) = key[open + 1..].iter().position(|&b| b == b'}')
        && len > 0
    {
        return &key[open + 1..open + 1 + len];
    }
    key
}

/// The hash slot of `key`.
pub fn slot(key: &[u8]) -> u16 {
    crc16(hash_tag(key)) % SLOTS
}

/// The hash tag `{<prefix><n>}` (braces included) with the smallest n
/// whose slot `wanted` accepts. The prefix's checksum is computed once and
/// each n's digits are added to it, so a search of hundreds of tries costs
/// microseconds (tags are found again on every request that needs them).
pub fn find_tag(prefix: &str, wanted: impl Fn(u16) -> bool) -> String {
    let base = crc16(prefix.as_bytes());
    let mut digits = [0u8; 10];
    for n in 0..u32::MAX {
        let mut rest = n;
        let mut start = digits.len();
        loop {
            start -= 1;
            digits[start] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        if wanted(crc16_extend(base, &digits[start..]) % SLOTS) {
            return format!("{{{prefix}{n}}}");
        }
    }
    unreachable!("a 16-bit checksum takes every value long before")
}

/// The slot a command is routed by: its first key. `None` for commands
/// without one (`PING`, `CLUSTER`, a script given no keys), which any node
/// answers.
pub fn command_slot(command: &str, args: &[Arg<'_>]) -> Option<u16> {
    let key = if command.eq_ignore_ascii_case("EVALSHA") || command.eq_ignore_ascii_case("EVAL") {
        let keys = match args.get(1)? {
            Arg::Int(n) => *n,
            Arg::Bytes(b) => std::str::from_utf8(b).ok()?.parse().ok()?,
        };
        if keys < 1 {
            return None;
        }
        args.get(2)?
    } else if ["PING", "CLUSTER", "INFO", "TIME", "SCRIPT", "ASKING"]
        .iter()
        .any(|c| command.eq_ignore_ascii_case(c))
    {
        return None;
    } else {
        args.first()?
    };
    match key {
        Arg::Bytes(b) => Some(slot(b)),
        Arg::Int(i) => Some(slot(i.to_string().as_bytes())),
    }
}

/// What a cluster node's error reply says about where a slot is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redirect {
    /// The slot now lives at `node` for good: update the map, resend there.
    Moved { slot: u16, node: String },
    /// The slot is being moved to `node`, and this key is there already:
    /// resend this one command there, after `ASKING`.
    Ask { slot: u16, node: String },
}

impl Redirect {
    /// Reads a redirection out of an error message: `MOVED 3999
    /// 127.0.0.1:6381` as Redis sends it, or as Spin's client words it
    /// (`... signalled by the server - Moved: 3999 127.0.0.1:6381` on Spin
    /// 4.0, `MOVED: 3999 ...`), possibly behind a prefix of ours
    /// (`script gate: `).
    pub fn parse(message: &str) -> Option<Self> {
        // ASCII lower case keeps every byte where it was.
        let lower = message.to_ascii_lowercase();
        for (word, moved) in [("moved", true), ("ask", false)] {
            let Some(at) = lower.find(word) else {
                continue;
            };
            let before = &lower[..at];
            if !(before.is_empty() || before.ends_with(' ') || before.ends_with('-')) {
                continue;
            }
            let rest = message[at + word.len()..].trim_start_matches(':');
            let mut parts = rest.split_whitespace();
            let slot: u16 = parts.next()?.parse().ok()?;
            let node = parts.next()?.trim_end_matches(['.', ',']).to_string();
            if slot >= SLOTS || !node.contains(':') {
                return None;
            }
            return Some(if moved {
                Redirect::Moved { slot, node }
            } else {
                Redirect::Ask { slot, node }
            });
        }
        None
    }
}

/// Which primary serves each slot, as `host:port`.
#[derive(Debug, Clone, Default)]
pub struct SlotMap {
    /// `(first slot, last slot, index into nodes)`, sorted, not overlapping.
    ranges: Vec<(u16, u16, usize)>,
    nodes: Vec<String>,
}

impl SlotMap {
    /// The layout a `CLUSTER NODES` reply describes: each primary that is
    /// not failed, with the slots it serves (slots being imported or
    /// migrated are listed apart, in brackets, and skipped: until the move
    /// ends their owner is the one listed plainly). `None` when the reply
    /// names no slot at all.
    pub fn from_cluster_nodes(text: &str) -> Option<Self> {
        let mut map = SlotMap::default();
        for line in text.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 8 {
                continue;
            }
            let flags = fields[2];
            if !flags.split(',').any(|f| f == "master") || flags.contains("fail") {
                continue;
            }
            // ip:port@cport[,hostname]
            let address = fields[1].split(['@', ',']).next().unwrap_or_default();
            if address.starts_with(':') || !address.contains(':') {
                continue;
            }
            for range in &fields[8..] {
                if range.starts_with('[') {
                    continue;
                }
                let (first, last) = range.split_once('-').unwrap_or((range, range));
                if let (Ok(first), Ok(last)) = (first.parse::<u16>(), last.parse::<u16>())
                    && first <= last
                    && last < SLOTS
                {
                    map.assign(first, last, address);
                }
            }
        }
        (!map.ranges.is_empty()).then_some(map)
    }

    /// The node serving `slot`, if the map knows one.
    pub fn node(&self, slot: u16) -> Option<&str> {
        let at = self.ranges.partition_point(|&(_, last, _)| last < slot);
        match self.ranges.get(at) {
            Some(&(first, _, node)) if first <= slot => Some(&self.nodes[node]),
            _ => None,
        }
    }

    /// Every node the map names, for when the one asked is gone.
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// Records that `first..=last` are served by `node`.
    pub fn assign(&mut self, first: u16, last: u16, node: &str) {
        let index = match self.nodes.iter().position(|n| n == node) {
            Some(i) => i,
            None => {
                self.nodes.push(node.to_string());
                self.nodes.len() - 1
            }
        };
        let mut ranges = Vec::with_capacity(self.ranges.len() + 2);
        for &(a, b, n) in &self.ranges {
            if b < first || a > last {
                ranges.push((a, b, n));
                continue;
            }
            if a < first {
                ranges.push((a, first - 1, n));
            }
            if b > last {
                ranges.push((last + 1, b, n));
            }
        }
        ranges.push((first, last, index));
        ranges.sort_unstable();
        self.ranges = ranges;
    }

    /// The map as one line of text, for a cache that holds strings:
    /// `first-last=host:port` ranges separated by spaces.
    pub fn to_text(&self) -> String {
        let parts: Vec<String> = self
            .ranges
            .iter()
            .map(|&(a, b, n)| format!("{a}-{b}={}", self.nodes[n]))
            .collect();
        parts.join(" ")
    }

    /// The map [`SlotMap::to_text`] wrote; `None` for anything else.
    pub fn from_text(text: &str) -> Option<Self> {
        let mut map = SlotMap::default();
        for part in text.split_whitespace() {
            let (range, node) = part.split_once('=')?;
            let (first, last) = range.split_once('-')?;
            let (first, last) = (first.parse::<u16>().ok()?, last.parse::<u16>().ok()?);
            if first > last || last >= SLOTS || !node.contains(':') {
                return None;
            }
            map.assign(first, last, node);
        }
        (!map.ranges.is_empty()).then_some(map)
    }
}

/// Opens connections to cluster nodes, given as `host:port`; the adapter
/// knows the scheme and credentials of the configured address.
#[allow(async_fn_in_trait)] // Wasm is single-threaded: no `Send` to promise.
pub trait Connector {
    type Connection: Redis;

    /// The connection to the configured address.
    async fn open_seed(&mut self) -> Result<Self::Connection, RedisError>;

    /// A connection to the node at `node` (`host:port`).
    async fn open(&mut self, node: &str) -> Result<Self::Connection, RedisError>;

    /// Waits `duration` without holding up the instance's other requests.
    async fn pause(&mut self, duration: std::time::Duration);
}

/// Where a [`ClusterRedis`] keeps the slot map between requests: in the
/// instance when it lives on (WASI 0.3), in a store shared by instances
/// when it does not (WASI 0.2), nowhere in a test that wants none.
pub trait MapCache {
    fn load(&mut self) -> Option<SlotMap>;
    fn save(&mut self, map: &SlotMap);
}

/// A cache that keeps nothing: every [`ClusterRedis`] learns the layout
/// again on its first redirection.
pub struct NoCache;

impl MapCache for NoCache {
    fn load(&mut self) -> Option<SlotMap> {
        None
    }
    fn save(&mut self, _: &SlotMap) {}
}

/// Where a command goes: the seed (the configured address), or a node.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Seed,
    Node(String),
}

/// A [`Redis`] over a cluster or a single server: each command goes to the
/// node serving its key's slot when the layout is known, else to the seed.
/// The first redirection makes it read the layout (`CLUSTER NODES`, one
/// round trip) and keep it in its [`MapCache`], so that later commands,
/// and later requests, go straight to their node. `MOVED` updates the map,
/// `ASK` is followed for one command with `ASKING`, a node that cannot be
/// reached makes it read the layout again from another, all within
/// [`MAX_REDIRECTS`]. `TRYAGAIN` (the command did not run) is sent again
/// after [`TRYAGAIN_PAUSE`], within the same bound. `CLUSTERDOWN`, and
/// `TRYAGAIN` past the bound, are passed on: like any error reply that is
/// not a bug ([`RedisError::is_outage`]), they answer 503.
pub struct ClusterRedis<C: Connector, M: MapCache> {
    connector: C,
    cache: M,
    map: Option<SlotMap>,
    loaded: bool,
    /// Open connections, the seed's under [`Target::Seed`].
    connections: Vec<(Target, C::Connection)>,
    /// Where the last command ran, for [`Redis::confirm_durable`].
    last: Option<Target>,
    /// Replicas a durable write waits for, and for how long at most.
    replica_wait: Option<(u32, u32)>,
}

impl<C: Connector, M: MapCache> ClusterRedis<C, M> {
    pub fn new(connector: C, cache: M) -> Self {
        Self {
            connector,
            cache,
            map: None,
            loaded: false,
            connections: Vec::new(),
            last: None,
            replica_wait: None,
        }
    }

    /// Makes [`Redis::confirm_durable`] wait until `replicas` replicas of
    /// the node that ran the last command have its writes, for at most
    /// `timeout_ms`: then a failover, which promotes a replica, keeps
    /// every write the client was told of. When the time runs out (a
    /// replica down or far behind), the write is confirmed anyway: it is
    /// on the primary and in its append-only file, and refusing would stop
    /// the sale whenever a replica is down; a failover in that moment could
    /// still lose it, a window this narrows to the timeout's but does not
    /// close.
    pub fn wait_for_replicas(mut self, replicas: u32, timeout_ms: u32) -> Self {
        self.replica_wait = (replicas > 0).then_some((replicas, timeout_ms));
        self
    }

    /// The slot map in use, if any: the cache's, read on first use.
    fn map(&mut self) -> Option<&SlotMap> {
        if !self.loaded {
            self.loaded = true;
            self.map = self.cache.load();
        }
        self.map.as_ref()
    }

    fn target(&mut self, slot: Option<u16>) -> Target {
        match (slot, self.map()) {
            (Some(slot), Some(map)) => match map.node(slot) {
                Some(node) => Target::Node(node.to_string()),
                None => Target::Seed,
            },
            _ => Target::Seed,
        }
    }

    async fn connection(&mut self, target: &Target) -> Result<&mut C::Connection, RedisError> {
        let at = match self.connections.iter().position(|(t, _)| t == target) {
            Some(at) => at,
            None => {
                let connection = match target {
                    Target::Seed => self.connector.open_seed().await?,
                    Target::Node(node) => self.connector.open(node).await?,
                };
                self.connections.push((target.clone(), connection));
                self.connections.len() - 1
            }
        };
        Ok(&mut self.connections[at].1)
    }

    fn forget(&mut self, target: &Target) {
        self.connections.retain(|(t, _)| t != target);
    }

    /// Reads the layout from `target` and keeps it.
    async fn refresh_from(&mut self, target: &Target) -> Result<bool, RedisError> {
        let connection = self.connection(target).await?;
        let replies = connection
            .execute("CLUSTER", &[Arg::Bytes(b"NODES")])
            .await?;
        let text = match replies.first() {
            Some(Reply::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
            Some(Reply::Status(s)) => s.clone(),
            _ => return Ok(false),
        };
        match SlotMap::from_cluster_nodes(&text) {
            Some(map) => {
                self.cache.save(&map);
                self.map = Some(map);
                self.loaded = true;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Reads the layout again after `failed` could not be reached: from
    /// the seed, else from any other node the old map names.
    async fn refresh_after(&mut self, failed: &Target) -> bool {
        let mut candidates = vec![Target::Seed];
        if let Some(map) = &self.map {
            candidates.extend(map.nodes().iter().map(|n| Target::Node(n.clone())));
        }
        for candidate in candidates {
            if &candidate == failed {
                continue;
            }
            match self.refresh_from(&candidate).await {
                Ok(true) => return true,
                Ok(false) => return false,
                Err(_) => self.forget(&candidate),
            }
        }
        false
    }

    async fn route(
        &mut self,
        command: &str,
        args: &[Arg<'_>],
        replayable: bool,
    ) -> Result<Vec<Reply>, RedisError> {
        let slot = command_slot(command, args);
        let mut target = self.target(slot);
        let mut asking = false;
        let mut last_error = None;
        for _ in 0..=MAX_REDIRECTS {
            let connection = match self.connection(&target).await {
                Ok(connection) => connection,
                Err(e) => {
                    // A node gone (a failover): its slots are elsewhere now,
                    // or will be; the command never reached it.
                    self.forget(&target);
                    if target != Target::Seed && self.refresh_after(&target).await {
                        target = self.target(slot);
                        last_error = Some(e);
                        continue;
                    }
                    return Err(e);
                }
            };
            if asking && let Err(e) = connection.execute("ASKING", &[]).await {
                self.forget(&target);
                return Err(e);
            }
            let result = if replayable {
                connection.execute_replayable(command, args).await
            } else {
                connection.execute(command, args).await
            };
            match result {
                Err(RedisError::Server(message)) => match Redirect::parse(&message) {
                    Some(Redirect::Moved { slot: moved, node }) => {
                        // A first redirection: this is a cluster, and its
                        // layout is worth one round trip to read whole.
                        let target_node = Target::Node(node.clone());
                        let refreshed = self.map.is_none()
                            && matches!(self.refresh_from(&target_node).await, Ok(true));
                        if !refreshed {
                            let mut map = self.map.take().unwrap_or_default();
                            map.assign(moved, moved, &node);
                            self.cache.save(&map);
                            self.map = Some(map);
                        }
                        target = target_node;
                        asking = false;
                        last_error = Some(RedisError::Server(message));
                    }
                    Some(Redirect::Ask { node, .. }) => {
                        target = Target::Node(node);
                        asking = true;
                        last_error = Some(RedisError::Server(message));
                    }
                    None if is_try_again(&message) => {
                        self.connector.pause(TRYAGAIN_PAUSE).await;
                        last_error = Some(RedisError::Server(message));
                    }
                    None => return Err(RedisError::Server(message)),
                },
                Err(e @ RedisError::Unreachable(_)) => {
                    self.forget(&target);
                    return Err(e);
                }
                other => {
                    self.last = Some(target);
                    return other;
                }
            }
        }
        Err(last_error.unwrap_or_else(|| RedisError::Unreachable("no node answered".into())))
    }
}

impl<C: Connector, M: MapCache> Redis for ClusterRedis<C, M> {
    async fn execute(&mut self, command: &str, args: &[Arg<'_>]) -> Result<Vec<Reply>, RedisError> {
        self.route(command, args, false).await
    }

    async fn execute_replayable(
        &mut self,
        command: &str,
        args: &[Arg<'_>],
    ) -> Result<Vec<Reply>, RedisError> {
        self.route(command, args, true).await
    }

    async fn confirm_durable(&mut self) -> Result<(), RedisError> {
        let (Some((replicas, timeout_ms)), Some(last)) = (self.replica_wait, self.last.clone())
        else {
            return Ok(());
        };
        let connection = self.connection(&last).await?;
        let waited = connection
            .execute(
                "WAIT",
                &[
                    Arg::Int(i64::from(replicas)),
                    Arg::Int(i64::from(timeout_ms)),
                ],
            )
            .await;
        if let Err(RedisError::Unreachable(_)) = &waited {
            self.forget(&last);
        }
        waited.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_hash_to_the_slots_redis_gives_them() {
        // Values from Redis's CLUSTER KEYSLOT.
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"bar"), 5061);
        assert_eq!(slot(b"123456789"), 12739);
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
        assert_eq!(slot(b"{gate}:sess:abc"), slot(b"gate"));
        // An empty tag, or none closed, hashes the whole key.
        assert_eq!(hash_tag(b"foo{}{bar}"), b"foo{}{bar}");
        assert_eq!(hash_tag(b"foo{bar"), b"foo{bar");
        assert_eq!(hash_tag(b"foo{{bar}}zap"), b"{bar");
    }

    #[test]
    fn scripts_route_by_their_first_key() {
        let args = [
            Arg::Bytes(b"0123abcd"),
            Arg::Int(2),
            Arg::Bytes(b"{v:7}:stock"),
            Arg::Bytes(b"{v:7}:buyers"),
        ];
        assert_eq!(command_slot("EVALSHA", &args), Some(slot(b"v:7")));
        let no_keys = [Arg::Bytes(b"0123abcd"), Arg::Int(0), Arg::Bytes(b"x")];
        assert_eq!(command_slot("EVALSHA", &no_keys), None);
        assert_eq!(command_slot("PING", &[]), None);
        assert_eq!(
            command_slot("HMGET", &[Arg::Bytes(b"{g:1}:info"), Arg::Bytes(b"f")]),
            Some(slot(b"g:1"))
        );
    }

    #[test]
    fn redirections_are_read_as_redis_and_spin_word_them() {
        let moved = Redirect::Moved {
            slot: 7226,
            node: "127.0.0.1:7102".into(),
        };
        assert_eq!(
            Redirect::parse("MOVED 7226 127.0.0.1:7102"),
            Some(moved.clone())
        );
        assert_eq!(
            Redirect::parse("script send_code: MOVED: 7226 127.0.0.1:7102"),
            Some(moved.clone())
        );
        assert_eq!(
            Redirect::parse(
                "script send_code: An error was signalled by the server - Moved: 7226 127.0.0.1:7102"
            ),
            Some(moved)
        );
        assert_eq!(
            Redirect::parse("ASK 12 10.0.0.2:6379"),
            Some(Redirect::Ask {
                slot: 12,
                node: "10.0.0.2:6379".into()
            })
        );
        assert_eq!(Redirect::parse("ERR unknown command 'MOVEDX'"), None);
        assert_eq!(Redirect::parse("ERR a task failed"), None);
        assert_eq!(Redirect::parse("NOSCRIPT No matching script"), None);
    }

    const NODES: &str = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@31003 master - 0 1426238318243 3 connected 10923-16383 [10922-<-67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1]
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001,node-1 myself,master - 0 0 1 connected 0-5460
824fe116063bc5fcf9f4ffd895bc17aee7731ac3 127.0.0.1:30006@31006 master,fail - 1426238317741 1426238317741 6 connected 99
";

    #[test]
    fn the_layout_is_read_from_cluster_nodes() {
        let map = SlotMap::from_cluster_nodes(NODES).unwrap();
        assert_eq!(map.node(0), Some("127.0.0.1:30001"));
        assert_eq!(map.node(5460), Some("127.0.0.1:30001"));
        assert_eq!(map.node(5461), Some("127.0.0.1:30002"));
        // Being imported by 30003, still served by 30002.
        assert_eq!(map.node(10922), Some("127.0.0.1:30002"));
        assert_eq!(map.node(16383), Some("127.0.0.1:30003"));
        // A failed primary's claims are ignored.
        assert_eq!(map.node(99), Some("127.0.0.1:30001"));
        assert!(SlotMap::from_cluster_nodes("").is_none());
        let text = map.to_text();
        assert_eq!(
            text,
            "0-5460=127.0.0.1:30001 5461-10922=127.0.0.1:30002 10923-16383=127.0.0.1:30003"
        );
        assert_eq!(SlotMap::from_text(&text).unwrap().to_text(), text);
        assert!(SlotMap::from_text("garbage").is_none());
    }

    #[test]
    fn a_moved_slot_splits_its_range() {
        let mut map = SlotMap::default();
        map.assign(0, 16383, "a:1");
        map.assign(100, 100, "b:2");
        assert_eq!(map.node(99), Some("a:1"));
        assert_eq!(map.node(100), Some("b:2"));
        assert_eq!(map.node(101), Some("a:1"));
        map.assign(0, 16383, "c:3");
        assert_eq!(map.node(100), Some("c:3"));
        assert_eq!(map.to_text(), "0-16383=c:3");
    }
}
