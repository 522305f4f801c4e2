//! `allowed_outbound_hosts`: which addresses a component may reach, for Redis,
//! outgoing HTTP and WASI sockets, parsed and matched by Spin 4.0.2's rules.
//!
//! An entry is `scheme://host[:port]`:
//! - scheme: letters only, or `*`;
//! - host: `*`, `*.example.com` (any subdomain), an IP network in CIDR form
//!   (`127.0.0.0/24`), `self` (relative requests), or a literal host;
//! - port: a number, `*`, or a range `a..b` (`b` excluded); left out, the
//!   scheme's well-known port (`redis`, `http`, `https`, `postgres`, `mysql`,
//!   `mqtt`), an error for any other scheme.
//!
//! A trailing `/` is tolerated, any other path is an error. Error messages
//! keep Spin's wording so that a manifest one host refuses reads the same on
//! the other.

use std::net::IpAddr;
use std::ops::Range;

use anyhow::{Context, bail, ensure};
use url::Host;

/// The pointer Spin appends to its format errors.
const LEARN_MORE: &str = "Learn more: https://spinframework.dev/v3/http-outbound#granting-http-permissions-to-components";

/// Spin routes these names to the app's own components (service chaining),
/// which this host does not do; they must never be looked up in DNS.
const SERVICE_CHAINING_DOMAIN: &str = "spin.internal";

