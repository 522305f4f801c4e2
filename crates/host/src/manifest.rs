//! Reading `spin.toml` (manifest version 2): the subset of Spin's format this
//! host understands. Anything it does not support is rejected with a message
//! instead of being silently ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

/// A parsed and checked manifest, with paths resolved against its folder.
#[derive(Debug)]
pub struct Manifest {
    /// Folder holding `spin.toml`; relative paths in it start here.
    pub dir: PathBuf,
    pub variables: BTreeMap<String, VariableDecl>,
    pub routes: Vec<RouteDecl>,
    pub components: BTreeMap<String, ComponentDecl>,
}

/// An application variable from `[variables]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariableDecl {
    #[serde(default)]
    pub default: Option<String>,
    #[serde(default)]
    pub required: bool,
    /// Nothing in the host prints variable values, secret or not.
    #[serde(default)]
    #[allow(dead_code, reason = "part of the format; no behaviour depends on it")]
    pub secret: bool,
}

/// One `[[trigger.http]]` entry.
#[derive(Debug, Clone)]
pub struct RouteDecl {
    /// The route exactly as written, e.g. `/api/vouchers/:id/orders`.
    pub route: String,
    pub component: String,
}

#[derive(Debug, Clone)]
pub struct ComponentDecl {
    pub id: String,
    /// Absolute path of the component's `.wasm`.
    pub source: PathBuf,
    /// Entries of `allowed_outbound_hosts`, templates not yet expanded.
    pub allowed_outbound_hosts: Vec<String>,
    /// Component variables: name to template.
    pub variables: BTreeMap<String, String>,
    pub environment: BTreeMap<String, String>,
    pub build: Option<BuildDecl>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildDecl {
    pub command: Commands,
    /// Relative to the manifest's folder.
    #[serde(default)]
    pub workdir: Option<PathBuf>,
    /// Globs for `spin watch`; accepted and not used here.
    #[serde(default)]
    #[allow(dead_code, reason = "only `spin watch` uses it")]
    pub watch: Vec<String>,
}

/// A build command: one shell command or several run in order.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Commands {
    One(String),
    Many(Vec<String>),
}

impl Commands {
    pub fn as_slice(&self) -> &[String] {
        match self {
            Commands::One(c) => std::slice::from_ref(c),
            Commands::Many(cs) => cs,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    spin_manifest_version: u32,
    #[allow(dead_code, reason = "checked for shape only")]
    application: RawApplication,
    #[serde(default)]
    variables: BTreeMap<String, VariableDecl>,
    #[serde(default)]
    trigger: RawTriggers,
    #[serde(default)]
    component: BTreeMap<String, RawComponent>,
}

#[derive(Deserialize)]
struct RawApplication {
    #[allow(
        dead_code,
        reason = "required by the format; the host does not print it"
    )]
    name: String,
}

