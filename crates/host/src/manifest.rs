//! Reading `spin.toml` (manifest version 2) by Spin 4.0.2's schema: the same
//! fields, the same identifier rules and the same refusals of unknown keys.
//! Features of the format this host does not implement (key-value stores
//! other than `default`,
//! files, remote sources, triggers other than HTTP and Redis...) are refused
//! with a message naming them instead of being silently ignored. What Spin checks only when
//! it loads the app (outbound hosts, templates) is in `loader`.

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
    /// Components of `route = { private = true }` triggers: loaded and
    /// checked like the others, reached by no route.
    pub private_components: Vec<String>,
    pub components: BTreeMap<String, ComponentDecl>,
    /// `[application.trigger.redis] address`: the Redis that
    /// `[[trigger.redis]]` entries without an address of their own
    /// subscribe to (a template).
    pub redis_address: Option<String>,
    pub redis_triggers: Vec<RedisTriggerDecl>,
}

/// One `[[trigger.redis]]` entry: messages on `channel` of the Redis at
/// `address` (or the application's) run `component`. Both may be templates.
#[derive(Debug, Clone)]
pub struct RedisTriggerDecl {
    pub component: String,
    pub channel: String,
    pub address: Option<String>,
}

/// An application variable from `[variables]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariableDecl {
    #[serde(default)]
    #[allow(dead_code, reason = "part of the format; no behaviour depends on it")]
    pub description: Option<String>,
    #[serde(default)]
    pub default: Option<String>,
    #[serde(default)]
    pub required: bool,
    /// Nothing in the host prints variable values, secret or not; with the
    /// embedded Redis, required secrets get random values.
    #[serde(default)]
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
    /// Labels of the key-value stores the component may open.
    pub key_value_stores: Vec<String>,
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

// The raw shapes follow Spin 4.0.2's manifest schema field for field, with
// unknown fields refused at every level where Spin refuses them. Fields Spin
// knows but this host does not implement are parsed and then refused by
// `Manifest::parse` with a message naming them, never silently ignored.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    spin_manifest_version: toml::Value,
    application: RawApplication,
    #[serde(default)]
    variables: BTreeMap<LowerSnakeId, VariableDecl>,
    trigger: BTreeMap<String, Vec<RawTrigger>>,
    #[serde(default)]
    component: BTreeMap<KebabId, RawComponent>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(
    dead_code,
    reason = "descriptive fields: the format has them, the host does not use them"
)]
struct RawApplication {
    name: String,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    authors: Vec<String>,
    #[serde(default)]
    targets: Vec<toml::Value>,
    /// Per-trigger-type settings, e.g. `[application.trigger.http] base`.
    #[serde(default)]
    trigger: BTreeMap<String, toml::Table>,
    #[serde(default)]
    tool: BTreeMap<String, toml::Table>,
}

#[derive(Deserialize)]
struct RawTrigger {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    component: Option<toml::Value>,
    #[serde(default)]
    components: Option<toml::Table>,
    /// The rest is the trigger type's own configuration.
    #[serde(flatten)]
    config: toml::Table,
}

/// `[[trigger.redis]]` beyond `id` and `component`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRedisTriggerConfig {
    channel: String,
    #[serde(default)]
    address: Option<String>,
}

/// `[application.trigger.redis]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRedisSettings {
    address: String,
}

