//! The contract's records and variants (generated from `wit/plugin.wit`, documented there), plus
//! a few constructors that keep plugin code short.

pub use crate::bindings::psp::plugin::types::Outcome;
pub use crate::bindings::psp::plugin::types::{
    Address, Approved, AuthorizeRequest, Declined, Failure, FinalStatus, FollowUpRequest, LineItem,
    Money, Operation, Order, Pair, Pending, PluginInfo, PspEvent, SettingSpec, SyncRequest,
    TokenizeRequest, Tokenized, WebhookReply, WebhookRequest,
};

impl Money {
    /// An amount in minor units with its ISO 4217 currency code.
    pub fn new(amount_cents: u64, currency: impl Into<String>) -> Self {
        Money {
            amount_cents,
            currency: currency.into(),
        }
    }
}

impl Pair {
    /// A key/value pair.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Pair {
            key: key.into(),
            value: value.into(),
        }
    }
}

impl Operation {
    /// Every operation of the contract, in WIT order (handy for [`PluginInfo::operations`]).
    pub const ALL: [Operation; 8] = [
        Operation::Authorize,
        Operation::Capture,
        Operation::Void,
        Operation::Refund,
        Operation::Tokenize,
        Operation::Sale,
        Operation::Sync,
        Operation::HandleWebhook,
    ];
}

impl SettingSpec {
    /// A setting the plugin reads; `secret` ones are never shown by the host.
    pub fn new(name: impl Into<String>, required: bool, secret: bool, description: &str) -> Self {
        SettingSpec {
            name: name.into(),
            required,
            secret,
            description: description.to_owned(),
        }
    }
}

impl Outcome {
    /// Approved, with no messages or metadata.
    pub fn approved(transaction_token: impl Into<String>, amount_cents: u64) -> Self {
        Outcome::Approved(Approved {
            transaction_token: transaction_token.into(),
            amount_cents,
            messages: Vec::new(),
            metadata: Vec::new(),
        })
    }

    /// Pending, settled later by a notification carrying `psp_reference` (or by `sync`).
    pub fn pending(
        transaction_token: impl Into<String>,
        amount_cents: u64,
        psp_reference: impl Into<String>,
    ) -> Self {
        Outcome::Pending(Pending {
            transaction_token: transaction_token.into(),
            amount_cents,
            psp_reference: psp_reference.into(),
            metadata: Vec::new(),
        })
    }

    /// Declined by the PSP, without a transaction token.
    pub fn declined(code: impl Into<String>, message: impl Into<String>) -> Self {
        Outcome::Declined(Declined {
            code: code.into(),
            message: message.into(),
            transaction_token: None,
        })
    }
}

impl Failure {
    /// The failure's message, whatever its kind.
    pub fn message(&self) -> &str {
        match self {
            Failure::Unsupported(m)
            | Failure::Unreachable(m)
            | Failure::Timeout(m)
            | Failure::Misconfigured(m)
            | Failure::BadResponse(m)
            | Failure::InvalidRequest(m)
            | Failure::Unauthenticated(m)
            | Failure::Internal(m) => m,
        }
    }

    /// The failure's kind as its WIT case name (`unreachable`, `bad-response`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::Unsupported(_) => "unsupported",
            Failure::Unreachable(_) => "unreachable",
            Failure::Timeout(_) => "timeout",
            Failure::Misconfigured(_) => "misconfigured",
            Failure::BadResponse(_) => "bad-response",
            Failure::InvalidRequest(_) => "invalid-request",
            Failure::Unauthenticated(_) => "unauthenticated",
            Failure::Internal(_) => "internal",
        }
    }
}
