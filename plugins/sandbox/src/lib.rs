//! The sandbox PSP: a deterministic fake payment provider for demos and end-to-end tests. It
//! makes no network calls; the payment source token chooses the outcome (see README.md), and
//! every token it answers is derived from the request, so retries get the same answer.

use std::time::Duration;

use psp_plugin_sdk::crypto::{constant_time_eq, hex_decode, hex_encode, hmac_sha256, sha256};
use psp_plugin_sdk::types::*;
use psp_plugin_sdk::{CONTRACT_VERSION, Plugin, settings};

/// The header carrying the hex HMAC-SHA256 of a notification's raw body.
pub const SIGNATURE_HEADER: &str = "Sandbox-Signature";
/// The setting holding the key notifications are signed with.
pub const WEBHOOK_SECRET: &str = "webhook_secret";

/// The sandbox plugin.
pub struct Sandbox;

impl Plugin for Sandbox {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "sandbox".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            contract: CONTRACT_VERSION.into(),
            operations: Operation::ALL.to_vec(),
            settings: vec![SettingSpec::new(
                WEBHOOK_SECRET,
                true,
                true,
                "Key of the HMAC-SHA256 in the Sandbox-Signature header of notifications",
            )],
        }
    }

    fn authorize(req: AuthorizeRequest) -> Result<Outcome, Failure> {
        pay(&req)
    }

    fn sale(req: AuthorizeRequest) -> Result<Outcome, Failure> {
        pay(&req)
    }

    fn capture(req: CaptureRequest) -> Result<Outcome, Failure> {
        let token = if req.transaction_token.starts_with(SAME_ID_PREFIX) {
            req.transaction_token.clone()
        } else {
            derive("sbx_cap_", &req.idempotency_key)
        };
        let mut outcome = Outcome::approved(token, req.amount.amount_cents);
        // What the sandbox was told, so tests can see the host's capture numbering.
        with_metadata(
            &mut outcome,
            [
                ("captured_transaction", req.transaction_token.clone()),
                ("capture_sequence", req.sequence.to_string()),
                ("final_capture", req.final_capture.to_string()),
            ],
        );
        Ok(outcome)
    }

    fn void(req: FollowUpRequest) -> Result<Outcome, Failure> {
        Ok(follow_up("void", &req))
    }

    fn refund(req: FollowUpRequest) -> Result<Outcome, Failure> {
        Ok(follow_up("ref", &req))
    }

    fn tokenize(req: TokenizeRequest) -> Result<Tokenized, Failure> {
        if req.payment_source_token == "tok_fail" {
            return Err(unreachable_psp());
        }
        let customer_token = match (&req.customer_token, &req.customer_email) {
            (Some(token), _) => token.clone(),
            (None, Some(email)) => derive("sbx_cus_", &email.to_lowercase()),
            (None, None) => derive("sbx_cus_", &req.idempotency_key),
        };
        Ok(Tokenized {
            customer_token: Some(customer_token),
            payment_source_token: derive("sbx_pm_", &req.payment_source_token),
        })
    }

    fn sync(req: SyncRequest) -> Result<Outcome, Failure> {
        // Without a token (the answer was lost), the sandbox finds the transaction the way
        // it named it: from the idempotency key.
        let token = match &req.transaction_token {
            Some(token) => token.clone(),
            None => derive(token_prefix(req.operation), &req.idempotency_key),
        };
        let reference = req.psp_reference.clone().unwrap_or_else(|| token.clone());
        if reference.starts_with(PENDING_PREFIX) || reference.starts_with(ACTION_PREFIX) {
            Ok(Outcome::pending(token, req.amount.amount_cents, reference))
        } else {
            Ok(Outcome::approved_as(
                token,
                reference,
                req.amount.amount_cents,
            ))
        }
    }

    /// The shopper came back from the sandbox's 3-D Secure page: its `outcome` return
    /// parameter (`succeeded` or `failed`) decides.
    fn complete(req: CompleteRequest) -> Result<Outcome, Failure> {
        if !req.psp_reference.starts_with(ACTION_PREFIX) {
            return Err(Failure::InvalidRequest(format!(
                "`{}` asked for no shopper action",
                req.psp_reference
            )));
        }
        match req.return_parameter("outcome") {
            Some("succeeded") => Ok(Outcome::approved_as(
                req.transaction_token,
                req.psp_reference,
                req.amount.amount_cents,
            )),
            Some("failed") => Ok(Outcome::Declined(Declined {
                code: "authentication_failed".into(),
                message: "The shopper failed 3-D Secure at the sandbox".into(),
                transaction_token: Some(req.transaction_token),
                psp_reference: Some(req.psp_reference),
            })),
            _ => Err(Failure::InvalidRequest(
                "the return needs `outcome=succeeded` or `outcome=failed`".into(),
            )),
        }
    }

    fn handle_webhook(req: WebhookRequest) -> Result<WebhookReply, Failure> {
        let secret = settings::require(WEBHOOK_SECRET)?;
        verify_signature(&req, secret.as_bytes())?;
        let event = parse_notification(&req.body)?;
        Ok(WebhookReply {
            events: vec![event],
            status: 200,
            content_type: "application/json".into(),
            body: br#"{"received":true}"#.to_vec(),
        })
    }
}

