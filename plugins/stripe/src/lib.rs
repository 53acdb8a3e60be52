//! Placeholder: the Stripe plugin is being written.

use psp_plugin_sdk::types::*;
use psp_plugin_sdk::{CONTRACT_VERSION, Plugin};

/// The Stripe plugin.
pub struct Stripe;

impl Plugin for Stripe {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "stripe".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            contract: CONTRACT_VERSION.into(),
            operations: vec![],
            settings: vec![],
        }
    }
}

psp_plugin_sdk::export_plugin!(Stripe);
