//! Host-side bindings, one module per contract version: the latest (`psp:plugin@0.2.0`,
//! generated here) is the one the host works in; `since_v0_1` links plugins built against
//! 0.1 and converts their requests and answers to and from it. A component's version is
//! read from its exports before it is linked (`ContractVersion::of`), so each plugin is
//! linked and called through exactly one adapter.

pub mod since_v0_1;

use wasmtime::Engine;
use wasmtime::component::Component;

wasmtime::component::bindgen!({
    world: "plugin",
    path: "../plugin-sdk/wit/0.2",
    imports: { default: async },
    exports: { default: async },
    // Plugin requests are stored (as JSON) until their outcome is known, to re-send them;
    // results carry shopper actions, compared in tests.
    additional_derives: [serde::Serialize, serde::Deserialize, PartialEq, Eq],
});

pub use exports::psp::plugin::adapter::Guest as Adapter;
pub use psp::plugin::types;

/// The newest contract version this host speaks.
pub const CONTRACT_VERSION: &str = "0.2.0";
/// The latest contract's exported interface, under which every operation is found.
pub const ADAPTER_EXPORT: &str = "psp:plugin/adapter@0.2.0";

impl types::CaptureRequest {
    /// A capture of what `f` names, at its place among the authorization's captures.
    pub fn of(f: types::FollowUpRequest, final_capture: bool, sequence: u32) -> Self {
        types::CaptureRequest {
            idempotency_key: f.idempotency_key,
            amount: f.amount,
            transaction_token: f.transaction_token,
            psp_reference: f.psp_reference,
            reference: f.reference,
            order: f.order,
            final_capture,
            sequence,
        }
    }
}

/// The contract versions the host loads plugins of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContractVersion {
    V0_1,
    V0_2,
}

impl ContractVersion {
    /// The version whose adapter interface the component exports, if any the host knows.
    pub fn of(component: &Component, engine: &Engine) -> Option<ContractVersion> {
        let ty = component.component_type();
        let mut found = None;
        for (name, _) in ty.exports(engine) {
            let version = match name {
                ADAPTER_EXPORT => ContractVersion::V0_2,
                since_v0_1::ADAPTER_EXPORT => ContractVersion::V0_1,
                _ => continue,
            };
            // A component exporting both would be ambiguous; take the newest.
            found = found.max(Some(version));
        }
        found
    }

    /// The version as plugins report it in `info().contract` (`0.1.0`, `0.2.0`).
    pub fn as_str(self) -> &'static str {
        match self {
            ContractVersion::V0_1 => since_v0_1::CONTRACT_VERSION,
            ContractVersion::V0_2 => CONTRACT_VERSION,
        }
    }

    /// Whether a plugin's reported contract is this one: same major and minor
    /// (`0.2.x` plugins run on a `0.2.y` host).
    pub fn matches(self, reported: &str) -> bool {
        let major_minor = |v: &str| {
            let mut parts = v.trim().split('.');
            (
                parts.next().map(str::to_owned),
                parts.next().map(str::to_owned),
            )
        };
        major_minor(reported) == major_minor(self.as_str())
    }
}

impl PartialOrd for ContractVersion {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ContractVersion {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (*self as u8).cmp(&(*other as u8))
    }
}

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
        Op::Complete => "complete",
    }
}

/// The WIT name of an event kind, as logged.
pub fn event_kind_name(kind: types::EventKind) -> &'static str {
    use types::EventKind as K;
    match kind {
        K::Authorized => "authorized",
        K::Captured => "captured",
        K::Refunded => "refunded",
        K::Voided => "voided",
        K::Expired => "expired",
        K::Reversed => "reversed",
        K::Chargeback => "chargeback",
    }
}

#[cfg(test)]
mod tests {
    use super::ContractVersion;

    #[test]
    fn reported_contracts_match_by_major_and_minor() {
        assert!(ContractVersion::V0_2.matches("0.2.0"));
        assert!(ContractVersion::V0_2.matches("0.2.7"));
        assert!(ContractVersion::V0_1.matches("0.1.3"));
        assert!(!ContractVersion::V0_2.matches("0.1.0"));
        assert!(!ContractVersion::V0_1.matches("0.2.0"));
        assert!(!ContractVersion::V0_2.matches("1.2.0"));
        assert!(!ContractVersion::V0_2.matches(""));
    }
}