psp_plugin_sdk::export_plugin!(Sandbox);

const PENDING_PREFIX: &str = "sbx_pend_";
/// Pending, but no notification will ever come: only `sync` settles it (approved).
const SYNC_PENDING_PREFIX: &str = "sbx_wait_";
const SLOW_PREFIX: &str = "tok_slow_";
/// Waiting for the shopper (`tok_3ds`): `complete`, a notification or `sync` settles it.
const ACTION_PREFIX: &str = "sbx_3ds_";
/// Payments whose captures answer the payment's own token, as some PSPs name every
/// capture by the payment's id (the host must still tell the captures apart).
const SAME_ID_PREFIX: &str = "sbx_same_";
/// Where the sandbox sends a shopper for 3-D Secure: a page no one serves (`.invalid`);
/// tests follow the redirect by calling `complete` with the return's parameters.
const CHALLENGE_URL: &str = "https://sandbox.psp-gateway.invalid/3ds/";

/// The prefix of the token the sandbox answers an operation with.
fn token_prefix(operation: Operation) -> &'static str {
    match operation {
        Operation::Capture => "sbx_cap_",
        Operation::Void => "sbx_void_",
        Operation::Refund => "sbx_ref_",
        _ => "sbx_",
    }
}

/// Authorize and sale: the token picks the outcome.
fn pay(req: &AuthorizeRequest) -> Result<Outcome, Failure> {
    let amount = req.amount.amount_cents;
    let token = req.payment_source_token.as_str();
    match token {
        "tok_decline" => Ok(Outcome::Declined(Declined {
            code: "card_declined".into(),
            message: "The sandbox declined the card (tok_decline)".into(),
            transaction_token: Some(derive("sbx_decl_", &req.idempotency_key)),
            psp_reference: None,
        })),
        "tok_3ds" => {
            let token = derive(ACTION_PREFIX, &req.idempotency_key);
            let mut url = format!("{CHALLENGE_URL}{token}");
            if let Some(back) = req.shopper.as_ref().and_then(|s| s.return_url.as_deref()) {
                url.push_str("?return_url=");
                url.push_str(&percent_encode(back));
            }
            Ok(Outcome::action_required(
                token.clone(),
                token,
                amount,
                ShopperAction::redirect(url),
            ))
        }
        "tok_pending_sync" => {
            // A PSP whose notification is lost: the reconciler's `sync` finds it approved.
            let token = derive(SYNC_PENDING_PREFIX, &req.idempotency_key);
            Ok(Outcome::pending(token.clone(), amount, token))
        }
        "tok_pending" => {
            // The token is the reference the notification will carry, so the host can match
            // the notification to this transaction by either.
            let token = derive(PENDING_PREFIX, &req.idempotency_key);
            Ok(Outcome::pending(token.clone(), amount, token))
        }
        "tok_fail" => Err(unreachable_psp()),
        "tok_same_id" => Ok(Outcome::approved(
            derive(SAME_ID_PREFIX, &req.idempotency_key),
            amount,
        )),
        _ => {
            if let Some(ms) = token.strip_prefix(SLOW_PREFIX) {
                let ms: u64 = ms.parse().map_err(|_| {
                    Failure::InvalidRequest(format!(
                        "`{SLOW_PREFIX}<ms>` needs a whole number of milliseconds, got `{ms}`"
                    ))
                })?;
                // On wasip2 this is a WASI clock poll, which the host runs asynchronously.
                std::thread::sleep(Duration::from_millis(ms));
            }
            Ok(Outcome::approved(
                derive("sbx_", &req.idempotency_key),
                amount,
            ))
        }
    }
}