#[derive(Deserialize, Default)]
struct RawTriggers {
    #[serde(default)]
    http: Vec<RawHttpTrigger>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttpTrigger {
    route: String,
    component: String,
    #[serde(default)]
    executor: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawComponent {
    source: toml::Value,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    variables: BTreeMap<String, String>,
    #[serde(default)]
    environment: BTreeMap<String, String>,
    #[serde(default)]
    build: Option<BuildDecl>,
}

impl Manifest {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read manifest {}", path.display()))?;
        let dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        let dir = dir
            .canonicalize()
            .with_context(|| format!("cannot resolve {}", dir.display()))?;
        Self::parse(&text, dir).with_context(|| format!("invalid manifest {}", path.display()))
    }

    pub fn parse(text: &str, dir: PathBuf) -> anyhow::Result<Self> {
        let raw: RawManifest = toml::from_str(text)?;
        if raw.spin_manifest_version != 2 {
            bail!(
                "spin_manifest_version {} is not supported; use 2",
                raw.spin_manifest_version
            );
        }
        for (name, decl) in &raw.variables {
            check_variable_name(name)?;
            if decl.required == decl.default.is_some() {
                bail!("variable `{name}` must be `required` OR have a `default`");
            }
        }
        let mut components = BTreeMap::new();
        for (id, c) in raw.component {
            let _ = c.description;
            let source = match &c.source {
                toml::Value::String(s) => dir.join(s),
                _ => bail!("component `{id}`: only a local file path is supported as `source`"),
            };
            if let Some(workdir) = c.build.as_ref().and_then(|b| b.workdir.as_ref())
                && workdir.is_absolute()
            {
                bail!("component `{id}`: the build workdir must be relative");
            }
            for name in c.variables.keys() {
                check_variable_name(name).with_context(|| format!("component `{id}` variables"))?;
            }
            components.insert(
                id.clone(),
                ComponentDecl {
                    id,
                    source,
                    allowed_outbound_hosts: c.allowed_outbound_hosts,
                    variables: c.variables,
                    environment: c.environment,
                    build: c.build,
                },
            );
        }
        let mut routes = Vec::new();
        for t in raw.trigger.http {
            if t.executor.is_some() {
                bail!(
                    "route `{}`: only the default (Spin) executor is supported",
                    t.route
                );
            }
            if !components.contains_key(&t.component) {
                bail!(
                    "route `{}` names component `{}`, which is not defined",
                    t.route,
                    t.component
                );
            }
            routes.push(RouteDecl {
                route: t.route,
                component: t.component,
            });
        }
        Ok(Manifest {
            dir,
            variables: raw.variables,
            routes,
            components,
        })
    }

    /// Components in the order their routes are declared, each once.
    pub fn routed_components(&self) -> impl Iterator<Item = &ComponentDecl> {
        let mut seen = std::collections::BTreeSet::new();
        self.routes
            .iter()
            .filter(move |r| seen.insert(r.component.as_str()))
            .map(|r| &self.components[&r.component])
    }
}

/// Spin's rule for variable names: lower-case ASCII letters, digits and
/// underscores, starting with a letter, no double or trailing underscore.
pub fn check_variable_name(name: &str) -> anyhow::Result<()> {
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.contains("__")
        && !name.ends_with('_');
    if valid {
        Ok(())
    } else {
        bail!(
            "invalid variable name `{name}`: use lower-case letters, digits and single underscores, starting with a letter"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: &str = r#"
spin_manifest_version = 2
[application]
name = "demo"
[variables]
redis_address = { required = true }
admin_key = { default = "", secret = true }
[[trigger.http]]
route = "/api/..."
component = "api"
[component.api]
source = "api.wasm"
allowed_outbound_hosts = ["{{ redis_address }}"]
[component.api.variables]
redis_address = "{{ redis_address }}"
[component.api.build]
command = "make"
"#;

    #[test]
    fn parses_a_v2_manifest() {
        let m = Manifest::parse(APP, PathBuf::from("/app")).unwrap();
        assert!(m.variables["redis_address"].required);
        assert!(m.variables["admin_key"].secret);
        assert_eq!(m.routes[0].route, "/api/...");
        let api = &m.components["api"];
        assert_eq!(api.source, PathBuf::from("/app/api.wasm"));
        assert_eq!(api.variables["redis_address"], "{{ redis_address }}");
        assert_eq!(api.build.as_ref().unwrap().command.as_slice(), ["make"]);
    }

    #[test]
    fn rejects_a_route_to_an_unknown_component() {
        let text = APP.replace("component = \"api\"", "component = \"nope\"");
        let err = Manifest::parse(&text, PathBuf::from("/app")).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[test]
    fn a_variable_is_required_or_has_a_default() {
        for decl in ["{ }", "{ required = true, default = \"x\" }"] {
            let text = APP.replace("{ required = true }", decl);
            assert!(
                Manifest::parse(&text, PathBuf::from("/app")).is_err(),
                "{decl}"
            );
        }
    }

    #[test]
    fn build_command_may_be_a_list() {
        let text = APP.replace("command = \"make\"", "command = [\"a\", \"b\"]");
        let m = Manifest::parse(&text, PathBuf::from("/app")).unwrap();
        let build = m.components["api"].build.clone().unwrap();
        assert_eq!(build.command.as_slice(), ["a", "b"]);
    }

    #[test]
    fn rejects_bad_variable_names() {
        for bad in ["Admin", "1x", "a__b", "a_", "a-b", ""] {
            assert!(check_variable_name(bad).is_err(), "{bad}");
        }
        check_variable_name("rate_limit_ip2").unwrap();
    }
}
