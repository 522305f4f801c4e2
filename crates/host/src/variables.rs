//! Spin variables: resolving application variables from their providers and
//! expanding `{{ name }}` templates in component variables and
//! `allowed_outbound_hosts`.
//!
//! Providers, first match wins: values the host itself supplies (the embedded
//! Redis's address and password, the secrets it makes up), then
//! `SPIN_VARIABLE_<NAME>` environment variables, then the manifest default.
//! Every variable is required or has a default, so once start-up succeeds
//! every template has a value.

use std::collections::BTreeMap;

use anyhow::{Context, bail};

use crate::template::Template;

use crate::manifest::{Manifest, check_variable_name};

/// Resolved application variables.
#[derive(Debug, Clone)]
pub struct AppVariables {
    values: BTreeMap<String, String>,
}

/// The environment variable Spin reads for an application variable.
pub fn env_name(variable: &str) -> String {
    format!("SPIN_VARIABLE_{}", variable.to_ascii_uppercase())
}

impl AppVariables {
    /// Resolves every variable of `manifest`; `supplied` are values the host
    /// provides itself and `env` looks up environment variables. A required
    /// variable without a value stops start-up, naming every missing one.
    pub fn resolve(
        manifest: &Manifest,
        supplied: &BTreeMap<String, String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Self> {
        let mut values = BTreeMap::new();
        let mut missing = Vec::new();
        for (name, decl) in &manifest.variables {
            let value = supplied
                .get(name)
                .cloned()
                .or_else(|| env(&env_name(name)))
                .or_else(|| decl.default.clone());
            match value {
                Some(value) => {
                    values.insert(name.clone(), value);
                }
                None => missing.push(format!("{name} (set {})", env_name(name))),
            }
        }
        if !missing.is_empty() {
            bail!(
                "no provider resolved required variable(s): {}",
                missing.join(", ")
            );
        }
        Ok(Self { values })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// Expands every `{{ name }}` in `text`; a reference to an undeclared
    /// variable is an error.
    pub fn expand(&self, text: &str) -> anyhow::Result<String> {
        let template = Template::parse(text)?;
        if let Some(unknown) = template.variables().find(|name| self.get(name).is_none()) {
            bail!("invalid variable template: unknown variable {unknown:?}");
        }
        Ok(template
            .render(|name| self.get(name))
            .expect("every name was just found"))
    }
}

/// A component's variables as the guest sees them through
/// `fermyon:spin/variables.get`.
#[derive(Debug, Clone, Default)]
pub struct ComponentVariables {
    component: String,
    values: BTreeMap<String, String>,
}

/// Why `variables.get` failed, mirroring the WIT error cases.
#[derive(Debug, PartialEq, Eq)]
pub enum LookupError {
    InvalidName(String),
    Undefined(String),
}

impl ComponentVariables {
    pub fn resolve(
        component: &str,
        app: &AppVariables,
        templates: &BTreeMap<String, String>,
    ) -> anyhow::Result<Self> {
        let mut values = BTreeMap::new();
        for (name, template) in templates {
            let value = app
                .expand(template)
                .with_context(|| format!("variable `{name}`"))?;
            values.insert(name.clone(), value);
        }
        Ok(Self {
            component: component.to_string(),
            values,
        })
    }

    pub fn get(&self, name: &str) -> Result<String, LookupError> {
        if let Err(e) = check_variable_name(name) {
            return Err(LookupError::InvalidName(e.to_string()));
        }
        self.values.get(name).cloned().ok_or_else(|| {
            LookupError::Undefined(format!("no variable for {:?}.{:?}", self.component, name))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn manifest() -> Manifest {
        Manifest::parse(
            r#"
spin_manifest_version = 2
[application]
name = "t"
[variables]
redis_address = { required = true }
limit = { default = "50/1" }
[trigger]
"#,
            PathBuf::from("/"),
        )
        .unwrap()
    }

    #[test]
    fn supplied_beats_env_and_env_beats_default() {
        let env = |k: &str| match k {
            "SPIN_VARIABLE_LIMIT" => Some("5/1".to_string()),
            "SPIN_VARIABLE_REDIS_ADDRESS" => Some("redis://env".to_string()),
            _ => None,
        };
        let supplied = BTreeMap::from([("redis_address".into(), "redis://mine".into())]);
        let vars = AppVariables::resolve(&manifest(), &supplied, env).unwrap();
        assert_eq!(vars.get("limit"), Some("5/1"));
        assert_eq!(vars.get("redis_address"), Some("redis://mine"));
        let vars = AppVariables::resolve(&manifest(), &BTreeMap::new(), env).unwrap();
        assert_eq!(vars.get("redis_address"), Some("redis://env"));
    }

    #[test]
    fn missing_required_variable_is_named() {
        let err = AppVariables::resolve(&manifest(), &BTreeMap::new(), |_| None).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("redis_address"), "{msg}");
        assert!(msg.contains("SPIN_VARIABLE_REDIS_ADDRESS"), "{msg}");
    }

    #[test]
    fn templates_expand_and_components_see_only_their_variables() {
        let vars = AppVariables::resolve(&manifest(), &BTreeMap::new(), |k| {
            (k == "SPIN_VARIABLE_REDIS_ADDRESS").then(|| "redis://h:1".to_string())
        })
        .unwrap();
        assert_eq!(
            vars.expand("x{{ redis_address }}y{{limit}}").unwrap(),
            "xredis://h:1y50/1"
        );
        assert!(vars.expand("{{ nope }}").is_err());
        assert!(vars.expand("{{ limit").is_err());

        let templates = BTreeMap::from([("addr".to_string(), "{{ redis_address }}".to_string())]);
        let c = ComponentVariables::resolve("api", &vars, &templates).unwrap();
        assert_eq!(c.get("addr").unwrap(), "redis://h:1");
        assert!(matches!(c.get("limit"), Err(LookupError::Undefined(_))));
        assert!(matches!(
            c.get("Bad-Name"),
            Err(LookupError::InvalidName(_))
        ));
    }
}