/// `[[trigger.http]]` beyond `id`, `component` and `components`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttpTriggerConfig {
    route: toml::Value,
    #[serde(default)]
    static_response: Option<toml::Value>,
    #[serde(default)]
    executor: Option<toml::Table>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(
    dead_code,
    reason = "descriptive fields: the format has them, the host does not use them"
)]
struct RawComponent {
    source: toml::Value,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    variables: BTreeMap<LowerSnakeId, String>,
    #[serde(default)]
    environment: BTreeMap<String, String>,
    #[serde(default)]
    files: Vec<toml::Value>,
    #[serde(default)]
    exclude_files: Vec<String>,
    #[serde(default)]
    allowed_http_hosts: Vec<String>,
    #[serde(default)]
    allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    key_value_stores: Vec<String>,
    #[serde(default)]
    sqlite_databases: Vec<String>,
    #[serde(default)]
    ai_models: Vec<String>,
    #[serde(default)]
    targets: Option<Vec<toml::Value>>,
    #[serde(default)]
    build: Option<BuildDecl>,
    #[serde(default)]
    tool: BTreeMap<String, toml::Table>,
    #[serde(default)]
    dependencies_inherit_configuration: Option<bool>,
    #[serde(default)]
    dependencies: toml::Table,
    #[serde(default)]
    profile: toml::Table,
}

impl RawComponent {
    /// Spin features this host does not implement, by manifest key.
    fn unsupported(&self) -> Vec<&'static str> {
        [
            ("files", !self.files.is_empty()),
            ("exclude_files", !self.exclude_files.is_empty()),
            ("allowed_http_hosts", !self.allowed_http_hosts.is_empty()),
            ("sqlite_databases", !self.sqlite_databases.is_empty()),
            ("ai_models", !self.ai_models.is_empty()),
            ("dependencies", !self.dependencies.is_empty()),
            ("profile", !self.profile.is_empty()),
        ]
        .into_iter()
        .filter_map(|(key, used)| used.then_some(key))
        .collect()
    }
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
        Self::parse(&text, dir).with_context(|| {
            format!(
                "Failed to read Spin app manifest from {:?}",
                path.display().to_string()
            )
        })
    }

    pub fn parse(text: &str, dir: PathBuf) -> anyhow::Result<Self> {
        let version: VersionProbe = toml::from_str(text)?;
        match version.spin_manifest_version.as_integer() {
            Some(2) => {}
            _ if version.spin_manifest_version.as_str() == Some("1") => bail!(
                "manifest version 1 is not supported by flashspin; convert it with `spin doctor` or write version 2"
            ),
            _ => bail!(
                "invalid manifest version: {:?}",
                version.spin_manifest_version.to_string()
            ),
        }
        let raw: RawManifest = toml::from_str(text)?;
        let _ = raw.spin_manifest_version;
        for (name, decl) in &raw.variables {
            if decl.required == decl.default.is_some() {
                bail!(
                    "variable `{}` must be `required` OR have a `default`",
                    name.0
                );
            }
        }
        let mut redis_address = None;
        for (kind, settings) in &raw.application.trigger {
            if kind == "redis" {
                let settings: RawRedisSettings = settings
                    .clone()
                    .try_into()
                    .map_err(|e| anyhow::anyhow!("invalid metadata value for \"redis\": {e}"))?;
                redis_address = Some(settings.address);
                continue;
            }
            let base = settings.get("base").map(|b| b.as_str().ok_or(b));
            match (kind.as_str(), base) {
                ("http", None | Some(Ok("/"))) if settings.keys().all(|k| k == "base") => {}
                ("http", Some(Err(other))) => {
                    bail!("invalid type: {other} for `base`, expected a string")
                }
                ("http", Some(Ok(_))) => bail!(
                    "This application is using the deprecated trigger 'base' field. The base must be prepended to each [[trigger.http]]'s 'route'."
                ),
                _ => bail!("flashspin does not support `[application.trigger.{kind}]` settings"),
            }
        }
        let mut components = BTreeMap::new();
        for (KebabId(id), c) in raw.component {
            if let Some(key) = c.unsupported().first() {
                bail!(
                    "component `{id}` uses `{key}`, which flashspin does not support (see docs/HOST.md)"
                );
            }
            let source = match &c.source {
                toml::Value::String(s) => dir.join(s),
                _ => bail!(
                    "component `{id}`: flashspin runs only local files; a remote or registry `source` is not supported"
                ),
            };
            // Without runtime configuration Spin defines one store.
            if let Some(label) = c.key_value_stores.iter().find(|l| *l != "default") {
                bail!("unknown key_value_stores label {label:?} for component {id:?}");
            }
            if let Some(workdir) = c.build.as_ref().and_then(|b| b.workdir.as_ref())
                && workdir.is_absolute()
            {
                bail!("component `{id}`: the build workdir must be relative");
            }
            components.insert(
                id.clone(),
                ComponentDecl {
                    id,
                    source,
                    allowed_outbound_hosts: c.allowed_outbound_hosts,
                    variables: c.variables.into_iter().map(|(k, v)| (k.0, v)).collect(),
                    environment: c.environment,
                    key_value_stores: c.key_value_stores,
                    build: c.build,
                },
            );
        }
        let mut routes = Vec::new();
        let mut private_components = Vec::new();
        let mut redis_triggers = Vec::new();
        for (kind, triggers) in raw.trigger {
            if kind == "redis" {
                for t in triggers {
                    redis_triggers.push(redis_trigger(t, &components)?);
                }
                continue;
            }
            if kind != "http" {
                bail!(
                    "flashspin serves only HTTP and Redis triggers; `[[trigger.{kind}]]` is not supported"
                );
            }
            for t in triggers {
                match http_trigger(t, &components)? {
                    Trigger::Routed(route) => routes.push(route),
                    Trigger::Private(component) => private_components.push(component),
                }
            }
        }
        Ok(Manifest {
            dir,
            variables: raw.variables.into_iter().map(|(k, v)| (k.0, v)).collect(),
            routes,
            private_components,
            components,
            redis_address,
            redis_triggers,
        })
    }

    /// Components that Redis triggers name, each once.
    pub fn redis_components(&self) -> impl Iterator<Item = &ComponentDecl> {
        let mut seen = std::collections::BTreeSet::new();
        self.redis_triggers
            .iter()
            .map(|t| t.component.as_str())
            .filter(move |id| seen.insert(*id))
            .map(|id| &self.components[id])
    }

    /// Components that triggers name, routed ones first in the order their
    /// routes are declared, then private ones; each once.
    pub fn triggered_components(&self) -> impl Iterator<Item = &ComponentDecl> {
        let mut seen = std::collections::BTreeSet::new();
        self.routes
            .iter()
            .map(|r| r.component.as_str())
            .chain(self.private_components.iter().map(String::as_str))
            .filter(move |id| seen.insert(*id))
            .map(|id| &self.components[id])
    }
}

