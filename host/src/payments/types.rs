//! What the fronts and the engine exchange: the parsed request, the result to render, the
//! final outcome of a callback, and the `Front` trait each protocol implements.

use crate::config::GatewayConfig;
use crate::plugins::types::{Order, Shopper, ShopperAction};
use crate::store::{Action, NewCallback, StoreError, StoredAnswer, Transaction};

/// An operation, parsed by a front.
#[derive(Debug, Clone)]
pub struct PaymentRequest {
    pub gateway: String,
    pub action: Action,
    /// What makes two requests the same operation (see the front's reference).
    pub natural_key: String,
    /// The platform's id of the resource acted upon.
    pub resource_id: String,
    pub amount_cents: u64,
    pub currency: String,
    /// Authorize, sale and token: the PSP token of the payment source.
    pub payment_source_token: Option<String>,
    /// Capture, void, refund: the token answered for the transaction acted upon.
    pub parent_token: Option<String>,
    pub customer_token: Option<String>,
    pub customer_email: Option<String>,
    pub order: Option<Order>,
    pub options_json: Option<String>,
    /// Authorize and sale: the shopper's return URL, IP address and browser, where the
    /// platform sends them.
    pub shopper: Option<Shopper>,
}

/// What happened, for the front to render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentResult {
    Approved {
        transaction_token: String,
        amount_cents: u64,
        messages: Vec<String>,
        metadata: Vec<(String, String)>,
    },
    Pending {
        transaction_token: String,
        amount_cents: u64,
        action_id: String,
        metadata: Vec<(String, String)>,
        /// What the shopper must do before the PSP decides (`action-required`).
        action: Option<ShopperAction>,
    },
    Declined {
        transaction_token: Option<String>,
        amount_cents: u64,
        code: String,
        message: String,
    },
    Tokenized {
        customer_token: Option<String>,
        payment_source_token: String,
    },
    /// Nothing was done: the request is wrong for the state (unknown token, balance).
    Refused { code: RefusalCode, message: String },
    /// The PSP or the plugin failed; a retry may succeed.
    Failed { kind: FailureKind, message: String },
}

impl PaymentResult {
    /// Answers the platform under `token` instead of the plugin's.
    pub fn rename_token(&mut self, token: String) {
        match self {
            PaymentResult::Approved {
                transaction_token, ..
            }
            | PaymentResult::Pending {
                transaction_token, ..
            } => *transaction_token = token,
            PaymentResult::Declined {
                transaction_token, ..
            } => *transaction_token = Some(token),
            PaymentResult::Tokenized { .. }
            | PaymentResult::Refused { .. }
            | PaymentResult::Failed { .. } => {}
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalCode {
    UnknownGateway,
    UnknownTransaction,
    NotApproved,
    AmountExceedsBalance,
    InvalidRequest,
    /// Zero for an operation that moves money, or beyond `bounds::MAX_AMOUNT_MINOR`.
    InvalidAmount,
    /// A payment source token that reads as a card number: never stored, logged or sent.
    CardNumberRefused,
}

impl RefusalCode {
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalCode::UnknownGateway => "unknown_gateway",
            RefusalCode::UnknownTransaction => "unknown_transaction",
            RefusalCode::NotApproved => "transaction_not_approved",
            RefusalCode::AmountExceedsBalance => "amount_exceeds_balance",
            RefusalCode::InvalidRequest => "invalid_request",
            RefusalCode::InvalidAmount => "invalid_amount",
            RefusalCode::CardNumberRefused => "card_number_refused",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The plugin does not implement the operation.
    Unsupported,
    /// The PSP did not answer in time (plugin-reported or the host's hard deadline).
    Timeout,
    /// Unreachable PSP, bad response, misconfiguration, plugin trap: an outage.
    Unavailable,
    /// A duplicate is still being processed elsewhere.
    InProgress,
}

impl FailureKind {
    pub fn code(self) -> &'static str {
        match self {
            FailureKind::Unsupported => "unsupported_operation",
            FailureKind::Timeout => "psp_timeout",
            FailureKind::Unavailable => "psp_unavailable",
            FailureKind::InProgress => "in_progress",
        }
    }

    /// The HTTP status every front answers a failure with.
    pub fn http_status(self) -> u16 {
        match self {
            FailureKind::Unsupported => 501,
            FailureKind::Timeout => 504,
            FailureKind::Unavailable => 502,
            FailureKind::InProgress => 409,
        }
    }
}

/// The final outcome of something answered `pending` earlier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalOutcome {
    pub succeeded: bool,
    pub message: String,
    pub error_code: Option<String>,
    pub error_detail: Option<String>,
}

/// A protocol front: how results and callbacks look on its wire.
pub trait Front: Send + Sync {
    /// Stored with each transaction, to find the front again for its callbacks.
    fn name(&self) -> &'static str;
    fn render(&self, action: Action, result: &PaymentResult) -> StoredAnswer;
    /// The callback announcing a final outcome, if the gateway has somewhere to send it.
    /// Its body is stored unsigned; `sign` runs when it is sent.
    fn callback(
        &self,
        gateway: &GatewayConfig,
        txn: &Transaction,
        outcome: &FinalOutcome,
    ) -> Option<NewCallback>;
    /// Headers authenticating `body` (the exact bytes about to be sent), computed with the
    /// gateway's configuration at send time so a rotated secret applies to queued
    /// callbacks too. None by default.
    fn sign(
        &self,
        _gateway: &GatewayConfig,
        _body: &[u8],
    ) -> Result<Vec<(String, String)>, SignError> {
        Ok(Vec::new())
    }
}

/// Why a callback cannot be signed when it is due: it becomes a dead letter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("gateway `{0}` has no shared_secret to sign callbacks with")]
    NoSecret(String),
}

#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the operation's task failed: {0}")]
    Task(String),
}