/// Every byte but unreserved ones as `%XX` (RFC 3986), for a URL in a query.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A void or refund, approved; its metadata names the transaction it acted upon.
fn follow_up(kind: &str, req: &FollowUpRequest) -> Outcome {
    let mut outcome = Outcome::approved(
        derive(&format!("sbx_{kind}_"), &req.idempotency_key),
        req.amount.amount_cents,
    );
    let key = if kind == "void" {
        "voided_transaction"
    } else {
        "refunded_transaction"
    };
    with_metadata(&mut outcome, [(key, req.transaction_token.clone())]);
    outcome
}

fn with_metadata<const N: usize>(outcome: &mut Outcome, pairs: [(&str, String); N]) {
    if let Outcome::Approved(a) = outcome {
        a.metadata
            .extend(pairs.into_iter().map(|(k, v)| Pair::new(k, v)));
    }
}

fn unreachable_psp() -> Failure {
    Failure::Unreachable("the sandbox PSP is down (tok_fail)".into())
}

/// `prefix` + the first 24 hex digits of SHA-256(`seed`): stable across retries.
fn derive(prefix: &str, seed: &str) -> String {
    let digest = hex_encode(sha256(seed.as_bytes()));
    format!("{prefix}{}", &digest[..24])
}

fn verify_signature(req: &WebhookRequest, secret: &[u8]) -> Result<(), Failure> {
    let given = req
        .headers
        .iter()
        .find(|p| p.key.eq_ignore_ascii_case(SIGNATURE_HEADER))
        .map(|p| p.value.trim())
        .ok_or_else(|| Failure::Unauthenticated(format!("missing {SIGNATURE_HEADER} header")))?;
    let bad = || Failure::Unauthenticated(format!("{SIGNATURE_HEADER} does not match the body"));
    let given = hex_decode(given).map_err(|_| bad())?;
    if constant_time_eq(&given, &hmac_sha256(secret, &req.body)) {
        Ok(())
    } else {
        Err(bad())
    }
}

/// `{"reference": "...", "outcome": "succeeded" | "failed"}`, optionally with `kind`
/// (`authorized`, `captured`, ...), `code`, `message`, and `amount_cents` with `currency`.
fn parse_notification(body: &[u8]) -> Result<PspEvent, Failure> {
    let invalid = |what: &str| Failure::InvalidRequest(format!("sandbox notification: {what}"));
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| invalid("body is not JSON"))?;
    let reference = value
        .get("reference")
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| invalid("`reference` must be a non-empty string"))?;
    let status = match value.get("outcome").and_then(|v| v.as_str()) {
        Some("succeeded") => FinalStatus::Succeeded,
        Some("failed") => FinalStatus::Failed,
        _ => return Err(invalid("`outcome` must be \"succeeded\" or \"failed\"")),
    };
    let text = |field: &str| value.get(field).and_then(|v| v.as_str()).map(str::to_owned);
    let kind = match text("kind").as_deref() {
        None => None,
        Some("authorized") => Some(EventKind::Authorized),
        Some("captured") => Some(EventKind::Captured),
        Some("refunded") => Some(EventKind::Refunded),
        Some("voided") => Some(EventKind::Voided),
        Some("expired") => Some(EventKind::Expired),
        Some("reversed") => Some(EventKind::Reversed),
        Some("chargeback") => Some(EventKind::Chargeback),
        Some(_) => return Err(invalid("`kind` is not an event kind")),
    };
    let amount = match (
        value.get("amount_cents").and_then(|v| v.as_u64()),
        text("currency"),
    ) {
        (Some(cents), Some(currency)) => Some(Money::new(cents, currency)),
        (Some(_), None) => return Err(invalid("`amount_cents` needs a `currency`")),
        (None, _) => None,
    };
    Ok(PspEvent {
        psp_reference: reference.to_owned(),
        transaction_token: None,
        status,
        kind,
        code: text("code"),
        message: text("message"),
        amount,
    })
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;
