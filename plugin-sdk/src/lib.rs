//! The guest SDK for psp-gateway plugins: one crate per payment service provider, compiled to a
//! WebAssembly component (`wasm32-wasip2`) that the host loads from its plugins directory.
//!
//! A plugin is a type implementing [`Plugin`], exported with [`export_plugin!`]:
//!
//! ```
//! use psp_plugin_sdk::types::*;
//! use psp_plugin_sdk::{Plugin, CONTRACT_VERSION};
//!
//! struct Acme;
//!
//! impl Plugin for Acme {
//!     fn info() -> PluginInfo {
//!         PluginInfo {
//!             name: "acme".into(),
//!             version: env!("CARGO_PKG_VERSION").into(),
//!             contract: CONTRACT_VERSION.into(),
//!             operations: vec![Operation::Authorize],
//!             settings: vec![],
//!         }
//!     }
//!
//!     fn authorize(req: AuthorizeRequest) -> Result<Outcome, Failure> {
//!         Ok(Outcome::approved(format!("acme_{}", req.idempotency_key), req.amount.amount_cents))
//!     }
//! }
//!
//! psp_plugin_sdk::export_plugin!(Acme);
//! ```
//!
//! The plugin's only windows to the world are [`http`], [`settings`], [`log`] and [`cache`]; in
//! a native build (unit tests) they talk to a [`testing::Harness`] instead of the host.
#![warn(missing_docs)]

// Lets the generated bindings and the exported macros name this crate by one path, both from
// inside the SDK and from plugin crates (which do not depend on wit-bindgen themselves).
extern crate self as psp_plugin_sdk;

#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

pub mod cache;
pub mod crypto;
mod export;
mod form;
mod host;
pub mod http;
pub mod log;
mod plugin;
pub mod settings;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;
pub mod types;

pub use plugin::Plugin;

/// The version of the WIT contract (`psp:plugin@0.2.0`) this SDK implements; report it as
/// [`PluginInfo::contract`](types::PluginInfo::contract).
pub const CONTRACT_VERSION: &str = "0.2.0";

/// Bindings generated from `wit/0.2/plugin.wit`. Plugin authors use [`types`], [`Plugin`] and
/// [`export_plugin!`] instead; this module is public only for the export macro.
#[doc(hidden)]
#[allow(missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "plugin",
        path: "wit/0.2",
        pub_export_macro: true,
        export_macro_name: "__export_plugin_world",
        default_bindings_module: "psp_plugin_sdk::bindings",
        runtime_path: "psp_plugin_sdk::__wit_bindgen::rt",
        additional_derives: [PartialEq, Eq],
        generate_all,
    });
}