#[derive(Deserialize)]
struct VersionProbe {
    spin_manifest_version: toml::Value,
}

/// One `[[trigger.redis]]`.
fn redis_trigger(
    t: RawTrigger,
    components: &BTreeMap<String, ComponentDecl>,
) -> anyhow::Result<RedisTriggerDecl> {
    let name = t.id.clone().unwrap_or_default();
    if t.components.is_some() {
        bail!("trigger {name:?}: flashspin does not support `components` on Redis triggers");
    }
    let component = match t.component {
        Some(toml::Value::String(id)) => id,
        Some(_) => bail!(
            "flashspin does not support inline components in triggers; declare `[component.<id>]` and name it"
        ),
        None => bail!("trigger {name:?} names no component"),
    };
    if !components.contains_key(&component) {
        bail!("trigger {name:?} names component `{component}`, which is not defined");
    }
    let config: RawRedisTriggerConfig = t
        .config
        .try_into()
        .with_context(|| format!("Redis trigger for `{component}`"))?;
    Ok(RedisTriggerDecl {
        component,
        channel: config.channel,
        address: config.address,
    })
}

/// One `[[trigger.http]]`.
enum Trigger {
    Routed(RouteDecl),
    /// `route = { private = true }`: the component, reached by no route.
    Private(String),
}

