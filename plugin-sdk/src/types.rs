//! The contract's records and variants (generated from `wit/0.2/plugin.wit`, documented
//! there), plus a few constructors that keep plugin code short.

pub use crate::bindings::psp::plugin::types::Outcome;
pub use crate::bindings::psp::plugin::types::{
    ActionRequired, Address, Approved, AuthorizeRequest, CaptureRequest, CompleteRequest, Declined,
    EventKind, Failure, FinalStatus, FollowUpRequest, LineItem, Money, Operation, Order, Pair,
    Pending, PluginInfo, PspEvent, Redirect, RedirectMethod, SdkAction, SettingSpec, Shopper,
    ShopperAction, SyncRequest, TokenizeRequest, Tokenized, WebhookReply, WebhookRequest,
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
    pub const ALL: [Operation; 9] = [
        Operation::Authorize,
        Operation::Capture,
        Operation::Void,
        Operation::Refund,
        Operation::Tokenize,
        Operation::Sale,
        Operation::Sync,
        Operation::HandleWebhook,
        Operation::Complete,
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
    /// Approved, with no messages or metadata, where the token is the PSP's own id too.
    pub fn approved(transaction_token: impl Into<String>, amount_cents: u64) -> Self {
        let token = transaction_token.into();
        Self::approved_as(token.clone(), token, amount_cents)
    }

    /// Approved, under a token of the plugin's making for a PSP id that other transactions
    /// share (every capture of one Stripe PaymentIntent, say).
    pub fn approved_as(
        transaction_token: impl Into<String>,
        psp_reference: impl Into<String>,
        amount_cents: u64,
    ) -> Self {
        Outcome::Approved(Approved {
            transaction_token: transaction_token.into(),
            psp_reference: psp_reference.into(),
            amount_cents,
            messages: Vec::new(),
            metadata: Vec::new(),
        })
    }

    /// The shopper must act first: `action` says how; `complete`, a notification or
    /// `sync` finishes the transaction.
    pub fn action_required(
        transaction_token: impl Into<String>,
        psp_reference: impl Into<String>,
        amount_cents: u64,
        action: ShopperAction,
    ) -> Self {
        Outcome::ActionRequired(ActionRequired {
            transaction_token: transaction_token.into(),
            psp_reference: psp_reference.into(),
            amount_cents,
            action,
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
            psp_reference: None,
        })
    }
}

impl ShopperAction {
    /// Send the shopper to `url` (a link).
    pub fn redirect(url: impl Into<String>) -> Self {
        ShopperAction::Redirect(Redirect {
            url: url.into(),
            method: RedirectMethod::Get,
            form_fields: Vec::new(),
        })
    }

    /// Post a form with `fields` to `url` (3-D Secure 1 style).
    pub fn post_form(url: impl Into<String>, fields: Vec<Pair>) -> Self {
        ShopperAction::Redirect(Redirect {
            url: url.into(),
            method: RedirectMethod::Post,
            form_fields: fields,
        })
    }

    /// Let the PSP's client SDK act, with the PSP's own JSON.
    pub fn sdk(kind: impl Into<String>, data_json: impl Into<String>) -> Self {
        ShopperAction::Sdk(SdkAction {
            kind: kind.into(),
            data_json: data_json.into(),
        })
    }
}

impl CompleteRequest {
    /// The value of a return parameter, if the shopper's return carried it.
    pub fn return_parameter(&self, name: &str) -> Option<&str> {
        self.return_parameters
            .iter()
            .find(|p| p.key == name)
            .map(|p| p.value.as_str())
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
