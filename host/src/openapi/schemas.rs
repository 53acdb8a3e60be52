//! The answer and request shapes the OpenAPI document names. Handlers build most of their
//! answers as JSON values; these types say what those values hold, and the schemathesis
//! run in the test suite checks every answer against them, so a handler that drifts from
//! its schema fails a test.

#![allow(dead_code)]

use utoipa::ToSchema;

/// An operator route's refusal.
#[derive(ToSchema)]
pub struct AdminError {
    pub error: String,
}

#[derive(ToSchema)]
pub struct Readiness {
    pub ready: bool,
    /// SIGTERM received: finishing what was started, taking nothing new.
    pub draining: bool,
    pub store: serde_json::Value,
    pub plugins_loaded: u64,
}

#[derive(ToSchema)]
pub struct PluginList {
    pub plugins: Vec<PluginFile>,
}

/// A plugin file as the registry sees it: loaded, failed to load, or both (the last good
/// version still serving after a bad one was dropped in).
#[derive(ToSchema)]
pub struct PluginFile {
    pub name: String,
    pub loaded: Option<LoadedPlugin>,
    pub last_error: Option<LoadFailure>,
}

#[derive(ToSchema)]
pub struct LoadedPlugin {
    pub plugin_name: String,
    pub version: String,
    pub contract: String,
    pub operations: Vec<String>,
    pub content_hash: String,
    #[schema(format = DateTime)]
    pub loaded_at: String,
    /// `compiled` now, or read from the artifact cache.
    pub source: String,
    pub load_ms: u64,
}

#[derive(ToSchema)]
pub struct LoadFailure {
    pub message: String,
    pub content_hash: String,
    #[schema(format = DateTime)]
    pub at: String,
}

#[derive(ToSchema)]
pub struct TransactionList {
    pub transactions: Vec<TransactionRow>,
}

/// A transaction as an operator reads it (never its PSP payload or replay data).
#[derive(ToSchema)]
pub struct TransactionRow {
    pub id: String,
    pub gateway: String,
    pub front: String,
    pub action: String,
    pub status: String,
    pub transaction_token: String,
    pub action_id: Option<String>,
    pub amount_cents: i64,
    pub currency: String,
    pub error_code: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    pub next_check_at: Option<i64>,
    pub checks: i64,
    pub escalated_at: Option<i64>,
}

#[derive(ToSchema)]
pub struct CallbackList {
    pub callbacks: Vec<CallbackRow>,
    #[schema(format = DateTime)]
    pub as_of: String,
}

/// A callback to the platform, without its headers or body (so never a signature).
#[derive(ToSchema)]
pub struct CallbackRow {
    pub id: i64,
    pub gateway: String,
    pub url: String,
    pub action_id: Option<String>,
    /// `waiting`, `delivered` or `dead`.
    pub state: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    pub delivered_at: Option<String>,
    pub dead_at: Option<String>,
}

#[derive(ToSchema)]
pub struct Replayed {
    pub id: i64,
    pub state: String,
}

/// A plugin operation called directly by an operator (`/admin/gateways/.../call/...`).
#[derive(ToSchema)]
pub struct DiagnosticCall {
    pub amount_cents: Option<i64>,
    /// Three letters; EUR when absent.
    pub currency: Option<String>,
    pub payment_source_token: Option<String>,
    pub transaction_token: Option<String>,
    pub psp_reference: Option<String>,
    pub reference: Option<String>,
    /// For `sync` and `complete`: the operation of the transaction (authorize by default).
    pub sync_operation: Option<String>,
    /// For `capture`: whether it is the last capture of the authorization.
    pub final_capture: Option<bool>,
    /// For `capture`: its number among the authorization's captures (1 by default).
    pub sequence: Option<i64>,
    /// For `complete`: the parameters the shopper's return carried.
    pub return_parameters: Option<std::collections::BTreeMap<String, String>>,
    /// For `complete`: what the PSP's client SDK produced, as JSON text.
    pub details_json: Option<String>,
}

/// What the plugin answered, or why it could not be called.
#[derive(ToSchema)]
pub struct DiagnosticAnswer {
    /// `approved`, `declined`, `pending`, `error`, ...
    pub result: String,
}

/// Commerce Layer's answer shape: `success` with `data`, or `success: false` with `error`.
#[derive(ToSchema)]
pub struct ClAnswer {
    pub success: bool,
    pub data: Option<serde_json::Value>,
    pub error: Option<ClErrorDetail>,
}

#[derive(ToSchema)]
pub struct ClErrorDetail {
    pub code: String,
    pub message: String,
}

/// A Commerce Layer external gateway request: a JSON:API document whose `data` is the
/// resource acted on (an order, an authorization, a capture) with `included` resources.
#[derive(ToSchema)]
pub struct ClDocument {
    pub data: serde_json::Value,
    pub included: Option<Vec<serde_json::Value>>,
}

/// PGM's answer: `result` (`OK`, `KO`, `PENDING`, `REDIRECT_TO_URL`) with the fields of
/// the call that was made.
#[derive(ToSchema)]
#[allow(non_snake_case)]
pub struct PgmAnswer {
    pub result: Option<String>,
    pub resultDescription: Option<String>,
    pub paymentId: Option<String>,
    pub redirectToUrl: Option<String>,
}

/// The admin page's sign-in form.
#[derive(ToSchema)]
pub struct SignIn {
    pub token: String,
}
