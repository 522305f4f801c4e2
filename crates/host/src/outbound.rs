//! `allowed_outbound_hosts`: which addresses a component may reach, for Redis
//! and for outgoing HTTP. Entries are `scheme://host[:port]`, where the scheme,
//! the host (or a leading `*.` label) and the port may be `*`, and a port may
//! be a half-open range `a..b`. A missing port means the scheme's well-known
//! one (as in Spin, `rediss` has none). An entry with a path is rejected.

use anyhow::{Context, bail};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern<T> {
    Any,
    Exact(T),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Any,
    Exact(String),
    /// `*.example.com`: any host ending in `.example.com`.
    Suffix(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PortPattern {
    Any,
    Range(u16, u16),
}

/// One parsed entry of `allowed_outbound_hosts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    scheme: Pattern<String>,
    host: HostPattern,
    port: PortPattern,
}

/// The default port of the schemes this host can connect to.
pub fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        "redis" => Some(6379),
        _ => None,
    }
}

impl AllowedHost {
    pub fn parse(entry: &str) -> anyhow::Result<Self> {
        let (scheme, rest) = entry
            .split_once("://")
            .with_context(|| format!("`{entry}` has no scheme; write e.g. `https://{entry}`"))?;
        if scheme.is_empty() {
            bail!("`{entry}` has an empty scheme");
        }
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') {
            bail!("`{entry}` has a path; allowed_outbound_hosts takes only scheme, host and port");
        }
        let (host, port) = split_host_port(rest);
        if host.is_empty() {
            bail!("`{entry}` has no host");
        }
        let host = match host {
            "*" => HostPattern::Any,
            h if h.starts_with("*.") => HostPattern::Suffix(h[1..].to_ascii_lowercase()),
            h if h.contains('*') => {
                bail!("`{entry}`: `*` may only be the whole host or its first label")
            }
            h => HostPattern::Exact(h.to_ascii_lowercase()),
        };
        let port = match port {
            Some("*") => PortPattern::Any,
            Some(p) => match p.split_once("..") {
                Some((a, b)) => {
                    let (a, b) = (parse_port(a, entry)?, parse_port(b, entry)?);
                    if a >= b {
                        bail!("`{entry}`: port range is empty");
                    }
                    PortPattern::Range(a, b - 1)
                }
                None => {
                    let p = parse_port(p, entry)?;
                    PortPattern::Range(p, p)
                }
            },
            None => {
                let p = default_port(scheme).with_context(|| {
                    format!("`{entry}` needs a port: scheme `{scheme}` has no default one")
                })?;
                PortPattern::Range(p, p)
            }
        };
        let scheme = if scheme == "*" {
            Pattern::Any
        } else {
            Pattern::Exact(scheme.to_ascii_lowercase())
        };
        Ok(Self { scheme, host, port })
    }

    fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        let scheme_ok = match &self.scheme {
            Pattern::Any => true,
            Pattern::Exact(s) => s.eq_ignore_ascii_case(scheme),
        };
        let host = host.to_ascii_lowercase();
        let host_ok = match &self.host {
            HostPattern::Any => true,
            HostPattern::Exact(h) => *h == host,
            HostPattern::Suffix(s) => host.ends_with(s.as_str()) && host.len() > s.len(),
        };
        let port_ok = match self.port {
            PortPattern::Any => true,
            PortPattern::Range(a, b) => (a..=b).contains(&port),
        };
        scheme_ok && host_ok && port_ok
    }
}

fn split_host_port(s: &str) -> (&str, Option<&str>) {
    // `[::1]:6379`
    if let Some(rest) = s.strip_prefix('[')
        && let Some((host, after)) = rest.split_once(']')
    {
        return (host, after.strip_prefix(':'));
    }
    match s.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    }
}

fn parse_port(p: &str, entry: &str) -> anyhow::Result<u16> {
    p.parse()
        .with_context(|| format!("`{entry}`: `{p}` is not a port"))
}

/// A component's parsed `allowed_outbound_hosts`.
#[derive(Debug, Clone, Default)]
pub struct OutboundPolicy {
    allowed: Vec<AllowedHost>,
}

impl OutboundPolicy {
    /// Parses already expanded entries. As in Spin, an entry that expanded to
    /// nothing (`""`, `http://`, `https://`: an optional endpoint such as an
    /// unset SMS gateway) is skipped.
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> anyhow::Result<Self> {
        let allowed = entries
            .into_iter()
            .map(str::trim)
            .filter(|e| !matches!(*e, "" | "http://" | "https://"))
            .map(AllowedHost::parse)
            .collect::<anyhow::Result<_>>()?;
        Ok(Self { allowed })
    }

    /// Whether a connection to `url` is allowed. A URL that cannot be parsed
    /// or lacks a host is never allowed.
    pub fn allows_url(&self, url: &str) -> bool {
        let Ok(url) = url::Url::parse(url) else {
            return false;
        };
        let Some(host) = url.host_str() else {
            return false;
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let Some(port) = url.port().or_else(|| default_port(url.scheme())) else {
            return false;
        };
        self.allows(url.scheme(), host, port)
    }

    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        self.allowed.iter().any(|a| a.allows(scheme, host, port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(entries: &[&str]) -> OutboundPolicy {
        OutboundPolicy::parse(entries.iter().copied()).unwrap()
    }

    #[test]
    fn exact_host_and_default_port() {
        let p = policy(&["redis://127.0.0.1:6400", "https://sms.example.com"]);
        assert!(p.allows_url("redis://127.0.0.1:6400"));
        assert!(p.allows_url("redis://127.0.0.1:6400/0"));
        assert!(!p.allows_url("redis://127.0.0.1:6401"));
        assert!(!p.allows_url("rediss://127.0.0.1:6400"));
        assert!(p.allows_url("https://sms.example.com/send"));
        assert!(p.allows_url("https://SMS.example.com:443/send"));
        assert!(!p.allows_url("http://sms.example.com/send"));
        assert!(!p.allows_url("https://evil.com/send"));
    }

    #[test]
    fn wildcards_and_ranges() {
        let p = policy(&["*://*.example.com:8000..8011", "http://localhost:*"]);
        assert!(p.allows_url("http://a.example.com:8005/"));
        assert!(p.allows_url("redis://b.example.com:8000"));
        assert!(!p.allows_url("http://example.com:8005/"));
        assert!(!p.allows_url("http://a.example.com:8011/"));
        assert!(p.allows_url("http://localhost:1234/x"));
        assert!(policy(&["*://*:*"]).allows_url("https://anything:1/"));
    }

    #[test]
    fn ipv6_hosts() {
        let p = policy(&["redis://[::1]:7000"]);
        assert!(p.allows_url("redis://[::1]:7000"));
        assert!(!p.allows_url("redis://[::2]:7000"));
    }

    #[test]
    fn rejects_paths_and_missing_parts() {
        for bad in [
            "example.com",
            "https://example.com/sms",
            "foo://x",
            "rediss://x",
            "http://:80",
            "http://a*b.com",
            "http://x:9..9",
        ] {
            assert!(AllowedHost::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn empty_entries_allow_nothing() {
        let p = policy(&["", "  ", "https://"]);
        assert!(!p.allows_url("http://localhost/"));
        assert!(!policy(&[]).allows_url("redis://127.0.0.1"));
    }
}
