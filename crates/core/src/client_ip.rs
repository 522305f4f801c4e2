//! The client's IP address, for per-IP limits. It comes from the host's
//! `spin-client-addr` (the TCP peer), or from `x-forwarded-for` only when
//! the app is configured to sit behind proxies that append to it.

use std::net::{IpAddr, SocketAddr};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// How many proxies of ours stand in front of the app, each appending to
/// `x-forwarded-for` the address it received the request from. Zero means
/// the header is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TrustedProxies(pub u32);

impl ClientIp {
    /// `client_addr` is `spin-client-addr` (`ip:port`); `forwarded_for` is
    /// every `x-forwarded-for` line of the request, in order, joined with
    /// `,`.
    ///
    /// With `proxies` = N > 0 the client is the N-th entry from the right:
    /// our N proxies wrote the last N entries, the outermost one naming the
    /// client, and everything to their left came from the client and can be
    /// forged. That entry must be a plain IP address (a proxy we trust
    /// writes no port); if it is anything else, or the list holds fewer
    /// than N entries (the request did not come through all our proxies),
    /// the client is the peer. Never is it another entry: any other would
    /// be the client's choice.
    pub fn from_headers(
        client_addr: Option<&str>,
        forwarded_for: Option<&str>,
        proxies: TrustedProxies,
    ) -> Option<Self> {
        Self::forwarded(forwarded_for, proxies).or_else(|| Self::peer(client_addr))
    }

    fn forwarded(list: Option<&str>, TrustedProxies(n): TrustedProxies) -> Option<Self> {
        let from_right = usize::try_from(n).ok()?.checked_sub(1)?;
        // Empty elements are no entries (HTTP list syntax ignores them).
        list?
            .rsplit(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .nth(from_right)?
            .parse::<IpAddr>()
            .ok()
            .map(ClientIp)
    }

    fn peer(client_addr: Option<&str>) -> Option<Self> {
        let addr = client_addr?.trim();
        addr.parse::<SocketAddr>()
            .map(|a| a.ip())
            .or_else(|_| addr.parse::<IpAddr>())
            .ok()
            .map(ClientIp)
    }

    /// What the per-IP limiter counts: the address itself for IPv4, the /64
    /// network for IPv6, since one subscriber typically holds a whole /64.
    pub fn limit_key(&self) -> String {
        match self.0.to_canonical() {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> ClientIp {
        ClientIp(s.parse().unwrap())
    }

    const PEER: Option<&str> = Some("10.0.0.1:5555");

    fn client(forwarded_for: &str, proxies: u32) -> Option<ClientIp> {
        ClientIp::from_headers(PEER, Some(forwarded_for), TrustedProxies(proxies))
    }

    #[test]
    fn peer_address_by_default() {
        let none = TrustedProxies::default();
        assert_eq!(
            ClientIp::from_headers(Some("10.1.2.3:5555"), None, none),
            Some(ip("10.1.2.3"))
        );
        assert_eq!(
            ClientIp::from_headers(Some("[::1]:5555"), None, none),
            Some(ip("::1"))
        );
        assert_eq!(ClientIp::from_headers(None, None, none), None);
        assert_eq!(
            ClientIp::from_headers(None, None, TrustedProxies(1)),
            None,
            "no header, no peer"
        );
    }

    #[test]
    fn forwarded_for_only_when_trusted() {
        assert_eq!(client("1.1.1.1, 2.2.2.2", 0), Some(ip("10.0.0.1")));
        assert_eq!(client("1.1.1.1, 2.2.2.2", 1), Some(ip("2.2.2.2")));
        assert_eq!(
            ClientIp::from_headers(PEER, None, TrustedProxies(1)),
            Some(ip("10.0.0.1"))
        );
    }

    #[test]
    fn the_client_is_exactly_n_entries_from_the_right() {
        let list = "6.6.6.6, 1.1.1.1, 2.2.2.2,3.3.3.3";
        assert_eq!(client(list, 1), Some(ip("3.3.3.3")));
        assert_eq!(client(list, 2), Some(ip("2.2.2.2")));
        assert_eq!(client(list, 4), Some(ip("6.6.6.6")));
        // More proxies than entries: not every proxy was passed.
        assert_eq!(client(list, 5), Some(ip("10.0.0.1")));
        assert_eq!(client(list, u32::MAX), Some(ip("10.0.0.1")));
        // Lines joined with "," read as one list; empty elements are none.
        assert_eq!(client("6.6.6.6,, 1.1.1.1 ,", 1), Some(ip("1.1.1.1")));
        assert_eq!(client(" , ,", 1), Some(ip("10.0.0.1")));
        assert_eq!(client("", 1), Some(ip("10.0.0.1")));
        assert_eq!(client("2001:db8::7", 1), Some(ip("2001:db8::7")));
    }

    #[test]
    fn an_entry_that_is_not_a_plain_address_means_the_peer() {
        // Never the forged 6.6.6.6 to its left.
        for ours in [
            "2.2.2.2:443",
            "[2001:db8::7]:443",
            "[2001:db8::7]",
            "unknown",
            "junk",
            "2.2.2.2 3.3.3.3",
            "\"2.2.2.2\"",
        ] {
            assert_eq!(
                client(&format!("6.6.6.6, {ours}"), 1),
                Some(ip("10.0.0.1")),
                "{ours}"
            );
        }
        assert_eq!(client("6.6.6.6, junk, 2.2.2.2", 2), Some(ip("10.0.0.1")));
    }

    #[test]
    fn ipv6_is_limited_per_64() {
        assert_eq!(ip("2001:db8:1:2:3:4:5:6").limit_key(), "2001:db8:1:2::/64");
        assert_eq!(ip("::ffff:1.2.3.4").limit_key(), "1.2.3.4");
        assert_eq!(ip("9.8.7.6").limit_key(), "9.8.7.6");
    }
}
