//! The client's IP address, for per-IP limits. It comes from the host's
//! `spin-client-addr` (the TCP peer), or from `x-forwarded-for` only when
//! the app is configured to sit behind a proxy that sets it.

use std::net::{IpAddr, SocketAddr};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl ClientIp {
    /// `client_addr` is `spin-client-addr` (`ip:port`). With
    /// `trust_forwarded_for`, the right-most valid address of
    /// `x-forwarded-for` wins: that is the one our own proxy appended, while
    /// entries to its left come from the client and can be forged.
    pub fn from_headers(
        client_addr: Option<&str>,
        forwarded_for: Option<&str>,
        trust_forwarded_for: bool,
    ) -> Option<Self> {
        if trust_forwarded_for
            && let Some(ip) = forwarded_for.and_then(|list| {
                list.rsplit(',')
                    .map(str::trim)
                    .find_map(|s| s.parse::<IpAddr>().ok())
            })
        {
            return Some(ClientIp(ip));
        }
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

    #[test]
    fn peer_address_by_default() {
        assert_eq!(
            ClientIp::from_headers(Some("10.1.2.3:5555"), None, false),
            Some(ip("10.1.2.3"))
        );
        assert_eq!(
            ClientIp::from_headers(Some("[::1]:5555"), None, false),
            Some(ip("::1"))
        );
        assert_eq!(ClientIp::from_headers(None, None, false), None);
    }

    #[test]
    fn forwarded_for_only_when_trusted() {
        let xff = Some("1.1.1.1, 2.2.2.2");
        assert_eq!(
            ClientIp::from_headers(Some("10.0.0.1:1"), xff, false),
            Some(ip("10.0.0.1"))
        );
        assert_eq!(
            ClientIp::from_headers(Some("10.0.0.1:1"), xff, true),
            Some(ip("2.2.2.2"))
        );
        assert_eq!(
            ClientIp::from_headers(Some("10.0.0.1:1"), Some("junk"), true),
            Some(ip("10.0.0.1"))
        );
    }

    #[test]
    fn ipv6_is_limited_per_64() {
        assert_eq!(ip("2001:db8:1:2:3:4:5:6").limit_key(), "2001:db8:1:2::/64");
        assert_eq!(ip("::ffff:1.2.3.4").limit_key(), "1.2.3.4");
        assert_eq!(ip("9.8.7.6").limit_key(), "9.8.7.6");
    }
}
