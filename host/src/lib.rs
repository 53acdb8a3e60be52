//! psp-gateway: one host for payment gateway protocols (Commerce Layer, Mia-Platform PGM)
//! over PSP adapters that run as sandboxed WebAssembly components.

pub mod admin_callbacks;
pub mod admin_page;
pub mod app;
pub mod check;
pub mod config;
pub mod diagnostics;
pub mod openapi;
pub mod ops;
pub mod outbox;
pub mod payments;
pub mod plugins;
pub mod protocol;
pub mod psp_webhooks;
pub mod redact;
pub mod scaffold;
pub mod serve;
pub mod shopper_return;
pub mod signature;
pub mod store;
pub mod telemetry;
