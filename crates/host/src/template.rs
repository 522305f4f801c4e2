//! `{{ name }}` templates, as Spin's expressions crate reads them: literal
//! text and expressions in double braces, the name trimmed of spaces. An
//! opening `{{` without its `}}` is an error; nothing is escaped.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Variable(String),
}

#[derive(Debug, PartialEq, Eq)]
pub struct TemplateError;

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid variable template: unmatched '{{' in template")
    }
}

impl std::error::Error for TemplateError {}

impl Template {
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix("{{") {
                let (name, tail) = after.split_once("}}").ok_or(TemplateError)?;
                parts.push(Part::Variable(name.trim().to_string()));
                rest = tail;
            } else {
                let end = rest.find("{{").unwrap_or(rest.len());
                parts.push(Part::Literal(rest[..end].to_string()));
                rest = &rest[end..];
            }
        }
        Ok(Self { parts })
    }

    pub fn is_literal(&self) -> bool {
        self.variables().next().is_none()
    }

    /// The names the template refers to, in order, repeats included.
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Variable(name) => Some(name.as_str()),
            Part::Literal(_) => None,
        })
    }

    /// The text with every name replaced by `value(name)`; `None` when a
    /// name has no value.
    pub fn render<'a>(&self, value: impl Fn(&str) -> Option<&'a str>) -> Option<String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Variable(name) => out.push_str(value(name)?),
            }
        }
        Some(out)
    }
}

/// Written back with `{{ name }}` spacing, as Spin quotes templates in errors.
impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in &self.parts {
            match part {
                Part::Literal(text) => f.write_str(text)?,
                Part::Variable(name) => write!(f, "{{{{ {name} }}}}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_literals_and_names() {
        let t = Template::parse("x{{ a }}-{{b}}{{ a}}").unwrap();
        assert_eq!(t.variables().collect::<Vec<_>>(), ["a", "b", "a"]);
        assert_eq!(t.to_string(), "x{{ a }}-{{ b }}{{ a }}");
        let values = |n: &str| match n {
            "a" => Some("1"),
            "b" => Some("2"),
            _ => None,
        };
        assert_eq!(t.render(values).unwrap(), "x1-21");
        assert!(Template::parse("{{ c }}").unwrap().render(values).is_none());
        assert!(Template::parse("plain").unwrap().is_literal());
        assert!(Template::parse("").unwrap().is_literal());
    }

    #[test]
    fn an_unclosed_expression_is_an_error() {
        assert_eq!(Template::parse("{{ a }} {{ b"), Err(TemplateError));
        // A lone closing brace pair is literal text, as in Spin.
        assert!(Template::parse("a }} b").unwrap().is_literal());
    }
}
