//! What Spin 4.0.2 checks when it loads an app, before it serves a request or
//! even reads a component's Wasm:
//! - every `allowed_outbound_hosts` entry parses; an entry with `{{ name }}`
//!   templates is resolved with the variables' *defaults* and must parse
//!   then, whatever the environment will later say. An entry naming a
//!   variable without a default (`required = true`) is checked only once it
//!   has a value, at start-up (`resolve_allowed_hosts`).
//! - every template is well formed, and a component variable names only
//!   declared application variables.
//!
//! The error chain reads as Spin's: `Failed to load component `x``,
//! ``allowed_outbound_hosts` is malformed`, `using default variable value(s)
//! with template ... results in invalid config ...`, then the parse error.

use std::collections::BTreeMap;

use anyhow::{Context, bail};

use crate::manifest::{ComponentDecl, Manifest, VariableDecl};
use crate::outbound::{AllowedHost, OutboundPolicy};
use crate::template::Template;
use crate::variables::AppVariables;

/// Checks `manifest` as Spin's loader does.
pub fn check(manifest: &Manifest) -> anyhow::Result<()> {
    if manifest.routes.is_empty()
        && manifest.private_components.is_empty()
        && manifest.redis_triggers.is_empty()
    {
        bail!("No triggers in app");
    }
    for (id, component) in &manifest.components {
        check_component(&manifest.variables, component)
            .with_context(|| format!("Failed to load component `{id}`"))?;
    }
    Ok(())
}

fn check_component(
    declared: &BTreeMap<String, VariableDecl>,
    component: &ComponentDecl,
) -> anyhow::Result<()> {
    check_allowed_hosts(declared, &component.allowed_outbound_hosts)
        .context("`allowed_outbound_hosts` is malformed")?;
    for (name, text) in &component.variables {
        let template = Template::parse(text).with_context(|| format!("variable `{name}`"))?;
        if let Some(unknown) = template.variables().find(|v| !declared.contains_key(*v)) {
            bail!("variable `{name}`: invalid variable template: unknown variable {unknown:?}");
        }
    }
    Ok(())
}

fn check_allowed_hosts(
    declared: &BTreeMap<String, VariableDecl>,
    entries: &[String],
) -> anyhow::Result<()> {
    if let [only] = entries
        && only == "insecure:allow-all"
    {
        // The same refusal, worded once, in the policy parser.
        OutboundPolicy::parse(entries)?;
    }
    let default = |name: &str| declared.get(name)?.default.as_deref();
    for entry in entries {
        let template = Template::parse(entry)?;
        if template.is_literal() {
            AllowedHost::parse(entry)?;
            continue;
        }
        // Without a default for every name there is nothing to check yet.
        let Some(resolved) = template.render(default) else {
            continue;
        };
        AllowedHost::parse(&resolved).with_context(|| {
            format!(
                "using default variable value(s) with template {:?} results in invalid config {resolved:?}",
                template.to_string()
            )
        })?;
    }
    Ok(())
}

