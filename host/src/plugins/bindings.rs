//! Host-side bindings generated from the one WIT contract in `plugin-sdk/wit`.

wasmtime::component::bindgen!({
    world: "plugin",
    path: "../plugin-sdk/wit",
    imports: { default: async },
    exports: { default: async },
    // Plugin requests are stored (as JSON) until their outcome is known, to re-send them.
    additional_derives: [serde::Serialize, serde::Deserialize],
});

pub use exports::psp::plugin::adapter::Guest as Adapter;
pub use psp::plugin::types;

/// The contract version this host speaks; a plugin must report the same major.minor.
pub const CONTRACT_VERSION: &str = "0.1.0";
/// The contract's exported interface (of `CONTRACT_VERSION`), under which every operation
/// is found.
pub const ADAPTER_EXPORT: &str = "psp:plugin/adapter@0.1.0";

/// The WIT name of an operation, as reported on the admin endpoint and in errors.
pub fn operation_name(op: types::Operation) -> &'static str {
    use types::Operation as Op;
    match op {
        Op::Authorize => "authorize",
        Op::Capture => "capture",
        Op::Void => "void",
        Op::Refund => "refund",
        Op::Tokenize => "tokenize",
        Op::Sale => "sale",
        Op::Sync => "sync",
        Op::HandleWebhook => "handle-webhook",
    }
}