fn http_trigger(
    t: RawTrigger,
    components: &BTreeMap<String, ComponentDecl>,
) -> anyhow::Result<Trigger> {
    let name = t.id.clone().unwrap_or_default();
    let config: RawHttpTriggerConfig = t.config.try_into()?;
    if t.components.is_some_and(|c| !c.is_empty()) {
        bail!("trigger {name:?}: flashspin does not support `components` on HTTP triggers");
    }
    let component = match (t.component, config.static_response) {
        (None, None) => {
            bail!("Triggers must specify either component or static_response - {name} has neither")
        }
        (Some(_), Some(_)) => {
            bail!("Triggers must specify either component or static_response - {name} has both")
        }
        (None, Some(_)) => bail!("flashspin does not support `static_response` triggers"),
        (Some(toml::Value::String(id)), None) => {
            KebabId::try_from(id.clone()).map_err(anyhow::Error::msg)?;
            id
        }
        (Some(_), None) => bail!(
            "flashspin does not support inline components in triggers; declare `[component.<id>]` and name it"
        ),
    };
    if let Some(executor) = config.executor
        && executor.get("type").and_then(toml::Value::as_str) != Some("http")
        && executor.get("type").and_then(toml::Value::as_str) != Some("spin")
    {
        bail!("component `{component}`: only the default (`http`) executor is supported");
    }
    if !components.contains_key(&component) {
        bail!("trigger {name:?} names component `{component}`, which is not defined");
    }
    let route = match config.route {
        toml::Value::String(route) => route,
        toml::Value::Table(t) if t.len() == 1 && t.get("private").is_some() => {
            match t["private"].as_bool() {
                Some(true) => return Ok(Trigger::Private(component)),
                _ => bail!(
                    "route must be a string pattern or '{{ private = true }}': '{component}' has {{ private = false }}"
                ),
            }
        }
        other => bail!("trigger for `{component}`: invalid route {other}"),
    };
    Ok(Trigger::Routed(RouteDecl { route, component }))
}

/// A component id: `-`-separated words of ASCII letters and digits, each
/// starting with a letter and all lower or all upper case (Spin's `KebabId`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
struct KebabId(String);

impl TryFrom<String> for KebabId {
    type Error = String;
    fn try_from(id: String) -> Result<Self, String> {
        check_id(&id, '-', false)?;
        Ok(Self(id))
    }
}

/// A variable name: `_`-separated lower-case words (Spin's `LowerSnakeId`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
struct LowerSnakeId(String);

impl TryFrom<String> for LowerSnakeId {
    type Error = String;
    fn try_from(id: String) -> Result<Self, String> {
        check_id(&id, '_', true)?;
        Ok(Self(id))
    }
}

/// Spin's identifier rule, with its messages.
fn check_id(id: &str, delim: char, lower_only: bool) -> Result<(), String> {
    if id.is_empty() {
        return Err("empty".into());
    }
    let wrong = if delim == '_' { '-' } else { '_' };
    if id.contains(wrong) {
        return Err(format!(
            "words must be separated with {delim:?}, not {wrong:?}"
        ));
    }
    for word in id.split(delim) {
        let mut chars = word.chars();
        let Some(first) = chars.next() else {
            return Err(format!("{delim:?}-separated words must not be empty"));
        };
        if !first.is_ascii_alphabetic() {
            return Err(format!(
                "{delim:?}-separated words must start with an ASCII letter; got {first:?}"
            ));
        }
        let upper = first.is_ascii_uppercase();
        for ch in chars {
            if !ch.is_ascii_alphanumeric() {
                return Err(format!(
                    "{delim:?}-separated words may only contain alphanumeric ASCII; got {ch:?}"
                ));
            }
            if !ch.is_ascii_digit() && ch.is_ascii_uppercase() != upper {
                return Err(format!(
                    "{delim:?}-separated words must be all lowercase or all UPPERCASE; got {word:?}"
                ));
            }
        }
        if lower_only && upper {
            return Err(format!(
                "Lower-case identifiers must be all lowercase; got {id:?}"
            ));
        }
    }
    Ok(())
}