/// One parsed entry of `allowed_outbound_hosts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    scheme: SchemeRule,
    host: HostRule,
    port: PortRule,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum SchemeRule {
    Any,
    Only(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostRule {
    Any,
    /// `*.example.com`, kept as `.example.com`: domains with that suffix.
    AnySubdomainOf(String),
    /// `self`: relative requests to the app itself, which this host does not
    /// make; it never matches an absolute address.
    ToSelf,
    Literal(Host),
    Network(IpNetwork),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PortRule {
    Any,
    One(u16),
    Range(Range<u16>),
}

/// The port a scheme implies when an entry or a URL leaves it out.
pub fn well_known_port(scheme: &str) -> Option<u16> {
    match scheme {
        "postgres" => Some(5432),
        "mysql" => Some(3306),
        "redis" => Some(6379),
        "mqtt" => Some(1883),
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

impl AllowedHost {
    pub fn parse(entry: &str) -> anyhow::Result<Self> {
        let url = entry.trim();
        let Some((scheme, rest)) = url.split_once("://") else {
            match url {
                "*" | ":" | "" | "?" => bail!(
                    "{url:?} is not an allowed outbound host format.\nHosts must be in the form <scheme>://<host>[:<port>], with '*' wildcards allowed for each.\nIf you intended to allow all outbound networking, you can use '*://*:*' - this will obviate all network sandboxing.\n{LEARN_MORE}"
                ),
                _ => bail!(
                    "{url:?} does not contain a scheme (e.g., 'http://' or '*://')\n{LEARN_MORE}"
                ),
            }
        };
        let (host, rest) = rest.rsplit_once(':').unwrap_or((rest, ""));
        let port = match rest.split_once('/') {
            Some((port, path)) => {
                ensure!(path.is_empty(), "{url:?} has a path but is not allowed to");
                port
            }
            None => rest,
        };
        let port = PortRule::parse(port, scheme)
            .with_context(|| format!("Invalid allowed host port {port:?}"))?;
        let scheme = SchemeRule::parse(scheme)
            .with_context(|| format!("Invalid allowed host scheme {scheme:?}"))?;
        let host =
            HostRule::parse(host).with_context(|| format!("Invalid allowed host {host:?}"))?;
        Ok(Self { scheme, host, port })
    }

    fn allows(&self, url: &OutboundUrl) -> bool {
        self.scheme.allows(&url.scheme)
            && self.host.allows(&url.host)
            && self.port.allows(url.port, &url.scheme)
    }
}

impl SchemeRule {
    fn parse(scheme: &str) -> anyhow::Result<Self> {
        if scheme == "*" {
            return Ok(Self::Any);
        }
        ensure!(!scheme.starts_with('{'), "scheme lists are not supported");
        ensure!(
            scheme.chars().all(char::is_alphabetic),
            "only alphabetic characters are allowed"
        );
        Ok(Self::Only(scheme.to_string()))
    }

    fn allows(&self, scheme: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Only(s) => s == scheme,
        }
    }
}

impl HostRule {
    fn parse(host: &str) -> anyhow::Result<Self> {
        let host = host.trim();
        if host == "*" {
            return Ok(Self::Any);
        }
        if host == "self" || host == "self.alt" {
            return Ok(Self::ToSelf);
        }
        if host.starts_with('{') {
            ensure!(host.ends_with('}'));
            bail!("host lists are not yet supported");
        }
        if let Some(network) = IpNetwork::parse(host) {
            return Ok(Self::Network(network));
        }
        let host = host.trim_end_matches('/');
        ensure!(!host.contains('/'), "must not include a path");
        if let Some(domain) = host.strip_prefix("*.") {
            ensure!(
                !domain.contains('*'),
                "wildcards are allowed only as prefixes"
            );
            return Ok(Self::AnySubdomainOf(format!(".{domain}")));
        }
        ensure!(
            !host.contains('*'),
            "wildcards are allowed only as subdomains"
        );
        Ok(Self::Literal(Host::parse(host)?))
    }

    fn allows(&self, host: &str) -> bool {
        let Ok(host) = Host::parse(host) else {
            return false;
        };
        match (self, host) {
            (Self::Any, _) => true,
            (Self::AnySubdomainOf(suffix), Host::Domain(domain)) => domain.ends_with(suffix),
            (Self::Literal(literal), host) => host == *literal,
            (Self::Network(net), Host::Ipv4(ip)) => net.contains(IpAddr::V4(ip)),
            (Self::Network(net), Host::Ipv6(ip)) => net.contains(IpAddr::V6(ip)),
            (Self::AnySubdomainOf(_) | Self::Network(_) | Self::ToSelf, _) => false,
        }
    }
}

impl PortRule {
    fn parse(port: &str, scheme: &str) -> anyhow::Result<Self> {
        if port.is_empty() {
            return well_known_port(scheme).map(Self::One).with_context(|| {
                format!(
                    "no port was provided and the scheme {scheme:?} does not have a known default port number"
                )
            });
        }
        if port == "*" {
            return Ok(Self::Any);
        }
        ensure!(!port.starts_with('{'), "port lists are not yet supported");
        if let Some((start, end)) = port.split_once("..") {
            let number = |p: &str| {
                p.parse::<u16>()
                    .with_context(|| format!("port range {port:?} contains non-number"))
            };
            return Ok(Self::Range(number(start)?..number(end)?));
        }
        let port = port
            .parse()
            .with_context(|| format!("port {port:?} is not a number"))?;
        Ok(Self::One(port))
    }

    fn allows(&self, port: Option<u16>, scheme: &str) -> bool {
        let port = match (self, port.or_else(|| well_known_port(scheme))) {
            (Self::Any, _) => return true,
            (_, None) => return false,
            (_, Some(port)) => port,
        };
        match self {
            Self::Any => true,
            Self::One(p) => *p == port,
            Self::Range(r) => r.contains(&port),
        }
    }
}

/// An IP network written `address/prefix`; host bits are dropped, so
/// `127.0.0.1/24` is `127.0.0.0/24`, as Spin reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct IpNetwork {
    address: IpAddr,
    prefix: u8,
}

impl IpNetwork {
    fn parse(text: &str) -> Option<Self> {
        let (address, prefix) = text.split_once('/')?;
        let address: IpAddr = address.parse().ok()?;
        let prefix: u8 = prefix.parse().ok()?;
        let bits = if address.is_ipv4() { 32 } else { 128 };
        (prefix <= bits).then(|| Self {
            address: mask(address, prefix),
            prefix,
        })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.address.is_ipv4() && mask(ip, self.prefix) == self.address
    }
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let keep = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((u32::from(v4) & keep).into())
        }
        IpAddr::V6(v6) => {
            let keep = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((u128::from(v6) & keep).into())
        }
    }
}

/// An address a guest wants to reach, read as Spin reads it: a URL, or
/// `host:port` taken with the scheme of the interface in use.
#[derive(Debug)]
struct OutboundUrl {
    scheme: String,
    host: String,
    port: Option<u16>,
}

impl OutboundUrl {
    fn parse(address: &str, scheme: &str) -> Option<Self> {
        let address = encode_userinfo(address);
        let parsed = match url::Url::parse(&address) {
            Ok(url) if url.has_host() => url,
            _ => url::Url::parse(&format!("{scheme}://{address}")).ok()?,
        };
        Some(Self {
            scheme: parsed.scheme().to_string(),
            host: parsed.host_str()?.to_string(),
            port: parsed.port(),
        })
    }
}

/// Percent-encodes the user-info of `scheme://user:pass@host` so that a
/// password with URL metacharacters still parses.
fn encode_userinfo(address: &str) -> String {
    let Some(at) = address.find('@') else {
        return address.to_string();
    };
    let start = address.find("://").map_or(0, |i| i + 3);
    let path = address[start..].find('/').map_or(usize::MAX, |i| i + start);
    if at > path {
        return address.to_string();
    }
    let mut out = String::with_capacity(address.len() + 8);
    out.push_str(&address[..start]);
    for byte in address[start..at].bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out.push_str(&address[at..]);
    out
}

/// A component's parsed `allowed_outbound_hosts`.
#[derive(Debug, Clone, Default)]
pub struct OutboundPolicy {
    allowed: Vec<AllowedHost>,
}

impl OutboundPolicy {
    /// Parses entries whose templates are already resolved.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> anyhow::Result<Self> {
        if let [only] = entries
            && only.as_ref() == "insecure:allow-all"
        {
            bail!(
                "'insecure:allow-all' is not allowed - use '*://*:*' instead if you really want to allow all outbound traffic'"
            );
        }
        let allowed = entries
            .iter()
            .map(|e| AllowedHost::parse(e.as_ref()))
            .collect::<anyhow::Result<_>>()?;
        Ok(Self { allowed })
    }

    /// Whether the guest may reach `address`: a URL, or `host:port` read
    /// with `scheme` (`redis`, `https`, `tcp`...). An address that does not
    /// parse, or has no host, is never allowed.
    pub fn allows(&self, address: &str, scheme: &str) -> bool {
        let Some(url) = OutboundUrl::parse(address, scheme) else {
            return false;
        };
        let chained = url
            .host
            .strip_suffix(SERVICE_CHAINING_DOMAIN)
            .is_some_and(|rest| rest.is_empty() || rest.ends_with('.'));
        !chained && self.allowed.iter().any(|a| a.allows(&url))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(entries: &[&str]) -> OutboundPolicy {
        OutboundPolicy::parse(entries).unwrap()
    }

    fn error(entry: &str) -> String {
        format!("{:#}", AllowedHost::parse(entry).unwrap_err())
    }

    #[test]
    fn exact_host_and_well_known_port() {
        let p = policy(&["redis://127.0.0.1:6400", "https://sms.example.com"]);
        assert!(p.allows("redis://127.0.0.1:6400", "redis"));
        assert!(p.allows("redis://127.0.0.1:6400/0", "redis"));
        assert!(!p.allows("redis://127.0.0.1:6401", "redis"));
        assert!(!p.allows("rediss://127.0.0.1:6400", "redis"));
        assert!(p.allows("https://sms.example.com/send", "https"));
        assert!(p.allows("https://SMS.example.com:443/send", "https"));
        assert!(!p.allows("http://sms.example.com/send", "https"));
        assert!(!p.allows("https://evil.com/send", "https"));
        assert!(policy(&["redis://h"]).allows("redis://h:6379", "redis"));
        assert!(policy(&["postgres://db"]).allows("postgres://u:p@db/shop", "postgres"));
    }

    #[test]
    fn wildcards_and_ranges() {
        let p = policy(&["*://*.example.com:8000..8011", "http://localhost:*"]);
        assert!(p.allows("http://a.example.com:8005/", "https"));
        assert!(p.allows("redis://b.example.com:8000", "redis"));
        assert!(!p.allows("http://example.com:8005/", "https"));
        assert!(!p.allows("http://a.example.com:8011/", "https"));
        assert!(p.allows("http://localhost:1234/x", "https"));
        assert!(policy(&["*://*:*"]).allows("https://anything:1/", "https"));
    }

    #[test]
    fn ip_networks() {
        let p = policy(&["*://127.0.0.0/24:7"]);
        assert!(p.allows("127.0.0.1:7", "tcp"));
        assert!(p.allows("127.0.0.255:7", "tcp"));
        assert!(!p.allows("127.0.1.1:7", "tcp"));
        assert!(!p.allows("127.0.0.1:8", "tcp"));
        assert!(
            !p.allows("localhost:7", "tcp"),
            "a network never matches a name"
        );
        let v6 = policy(&["tcp://[::1]:9", "tcp://fd00::/8:9"]);
        assert!(v6.allows("[::1]:9", "tcp"));
        assert!(v6.allows("[fd12::3]:9", "tcp"));
        assert!(!v6.allows("[fe00::1]:9", "tcp"));
        // Host bits are dropped, as Spin does.
        assert!(policy(&["*://10.1.2.3/8:*"]).allows("10.9.9.9:1", "tcp"));
    }

    #[test]
    fn socket_addresses_take_the_interface_scheme() {
        let p = policy(&["tcp://127.0.0.1:6001"]);
        assert!(p.allows("127.0.0.1:6001", "tcp"));
        assert!(!p.allows("127.0.0.1:6001", "udp"));
        assert!(!policy(&["redis://127.0.0.1:6001"]).allows("127.0.0.1:6001", "tcp"));
        assert!(policy(&["*://127.0.0.1:6001"]).allows("127.0.0.1:6001", "udp"));
    }

    #[test]
    fn self_matches_no_absolute_address() {
        assert!(!policy(&["http://self"]).allows("http://self/", "https"));
    }

    #[test]
    fn service_chaining_names_never_leave_the_host() {
        let p = policy(&["http://*.spin.internal", "*://*:*"]);
        assert!(!p.allows("http://api.spin.internal/x", "https"));
        assert!(p.allows("http://api.spin.internal.example.com/x", "https"));
    }

    #[test]
    fn passwords_with_metacharacters_still_parse() {
        let p = policy(&["redis://cache:6379"]);
        assert!(p.allows("redis://:p#ss?rd@cache:6379", "redis"));
    }

    #[test]
    fn errors_read_as_spin_writes_them() {
        assert!(error("").contains("\"\" is not an allowed outbound host format"));
        assert!(error("example.com").contains("does not contain a scheme"));
        assert!(error("https://example.com:443/sms").contains("has a path but is not allowed to"));
        assert!(error("https://example.com/sms").contains("must not include a path"));
        assert!(error("foo://x").contains("does not have a known default port number"));
        assert!(error("rediss://x").contains("does not have a known default port number"));
        assert!(error("http://a*b.com").contains("wildcards are allowed only as subdomains"));
        assert!(error("http://x:nine").contains("port \"nine\" is not a number"));
        assert!(error("h2c+tls://x:1").contains("only alphabetic characters are allowed"));
        assert!(error("https://invalid host").contains("Invalid allowed host \"invalid host\""));
        assert!(error("https://").contains("Invalid allowed host \"\""));
        let all = OutboundPolicy::parse(&["insecure:allow-all"]).unwrap_err();
        assert!(
            all.to_string()
                .contains("'insecure:allow-all' is not allowed")
        );
    }

    #[test]
    fn empty_policy_allows_nothing() {
        assert!(!policy(&[]).allows("redis://127.0.0.1", "redis"));
    }
}
