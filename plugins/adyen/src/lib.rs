//! Placeholder: the Adyen plugin is being written.

use psp_plugin_sdk::types::*;
use psp_plugin_sdk::{CONTRACT_VERSION, Plugin};

/// The Adyen plugin.
pub struct Adyen;

impl Plugin for Adyen {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "adyen".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            contract: CONTRACT_VERSION.into(),
            operations: vec![],
            settings: vec![],
        }
    }
}

psp_plugin_sdk::export_plugin!(Adyen);