/// The rule Spin applies to a name a guest passes to `variables.get`:
/// lower-case ASCII letters, digits and underscores, starting with a letter,
/// ending with a letter or digit, no double underscore.
pub fn check_variable_name(name: &str) -> anyhow::Result<()> {
    let reason = if name.is_empty() {
        "must not be empty"
    } else if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        "Variable names may contain only lower-case letters, numbers, and underscores."
    } else if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        "must start with a lowercase ASCII letter"
    } else if !name.ends_with(|c: char| c.is_ascii_alphanumeric()) {
        "must end with a lowercase ASCII letter or digit"
    } else if name.contains("__") {
        "must not contain multiple consecutive underscores"
    } else {
        return Ok(());
    };
    bail!("invalid variable name: {name:?}: {reason}")
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

    fn parse_err(text: &str) -> String {
        format!(
            "{:#}",
            Manifest::parse(text, PathBuf::from("/app")).unwrap_err()
        )
    }

    #[test]
    fn unknown_keys_are_refused_at_every_level() {
        for (from, to) in [
            ("name = \"demo\"", "name = \"demo\"\nnmae = \"x\""),
            ("[variables]", "typo = 1\n[variables]"),
            ("{ required = true }", "{ required = true, secrte = true }"),
            ("component = \"api\"", "component = \"api\"\nrotue = \"/x\""),
            (
                "source = \"api.wasm\"",
                "source = \"api.wasm\"\nallowed_outbound_host = []",
            ),
            ("command = \"make\"", "command = \"make\"\nwatchh = []"),
        ] {
            let err = parse_err(&APP.replace(from, to));
            assert!(err.contains("unknown field"), "{to}: {err}");
        }
    }

    #[test]
    fn identifiers_follow_spins_rules() {
        let err = parse_err(&APP.replace("component.api", "component.api_x"));
        assert!(
            err.contains("words must be separated with '-', not '_'"),
            "{err}"
        );
        let err = parse_err(&APP.replace("admin_key = {", "\"bad+name\" = {"));
        assert!(
            err.contains("may only contain alphanumeric ASCII; got '+'"),
            "{err}"
        );
        let err = parse_err(&APP.replace("admin_key = {", "admin_2 = {"));
        assert!(
            err.contains("must start with an ASCII letter; got '2'"),
            "{err}"
        );
        let err = parse_err(&APP.replace("component = \"api\"", "component = \"1-2-3\""));
        assert!(
            err.contains("must start with an ASCII letter; got '1'"),
            "{err}"
        );
    }

    #[test]
    fn the_manifest_version_must_be_2() {
        let err = parse_err(&APP.replace("spin_manifest_version = 2", "spin_manifest_version = 7"));
        assert!(err.contains("invalid manifest version: \"7\""), "{err}");
        let err = parse_err("");
        assert!(
            err.contains("missing field `spin_manifest_version`"),
            "{err}"
        );
    }

    #[test]
    fn redis_triggers_read_as_spin_reads_them() {
        let app = format!(
            "{APP}\n[application.trigger.redis]\naddress = \"redis://{{{{ host }}}}:6379\"\n\n\
             [[trigger.redis]]\ncomponent = \"api\"\nchannel = \"orders\"\n\n\
             [[trigger.redis]]\ncomponent = \"api\"\nchannel = \"{{{{ c }}}}\"\naddress = \"redis://other\"\n"
        );
        let m = Manifest::parse(&app, PathBuf::from("/app")).unwrap();
        assert_eq!(m.redis_address.as_deref(), Some("redis://{{ host }}:6379"));
        assert_eq!(m.redis_triggers.len(), 2);
        assert_eq!(m.redis_triggers[0].channel, "orders");
        assert_eq!(m.redis_triggers[0].address, None);
        assert_eq!(
            m.redis_triggers[1].address.as_deref(),
            Some("redis://other")
        );
        assert_eq!(m.redis_components().count(), 1);
        for (extra, wanted) in [
            (
                "[[trigger.redis]]\ncomponent = \"api\"\n",
                "missing field `channel`",
            ),
            (
                "[[trigger.redis]]\ncomponent = \"api\"\nchannel = \"x\"\nroute = \"/\"\n",
                "unknown field `route`",
            ),
            (
                "[[trigger.redis]]\ncomponent = \"nope\"\nchannel = \"x\"\n",
                "not defined",
            ),
        ] {
            let err = parse_err(&format!("{APP}\n{extra}"));
            assert!(err.contains(wanted), "{extra}: {err}");
        }
    }

    #[test]
    fn triggers_are_required() {
        let text = APP.replace(
            "[[trigger.http]]\nroute = \"/api/...\"\ncomponent = \"api\"\n",
            "",
        );
        assert!(parse_err(&text).contains("missing field `trigger`"));
    }

    #[test]
    fn features_this_host_lacks_are_named() {
        for (line, named) in [
            ("sqlite_databases = [\"default\"]", "sqlite_databases"),
            ("files = [\"static/**\"]", "files"),
            (
                "allowed_http_hosts = [\"example.com\"]",
                "allowed_http_hosts",
            ),
        ] {
            let err = parse_err(&APP.replace(
                "source = \"api.wasm\"",
                &format!("source = \"api.wasm\"\n{line}"),
            ));
            assert!(
                err.contains(named) && err.contains("does not support"),
                "{err}"
            );
        }
        let err = parse_err(&format!(
            "{APP}\n[[trigger.cron]]\ncomponent = \"api\"\ncron_expression = \"x\"\n"
        ));
        assert!(err.contains("`[[trigger.cron]]` is not supported"), "{err}");
        let err = parse_err(&APP.replace(
            "component = \"api\"",
            "static_response = { status_code = 200 }",
        ));
        assert!(err.contains("static_response"), "{err}");
    }

    #[test]
    fn only_the_default_key_value_store_is_known() {
        let with = |stores: &str| {
            APP.replace(
                "source = \"api.wasm\"",
                &format!("source = \"api.wasm\"\nkey_value_stores = {stores}"),
            )
        };
        let manifest = Manifest::parse(&with("[\"default\"]"), PathBuf::from("/app")).unwrap();
        assert_eq!(manifest.components["api"].key_value_stores, ["default"]);
        let err = parse_err(&with("[\"default\", \"cache\"]"));
        assert!(
            err.contains("unknown key_value_stores label \"cache\" for component \"api\""),
            "{err}"
        );
    }

    #[test]
    fn private_routes_are_not_served() {
        let text = APP.replace("route = \"/api/...\"", "route = { private = true }");
        assert!(
            Manifest::parse(&text, PathBuf::from("/app"))
                .unwrap()
                .routes
                .is_empty()
        );
        let text = APP.replace("route = \"/api/...\"", "route = { private = false }");
        assert!(
            parse_err(&text).contains("route must be a string pattern or '{ private = true }'")
        );
    }

    #[test]
    fn a_non_default_base_is_refused() {
        let text = APP.replace(
            "name = \"demo\"",
            "name = \"demo\"\n[application.trigger.http]\nbase = \"/app\"",
        );
        assert!(parse_err(&text).contains("deprecated trigger 'base' field"));
        let text = APP.replace(
            "name = \"demo\"",
            "name = \"demo\"\n[application.trigger.http]\nbase = \"/\"",
        );
        Manifest::parse(&text, PathBuf::from("/app")).unwrap();
        let text = APP.replace(
            "name = \"demo\"",
            "name = \"demo\"\n[application.trigger.http]\nbase = 1",
        );
        assert!(parse_err(&text).contains("for `base`, expected a string"));
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
