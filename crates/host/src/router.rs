//! Routing requests to components with Spin's semantics: `:name` captures a
//! segment, a trailing `/...` matches the rest of the path (and the prefix
//! itself), an exact route beats a wildcard and the longest prefix wins.
//! Matching is done by `routefinder`, as in Spin, on the raw path.

use anyhow::Context;

use crate::manifest::RouteDecl;

/// What a route leads to, with the route's spellings Spin reports in its
/// request headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTarget {
    pub component: String,
    /// The route exactly as written in the manifest, e.g. `/api/...`.
    pub raw: String,
    /// The route with a leading `/` and without one trailing `/`; the root
    /// route `/` becomes the empty string (Spin's `spin-matched-route`).
    pub based: String,
    /// The raw route without its `/...` suffix (`spin-component-route`).
    pub prefix: String,
    pub wildcard: bool,
}

#[derive(Debug)]
pub struct Router {
    inner: routefinder::Router<RouteTarget>,
    routes: Vec<RouteTarget>,
}

/// The outcome of routing one path.
#[derive(Debug, PartialEq, Eq)]
pub struct RouteMatch<'a> {
    pub target: &'a RouteTarget,
    /// `:name` captures, in route order.
    pub captures: Vec<(String, String)>,
    /// What `/...` matched, with a leading `/`; empty for exact routes.
    pub path_info: String,
}

impl Router {
    /// Builds the router. As in Spin, when the same route is declared twice
    /// the later declaration wins and the earlier one is reported.
    pub fn new(decls: &[RouteDecl]) -> anyhow::Result<Self> {
        let mut routes: Vec<RouteTarget> = Vec::new();
        for decl in decls {
            let raw = decl.route.clone();
            if let Some(i) = routes.iter().position(|r| r.raw == raw) {
                let earlier = routes.remove(i);
                eprintln!(
                    "warning: route {raw} of component `{}` is declared again for `{}` and will never be used",
                    earlier.component, decl.component
                );
            }
            let absolute = if raw.starts_with('/') {
                raw.clone()
            } else {
                format!("/{raw}")
            };
            let based = absolute.strip_suffix('/').unwrap_or(&absolute).to_string();
            let wildcard = based.ends_with("/...");
            let prefix = raw.strip_suffix("/...").unwrap_or(&raw).to_string();
            routes.push(RouteTarget {
                component: decl.component.clone(),
                raw,
                based,
                prefix,
                wildcard,
            });
        }
        let mut inner = routefinder::Router::new();
        for target in &routes {
            let spec = match target.based.strip_suffix("/...") {
                Some(prefix) => format!("{prefix}/*"),
                None if target.based.is_empty() => "/".to_string(),
                None => target.based.clone(),
            };
            inner
                .add(spec.as_str(), target.clone())
                .map_err(|e| anyhow::anyhow!(e))
                .with_context(|| {
                    format!(
                        "invalid route `{}` of component `{}`",
                        target.raw, target.component
                    )
                })?;
        }
        Ok(Self { inner, routes })
    }

    /// Routes in declaration order, for the start-up listing.
    pub fn routes(&self) -> &[RouteTarget] {
        &self.routes
    }

    pub fn route(&self, path: &str) -> Option<RouteMatch<'_>> {
        let m = self.inner.best_match(path)?;
        let target = m.handler();
        let captures = m.captures();
        let path_info = if target.wildcard {
            let rest = captures.wildcard().unwrap_or_default();
            let trailing = if path.ends_with('/') { "/" } else { "" };
            match rest {
                "" => trailing.to_string(),
                rest => format!("/{rest}{trailing}"),
            }
        } else {
            String::new()
        };
        Some(RouteMatch {
            target,
            captures: captures
                .params()
                .iter()
                .map(|c| (c.name().to_string(), c.value().to_string()))
                .collect(),
            path_info,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(routes: &[(&str, &str)]) -> Router {
        let decls: Vec<RouteDecl> = routes
            .iter()
            .map(|(r, c)| RouteDecl {
                route: r.to_string(),
                component: c.to_string(),
            })
            .collect();
        Router::new(&decls).unwrap()
    }

    #[test]
    fn exact_beats_wildcard_and_longest_prefix_wins() {
        let r = router(&[
            ("/...", "fallback"),
            ("/api/...", "api"),
            ("/api/health", "health"),
            ("/api/vouchers/me", "mine"),
            ("/api/vouchers/:id", "catalog"),
            ("/api/vouchers/:id/orders", "buy"),
        ]);
        let component = |path| r.route(path).unwrap().target.component.clone();
        assert_eq!(component("/api/health"), "health");
        assert_eq!(component("/api/other"), "api");
        assert_eq!(component("/api"), "api");
        assert_eq!(component("/elsewhere"), "fallback");
        assert_eq!(component("/"), "fallback");
        assert_eq!(component("/api/vouchers/7"), "catalog");
        assert_eq!(component("/api/vouchers/me"), "mine");
        let buy = r.route("/api/vouchers/42/orders").unwrap();
        assert_eq!(buy.target.component, "buy");
        assert_eq!(buy.captures, vec![("id".to_string(), "42".to_string())]);
        assert_eq!(buy.path_info, "");
    }

    #[test]
    fn wildcard_matches_its_prefix_and_reports_path_info() {
        let r = router(&[("/static/...", "files")]);
        let info = |path| r.route(path).unwrap().path_info;
        assert_eq!(info("/static/a/b.css"), "/a/b.css");
        assert_eq!(info("/static"), "");
        assert_eq!(info("/static/"), "/");
        assert_eq!(info("/static/a/"), "/a/");
        let m = r.route("/static/x").unwrap();
        assert_eq!(m.target.based, "/static/...");
        assert_eq!(m.target.prefix, "/static");
        assert!(r.route("/staticx").is_none());
        assert!(r.route("/").is_none());
    }

    #[test]
    fn root_route_spellings() {
        let r = router(&[("/", "root")]);
        let m = r.route("/").unwrap();
        assert_eq!(m.target.based, "");
        assert!(r.route("/x").is_none());
    }

    #[test]
    fn a_repeated_route_goes_to_the_later_declaration() {
        let r = router(&[("/a", "x"), ("/a", "y")]);
        assert_eq!(r.route("/a").unwrap().target.component, "y");
        assert_eq!(r.routes().len(), 1);
    }
}
