//! Checks that need the plugins: every gateway's plugin is loaded and gets exactly the
//! settings it declares (required ones present, none unknown).

use crate::config::Config;
use crate::plugins::Plugins;

/// One thing wrong with a gateway, worded for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
    /// The plugin is absent or broken (hot reload may still fix it), as opposed to a
    /// mistake in the config itself.
    pub plugin_missing: bool,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "key `{}`: {}", self.key, self.message)
    }
}

pub fn gateways(config: &Config, plugins: &Plugins) -> Vec<Problem> {
    let registry = plugins.registry();
    let errors = registry.errors();
    let mut problems = Vec::new();
    for (i, gw) in config.gateways.iter().enumerate() {
        let Some(plugin) = registry.get(&gw.plugin) else {
            let path = registry.dir().join(format!("{}.wasm", gw.plugin));
            let why = match errors.get(&gw.plugin) {
                Some(e) => format!("{} failed to load: {}", path.display(), e.message),
                None => format!("{} does not exist", path.display()),
            };
            problems.push(Problem {
                key: format!("gateways[{i}].plugin"),
                message: format!("gateway `{}` uses plugin `{}`, but {why}", gw.id, gw.plugin),
                plugin_missing: true,
            });
            continue;
        };
        for spec in &plugin.info.settings {
            let value = gw.settings.get(&spec.name);
            if spec.required && value.is_none_or(|v| v.expose().is_empty()) {
                problems.push(Problem {
                    key: format!("gateways[{i}].settings.{}", spec.name),
                    message: format!(
                        "plugin `{}` requires setting `{}` ({})",
                        gw.plugin, spec.name, spec.description
                    ),
                    plugin_missing: false,
                });
            }
        }
        for name in gw.settings.keys() {
            if !plugin.info.settings.iter().any(|s| &s.name == name) {
                let known: Vec<&str> = plugin
                    .info
                    .settings
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect();
                problems.push(Problem {
                    key: format!("gateways[{i}].settings.{name}"),
                    message: format!(
                        "plugin `{}` has no setting `{name}` (it knows: {})",
                        gw.plugin,
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ),
                    plugin_missing: false,
                });
            }
        }
    }
    problems
}
