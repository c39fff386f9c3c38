//! {{name}}: a templating plugin. `{{var}}` in a template is replaced by
//! the variable's value; an unknown variable is an error naming it (or,
//! with `"missing": "keep"`, left as written).
//!
//! Config: `{"missing": "error"}` (or `"keep"`); a field it does not know
//! is refused when the plugin is bound.

use engage_plugin_sdk::{Param, PluginError, host};
use serde::Deserialize;

#[derive(Deserialize, Default, PartialEq)]
#[serde(rename_all = "snake_case")]
enum Missing {
    #[default]
    Error,
    Keep,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct Config {
    missing: Missing,
}

struct Plugin;

impl engage_plugin_sdk::templating::Guest for Plugin {
    fn render(template: String, vars: Vec<Param>) -> Result<String, PluginError> {
        let config: Config = host::config()?;
        let mut out = String::with_capacity(template.len());
        let mut rest = template.as_str();
        while let Some(start) = rest.find("{{") {
            out.push_str(&rest[..start]);
            let Some(len) = rest[start + 2..].find("}}") else {
                out.push_str(&rest[start..]);
                return Ok(out);
            };
            let name = rest[start + 2..start + 2 + len].trim();
            match engage_plugin_sdk::param(&vars, name) {
                Some(value) => out.push_str(value),
                None if config.missing == Missing::Keep => {
                    out.push_str(&rest[start..start + 4 + len]);
                }
                None => {
                    return Err(PluginError::new(
                        "missing-variable",
                        format!("the template uses `{name}`, which the message does not give"),
                    ));
                }
            }
            rest = &rest[start + 4 + len..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

engage_plugin_sdk::export_templating!(Plugin, config = Config);
