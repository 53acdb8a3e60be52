//! The [`Plugin`] trait: what a PSP adapter implements, one associated function per operation
//! of the WIT `adapter` interface.

use crate::types::{
    AuthorizeRequest, CaptureRequest, CompleteRequest, Failure, FollowUpRequest, Outcome,
    PluginInfo, SyncRequest, TokenizeRequest, Tokenized, WebhookReply, WebhookRequest,
};

/// A PSP adapter. Every call runs in a fresh component instance, so the functions take no
/// `self` and a plugin keeps no state between calls.
///
/// Only [`info`](Plugin::info) is required; every other operation defaults to
/// [`Failure::Unsupported`]. List the operations you implement in
/// [`PluginInfo::operations`] so the host can refuse the others up front.
pub trait Plugin {
    /// Describes the plugin: name, version, contract version, operations and settings.
    /// Called once when the host loads the plugin.
    fn info() -> PluginInfo;

    /// Authorizes an amount on a payment source.
    fn authorize(_req: AuthorizeRequest) -> Result<Outcome, Failure> {
        Err(unsupported("authorize"))
    }

    /// Captures (part of) an authorization.
    fn capture(_req: CaptureRequest) -> Result<Outcome, Failure> {
        Err(unsupported("capture"))
    }

    /// Voids (cancels) an authorization.
    fn void(_req: FollowUpRequest) -> Result<Outcome, Failure> {
        Err(unsupported("void"))
    }

    /// Refunds (part of) a capture.
    fn refund(_req: FollowUpRequest) -> Result<Outcome, Failure> {
        Err(unsupported("refund"))
    }

    /// Saves a payment source for a customer at the PSP.
    fn tokenize(_req: TokenizeRequest) -> Result<Tokenized, Failure> {
        Err(unsupported("tokenize"))
    }

    /// Authorizes and captures in one step.
    fn sale(_req: AuthorizeRequest) -> Result<Outcome, Failure> {
        Err(unsupported("sale"))
    }

    /// Asks the PSP for the current state of a pending transaction, or of one whose answer
    /// was lost (then without a token: look it up by idempotency key or reference).
    fn sync(_req: SyncRequest) -> Result<Outcome, Failure> {
        Err(unsupported("sync"))
    }

    /// Finishes a transaction that answered [`Outcome::ActionRequired`] once the shopper
    /// acted (re-read it at the PSP, or submit the return's details).
    fn complete(_req: CompleteRequest) -> Result<Outcome, Failure> {
        Err(unsupported("complete"))
    }

    /// Verifies a PSP notification and turns it into events.
    fn handle_webhook(_req: WebhookRequest) -> Result<WebhookReply, Failure> {
        Err(unsupported("handle-webhook"))
    }
}

fn unsupported(operation: &str) -> Failure {
    Failure::Unsupported(format!("this plugin does not implement `{operation}`"))
}

// Native only: it uses the test harness's builders.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::types::Operation;

    struct Minimal;

    impl Plugin for Minimal {
        fn info() -> PluginInfo {
            PluginInfo {
                name: "minimal".into(),
                version: "0.0.0".into(),
                contract: crate::CONTRACT_VERSION.into(),
                operations: vec![Operation::Authorize],
                settings: vec![],
            }
        }
    }

    crate::export_plugin!(Minimal);

    #[test]
    fn unimplemented_operations_are_unsupported_and_named() {
        let req = crate::testing::capture_request("t", 1, "EUR");
        match Minimal::capture(req) {
            Err(Failure::Unsupported(m)) => assert!(m.contains("`capture`"), "{m}"),
            other => panic!("unexpected {other:?}"),
        }
        let done = crate::testing::complete_request("t", "r", 1, "EUR", &[]);
        assert!(
            matches!(Minimal::complete(done), Err(Failure::Unsupported(m)) if m.contains("`complete`"))
        );
        let hook = crate::testing::webhook_request(&[], "");
        assert!(
            matches!(Minimal::handle_webhook(hook), Err(Failure::Unsupported(m)) if m.contains("handle-webhook"))
        );
    }
}