/// A component's `allowed_outbound_hosts` with the variables' values in
/// force. Spin finds a bad value only when the component first reaches out,
/// and then fails every outbound call of that instance; refusing to start
/// says the same thing sooner.
pub fn resolve_allowed_hosts(
    variables: &AppVariables,
    component: &ComponentDecl,
) -> anyhow::Result<OutboundPolicy> {
    let mut resolved = Vec::with_capacity(component.allowed_outbound_hosts.len());
    for entry in &component.allowed_outbound_hosts {
        let value = variables.expand(entry)?;
        // Spin reads `user:password@` as part of the host and refuses it;
        // say so without printing the password.
        if crate::log::without_credentials(&value) != value {
            bail!(
                "`allowed_outbound_hosts` is malformed: {entry:?} resolves to a URL with credentials, which Spin refuses as a host; keep credentials out of variables used in allowed_outbound_hosts"
            );
        }
        // Each entry alone first, so the error names the one at fault.
        AllowedHost::parse(&value)
            .with_context(|| format!("{entry:?} is {value:?} with the variables' values"))
            .context("`allowed_outbound_hosts` is malformed")?;
        resolved.push(value);
    }
    OutboundPolicy::parse(&resolved).context("`allowed_outbound_hosts` is malformed")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn app(variables: &str, hosts: &str) -> String {
        format!(
            r#"
spin_manifest_version = 2
[application]
name = "t"
[variables]
{variables}
[[trigger.http]]
route = "/..."
component = "api"
[component.api]
source = "api.wasm"
allowed_outbound_hosts = {hosts}
"#
        )
    }

    fn check_text(text: &str) -> anyhow::Result<()> {
        check(&Manifest::parse(text, PathBuf::from("/app")).unwrap())
    }

    fn chain(text: &str) -> String {
        format!("{:#}", check_text(text).unwrap_err())
    }

    #[test]
    fn a_default_that_makes_an_invalid_host_is_refused_with_spins_words() {
        let err = chain(&app(r#"gw = { default = "" }"#, r#"["{{ gw }}"]"#));
        assert!(err.starts_with("Failed to load component `api`: `allowed_outbound_hosts` is malformed: using default variable value(s) with template \"{{ gw }}\" results in invalid config \"\": \"\" is not an allowed outbound host format"), "{err}");
        let err = chain(&app(
            r#"invalid_default_host = { default = "invalid host" }"#,
            r#"["https://{{ invalid_default_host }}"]"#,
        ));
        assert!(err.contains("results in invalid config \"https://invalid host\": Invalid allowed host \"invalid host\""), "{err}");
    }

    #[test]
    fn required_variables_are_not_checked_at_load() {
        check_text(&app(r#"gw = { required = true }"#, r#"["{{ gw }}"]"#)).unwrap();
        check_text(&app(
            r#"gw = { default = "https://sms.example.com" }"#,
            r#"["{{ gw }}"]"#,
        ))
        .unwrap();
        // Parts of a host may come from variables.
        check_text(&app(
            r#"prefix = { default = "127.0.0.0" }
len = { default = "24" }"#,
            r#"["*://{{ prefix }}/{{ len }}:7"]"#,
        ))
        .unwrap();
    }

    #[test]
    fn an_app_needs_a_trigger() {
        let text = app("", "[]").replace(
            "[[trigger.http]]\nroute = \"/...\"\ncomponent = \"api\"\n",
            "[trigger]\n",
        );
        assert_eq!(chain(&text), "No triggers in app");
    }

    #[test]
    fn literal_entries_are_checked_too() {
        let err = chain(&app("", r#"["https://example.com/sms"]"#));
        assert!(err.contains("must not include a path"), "{err}");
        let err = chain(&app("", r#"["insecure:allow-all"]"#));
        assert!(err.contains("'insecure:allow-all' is not allowed"), "{err}");
        let err = chain(&app("", r#"["{{ gw "]"#));
        assert!(err.contains("unmatched '{{' in template"), "{err}");
    }

    #[test]
    fn component_variables_name_declared_variables() {
        let text = app("", "[]") + "[component.api.variables]\nkey = \"{{ nope }}\"\n";
        let err = chain(&text);
        assert!(
            err.contains("invalid variable template: unknown variable \"nope\""),
            "{err}"
        );
    }

    #[test]
    fn the_projects_own_manifests_load() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        for path in ["spin.toml", "tests/fixtures/spin.toml"] {
            let manifest = Manifest::load(&root.join(path)).unwrap();
            check(&manifest).unwrap_or_else(|e| panic!("{path}: {e:#}"));
        }
    }

    #[test]
    fn values_in_force_must_make_valid_hosts() {
        let text = app(r#"gw = { required = true }"#, r#"["{{ gw }}"]"#);
        let manifest = Manifest::parse(&text, PathBuf::from("/app")).unwrap();
        let resolve = |value: &str| {
            let value = value.to_string();
            let vars =
                AppVariables::resolve(&manifest, &BTreeMap::new(), move |_| Some(value.clone()))
                    .unwrap();
            resolve_allowed_hosts(&vars, &manifest.components["api"])
        };
        assert!(resolve("https://sms.example.com").is_ok());
        let err = format!("{:#}", resolve("").unwrap_err());
        assert!(
            err.contains("\"{{ gw }}\" is \"\" with the variables' values"),
            "{err}"
        );
        assert!(
            err.contains("is not an allowed outbound host format"),
            "{err}"
        );
        let err = format!("{:#}", resolve("https://u:pw@sms.example.com").unwrap_err());
        assert!(
            !err.contains("pw") && err.contains("with credentials"),
            "{err}"
        );
    }
}
