//! The default templating plugin: `{{ name }}` substitution with filters.
//!
//! Syntax: `{{ var }}`, `{{ var | filter | filter:arg }}`. Filters: `upper`,
//! `lower`, `trim`, `truncate:N` (characters), `default:TEXT`. A literal
//! `{{` is written `{{{{`.
//!
//! Binding config (JSON, every field optional):
//! - `missing`: what a variable that was not supplied renders as: `"error"`
//!   (default; the message is not sent), `"empty"`, or `"keep"` (the
//!   placeholder stays as written).
//! - `escape`: `"none"` (default, right for SMS and Viber) or `"html"`.

use engage_plugin_sdk::{Param, PluginError, host, param};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize, PartialEq, Eq, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum Missing {
    #[default]
    Error,
    Empty,
    Keep,
}

#[derive(Debug, Default, Deserialize, PartialEq, Eq, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum Escape {
    #[default]
    None,
    Html,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub missing: Missing,
    pub escape: Escape,
}

/// Render `template` with `vars` under `config`.
pub fn render(template: &str, vars: &[Param], config: &Config) -> Result<String, PluginError> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        if let Some(literal) = after.strip_prefix("{{") {
            out.push_str("{{");
            rest = literal;
            continue;
        }
        let Some(end) = after.find("}}") else {
            return Err(PluginError::new(
                "unclosed-placeholder",
                format!("a `{{{{` at byte {start} has no closing `}}}}`"),
            ));
        };
        let placeholder = &rest[start..start + 2 + end + 2];
        out.push_str(&expand(&after[..end], placeholder, vars, config)?);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn expand(
    inner: &str,
    placeholder: &str,
    vars: &[Param],
    config: &Config,
) -> Result<String, PluginError> {
    let mut parts = inner.split('|').map(str::trim);
    let name = parts.next().unwrap_or_default();
    if name.is_empty() {
        return Err(PluginError::new(
            "empty-placeholder",
            format!("`{placeholder}` names no variable"),
        ));
    }
    let mut value = param(vars, name).map(str::to_owned);
    for filter in parts {
        let (filter, arg) = match filter.split_once(':') {
            Some((f, a)) => (f.trim(), Some(a.trim())),
            None => (filter, None),
        };
        value = match (filter, value) {
            ("default", None) => Some(arg.unwrap_or_default().trim_matches('"').to_owned()),
            ("default", v) => v,
            (_, None) => None,
            ("upper", Some(v)) => Some(v.to_uppercase()),
            ("lower", Some(v)) => Some(v.to_lowercase()),
            ("trim", Some(v)) => Some(v.trim().to_owned()),
            ("truncate", Some(v)) => {
                let n: usize = arg.and_then(|a| a.parse().ok()).ok_or_else(|| {
                    PluginError::new(
                        "bad-filter",
                        format!("`truncate` in `{placeholder}` needs a number, e.g. truncate:20"),
                    )
                })?;
                Some(v.chars().take(n).collect())
            }
            (other, _) => {
                return Err(PluginError::new(
                    "unknown-filter",
                    format!(
                        "`{other}` in `{placeholder}` is not a filter (upper, lower, trim, truncate:N, default:TEXT)"
                    ),
                ));
            }
        };
    }
    match value {
        Some(v) => Ok(escape(&v, config.escape)),
        None => match config.missing {
            Missing::Error => Err(PluginError::new(
                "missing-variable",
                format!("the template uses `{name}` but no such variable was supplied"),
            )),
            Missing::Empty => Ok(String::new()),
            Missing::Keep => Ok(placeholder.to_owned()),
        },
    }
}

fn escape(value: &str, escape: Escape) -> String {
    match escape {
        Escape::None => value.to_owned(),
        Escape::Html => {
            let mut out = String::with_capacity(value.len());
            for c in value.chars() {
                match c {
                    '&' => out.push_str("&amp;"),
                    '<' => out.push_str("&lt;"),
                    '>' => out.push_str("&gt;"),
                    '"' => out.push_str("&quot;"),
                    '\'' => out.push_str("&#39;"),
                    c => out.push(c),
                }
            }
            out
        }
    }
}

struct Template;

impl engage_plugin_sdk::templating::Guest for Template {
    fn render(template: String, vars: Vec<Param>) -> Result<String, PluginError> {
        let config: Config = host::config()?;
        render(&template, &vars, &config)
    }
}

engage_plugin_sdk::export_templating!(Template, config = Config);

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<Param> {
        pairs.iter().map(|(n, v)| Param::new(*n, *v)).collect()
    }

    #[test]
    fn substitutes_the_seed_coupon_template() {
        let out = render(
            "Congratulation, here is your coupon code: {{code}}.",
            &vars(&[("code", "8830644924")]),
            &Config::default(),
        );
        assert_eq!(
            out.unwrap(),
            "Congratulation, here is your coupon code: 8830644924."
        );
        let spaced = render("{{ code }}", &vars(&[("code", "x")]), &Config::default());
        assert_eq!(spaced.unwrap(), "x");
    }

    #[test]
    fn missing_variable_policies() {
        let none = vars(&[]);
        let err = render("a {{x}} b", &none, &Config::default()).unwrap_err();
        assert_eq!(err.code, "missing-variable");
        let empty = Config {
            missing: Missing::Empty,
            ..Config::default()
        };
        assert_eq!(render("a {{x}} b", &none, &empty).unwrap(), "a  b");
        let keep = Config {
            missing: Missing::Keep,
            ..Config::default()
        };
        assert_eq!(render("a {{ x }} b", &none, &keep).unwrap(), "a {{ x }} b");
    }

    #[test]
    fn filters_and_literals() {
        let v = vars(&[("name", "  Ana María  ")]);
        let c = Config::default();
        assert_eq!(
            render("{{ name | trim | upper }}", &v, &c).unwrap(),
            "ANA MARÍA"
        );
        assert_eq!(render("{{name|trim|truncate:3}}", &v, &c).unwrap(), "Ana");
        assert_eq!(
            render("{{ who | default:friend }}", &v, &c).unwrap(),
            "friend"
        );
        assert_eq!(render("{{{{x}}", &v, &c).unwrap(), "{{x}}");
        assert_eq!(
            render("{{ name | shout }}", &v, &c).unwrap_err().code,
            "unknown-filter"
        );
        assert_eq!(
            render("oops {{ name", &v, &c).unwrap_err().code,
            "unclosed-placeholder"
        );
    }

    #[test]
    fn html_escaping_and_special_characters() {
        let v = vars(&[("q", "<b>\"it's\" & more</b>")]);
        let plain = render("{{q}}", &v, &Config::default()).unwrap();
        assert_eq!(plain, "<b>\"it's\" & more</b>");
        let html = Config {
            escape: Escape::Html,
            ..Config::default()
        };
        assert_eq!(
            render("{{q}}", &v, &html).unwrap(),
            "&lt;b&gt;&quot;it&#39;s&quot; &amp; more&lt;/b&gt;"
        );
    }

    #[test]
    fn config_rejects_unknown_fields() {
        assert!(host::parse_config::<Config>(r#"{"missing":"keep"}"#).is_ok());
        assert_eq!(
            host::parse_config::<Config>(r#"{"mising":"keep"}"#)
                .unwrap_err()
                .code,
            "bad-config"
        );
        assert!(host::parse_config::<Config>("").is_ok());
    }
}
