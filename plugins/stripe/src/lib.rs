//! The Stripe plugin: payments through Stripe's PaymentIntents API.
//!
//! - authorize / sale: create and confirm a PaymentIntent (`capture_method` manual or
//!   automatic) on a PaymentMethod (`pm_...`) or a legacy card token (`tok_...`).
//! - 3-D Secure: a PaymentIntent in `requires_action` is action-required: Stripe's
//!   `redirect_to_url` (sent when the shopper context has a return URL) as a redirect, any
//!   other `next_action` as data for Stripe.js. `complete` re-reads the PaymentIntent.
//! - capture / void: capture or cancel that PaymentIntent; refund: create a Refund on it.
//!   Each capture answers its own token (`pi_....capture.N`, a void `pi_....void`), the
//!   PaymentIntent staying its PSP reference, so refunds and lookups find the one they name.
//! - tokenize: find or create the customer (by email) and attach the PaymentMethod.
//! - sync: read the PaymentIntent (or Refund) and map its status.
//! - handle-webhook: verify `Stripe-Signature` and turn Stripe events into PSP events keyed by
//!   the PaymentIntent id (refund events by the Refund id).
//!
//! The status mapping is in README.md. Every call is stateless; the host's idempotency key is
//! forwarded as Stripe's `Idempotency-Key`.

use std::time::{SystemTime, UNIX_EPOCH};

use psp_plugin_sdk::http::{Form, Method};
use psp_plugin_sdk::types::*;
use psp_plugin_sdk::{CONTRACT_VERSION, Plugin, log, settings};
use serde_json::Value;

mod api;
mod status;
mod webhook;

#[cfg(test)]
use api::endpoint_name;
use api::{Answer, Api};
use status::{describe, id_of, id_or_object, op_name};
pub use status::{intent_outcome, redact, refund_outcome};
pub use webhook::{events_of, verify_signature};

/// The setting holding the secret API key (`sk_live_...` / `sk_test_...` / `rk_...`).
pub const SECRET_KEY: &str = "secret_key";
/// The setting overriding the API's base URL (tests, proxies).
pub const API_BASE: &str = "api_base";
/// The setting that turns on multicapture (`true`): authorizations ask for it, and a
/// capture that is not the last one says `final_capture=false`.
pub const MULTICAPTURE: &str = "multicapture";
/// The setting choosing how 3-D Secure reaches the shopper: `redirect` (the default: the
/// shopper's return URL goes to Stripe, which answers a redirect) or `stripe_js` (no return
/// URL: the storefront's Stripe.js handles `next_action`).
pub const THREE_D_SECURE: &str = "three_d_secure";
/// The setting holding the webhook endpoint's signing secret (`whsec_...`).
pub const WEBHOOK_SECRET: &str = "webhook_secret";
/// Stripe's API.
pub const DEFAULT_API_BASE: &str = "https://api.stripe.com";
/// The API version the plugin is written against (sent as `Stripe-Version`).
pub const STRIPE_VERSION: &str = "2024-06-20";
/// The header Stripe signs webhooks with.
pub const SIGNATURE_HEADER: &str = "Stripe-Signature";
/// How old (or how far in the future) a signed webhook timestamp may be, in seconds.
pub const SIGNATURE_TOLERANCE_SECS: u64 = 300;

/// The Stripe plugin.
pub struct Stripe;

impl Plugin for Stripe {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "stripe".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            contract: CONTRACT_VERSION.into(),
            operations: Operation::ALL.to_vec(),
            settings: vec![
                SettingSpec::new(
                    SECRET_KEY,
                    true,
                    true,
                    "Stripe secret API key (sk_live_... or sk_test_...); set it from the \
                     environment: \"${STRIPE_SECRET_KEY}\"",
                ),
                SettingSpec::new(
                    API_BASE,
                    false,
                    false,
                    "Base URL of Stripe's API (default https://api.stripe.com); also list its \
                     host in allowed_hosts",
                ),
                SettingSpec::new(
                    MULTICAPTURE,
                    false,
                    false,
                    "\"true\" to capture an authorization in several parts (Stripe \
                     multicapture, where the account has it); otherwise a partial capture \
                     releases the rest",
                ),
                SettingSpec::new(
                    THREE_D_SECURE,
                    false,
                    false,
                    "\"redirect\" (default): send the shopper's return URL, so 3-D Secure is a \
                     redirect; \"stripe_js\": never, the storefront's Stripe.js handles it",
                ),
                SettingSpec::new(
                    WEBHOOK_SECRET,
                    true,
                    true,
                    "Signing secret (whsec_...) of the Stripe webhook endpoint pointing at \
                     /psp/{gateway}/webhook; several, comma-separated, while rotating",
                ),
            ],
        }
    }

    fn authorize(req: AuthorizeRequest) -> Result<Outcome, Failure> {
        pay(&req, Operation::Authorize)
    }

    fn sale(req: AuthorizeRequest) -> Result<Outcome, Failure> {
        pay(&req, Operation::Sale)
    }

    fn capture(req: CaptureRequest) -> Result<Outcome, Failure> {
        let api = Api::from_settings()?;
        let intent = intent_id(&req.transaction_token, req.psp_reference.as_deref())?;
        let mut form = Form::new();
        form.push("amount_to_capture", req.amount.amount_cents.to_string());
        if multicapture() && !req.final_capture {
            form.push("final_capture", "false");
        }
        let path = format!("/v1/payment_intents/{intent}/capture");
        let outcome =
            match api.call(Method::Post, &path, Some(&form), Some(&req.idempotency_key))? {
                Answer::Ok(pi) => intent_outcome(&pi, Operation::Capture, req.amount.amount_cents)?,
                Answer::Declined(d) => Outcome::Declined(d),
            };
        Ok(as_capture(outcome, intent, req.sequence))
    }

    fn void(req: FollowUpRequest) -> Result<Outcome, Failure> {
        let api = Api::from_settings()?;
        let intent = intent_id(&req.transaction_token, req.psp_reference.as_deref())?;
        let path = format!("/v1/payment_intents/{intent}/cancel");
        let outcome = match api.call(Method::Post, &path, None, Some(&req.idempotency_key))? {
            Answer::Ok(pi) => intent_outcome(&pi, Operation::Void, req.amount.amount_cents)?,
            Answer::Declined(d) => Outcome::Declined(d),
        };
        // The void's own token: the authorization is known by the PaymentIntent's id.
        Ok(retoken(outcome, &format!("{intent}.void")))
    }

    fn refund(req: FollowUpRequest) -> Result<Outcome, Failure> {
        let api = Api::from_settings()?;
        let intent = intent_id(&req.transaction_token, req.psp_reference.as_deref())?;
        let mut form = Form::new();
        form.push("payment_intent", intent)
            .push("amount", req.amount.amount_cents.to_string());
        let mut metadata = vec![("cl_refund_id", req.reference.as_str())];
        if let Some(number) = req.order.as_ref().and_then(|o| o.number.as_deref()) {
            metadata.push(("order_number", number));
        }
        form.push_map("metadata", &metadata);
        match api.call(
            Method::Post,
            "/v1/refunds",
            Some(&form),
            Some(&req.idempotency_key),
        )? {
            Answer::Ok(refund) => refund_outcome(&refund, req.amount.amount_cents),
            Answer::Declined(d) => Ok(Outcome::Declined(d)),
        }
    }

    fn tokenize(req: TokenizeRequest) -> Result<Tokenized, Failure> {
        let api = Api::from_settings()?;
        let email = req
            .customer_email
            .clone()
            .or_else(|| req.order.as_ref().and_then(|o| o.customer_email.clone()))
            .filter(|e| !e.trim().is_empty());
        let customer = match req.customer_token.as_deref().filter(|c| !c.is_empty()) {
            Some(customer) => customer.to_owned(),
            None => find_or_create_customer(&api, email.as_deref(), &req)?,
        };
        let token = req.payment_source_token.trim();
        let payment_method = if token.starts_with("tok_") {
            // A legacy Stripe.js / Elements card token becomes a PaymentMethod first.
            let mut form = Form::new();
            form.push("type", "card").push("card[token]", token);
            let key = format!("{}:payment_method", req.idempotency_key);
            let pm = api.ok(Method::Post, "/v1/payment_methods", Some(&form), Some(&key))?;
            id_of(&pm, "payment method")?
        } else {
            check_source_token(token)?;
            token.to_owned()
        };
        let mut form = Form::new();
        form.push("customer", customer.as_str());
        let key = format!("{}:attach", req.idempotency_key);
        let path = format!("/v1/payment_methods/{payment_method}/attach");
        let attached = api.ok(Method::Post, &path, Some(&form), Some(&key))?;
        log::info(&format!(
            "stripe tokenize: payment method {} saved for customer {}",
            redact(&payment_method),
            redact(&customer)
        ));
        Ok(Tokenized {
            customer_token: Some(
                attached
                    .get("customer")
                    .and_then(id_or_object)
                    .unwrap_or(customer),
            ),
            payment_source_token: id_of(&attached, "payment method")?,
        })
    }

    fn complete(req: CompleteRequest) -> Result<Outcome, Failure> {
        let api = Api::from_settings()?;
        let intent = intent_id(&req.transaction_token, Some(&req.psp_reference))?;
        // Stripe's return carries `payment_intent`: a return for another payment is refused
        // rather than finishing this one with someone else's state.
        if let Some(returned) = req
            .return_parameter("payment_intent")
            .filter(|p| *p != intent)
        {
            return Err(Failure::InvalidRequest(format!(
                "the return names PaymentIntent {}, not this transaction's",
                redact(returned)
            )));
        }
        let pi = api.intent(intent)?;
        let outcome = intent_outcome(&pi, req.operation, req.amount.amount_cents)?;
        log::info(&format!("stripe complete: {}", describe(&outcome)));
        Ok(outcome)
    }

    fn sync(req: SyncRequest) -> Result<Outcome, Failure> {
        let api = Api::from_settings()?;
        let amount = req.amount.amount_cents;
        if req.operation == Operation::Refund {
            let refund = req
                .psp_reference
                .as_deref()
                .or(req.transaction_token.as_deref())
                .unwrap_or_default();
            check_id(refund, "re_", "refund")?;
            let found = api.ok(Method::Get, &format!("/v1/refunds/{refund}"), None, None)?;
            return refund_outcome(&found, amount);
        }
        let intent = intent_id(
            req.transaction_token.as_deref().unwrap_or_default(),
            req.psp_reference.as_deref(),
        )?;
        let pi = api.intent(intent)?;
        let outcome = intent_outcome(&pi, req.operation, amount)?;
        Ok(match (req.operation, req.transaction_token.as_deref()) {
            // The capture keeps the token it was answered under.
            (Operation::Capture, Some(token)) => retoken(outcome, token),
            _ => outcome,
        })
    }

    fn handle_webhook(req: WebhookRequest) -> Result<WebhookReply, Failure> {
        let secrets = settings::require(WEBHOOK_SECRET)?;
        let header = req
            .headers
            .iter()
            .find(|p| p.key.eq_ignore_ascii_case(SIGNATURE_HEADER))
            .map(|p| p.value.as_str())
            .ok_or_else(|| Failure::Unauthenticated(format!("missing {SIGNATURE_HEADER}")))?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|_| Failure::Internal("the clock is before 1970".into()))?
            .as_secs();
        let secrets: Vec<&str> = secrets
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        verify_signature(header, &req.body, &secrets, now)?;
        let event: Value = serde_json::from_slice(&req.body)
            .map_err(|_| Failure::InvalidRequest("Stripe event is not JSON".into()))?;
        let events = events_of(&event);
        log::info(&format!(
            "stripe webhook: {} ({} psp event(s))",
            event["type"].as_str().unwrap_or("unknown event type"),
            events.len()
        ));
        Ok(WebhookReply {
            events,
            status: 200,
            content_type: "application/json".into(),
            body: br#"{"received":true}"#.to_vec(),
        })
    }
}

psp_plugin_sdk::export_plugin!(Stripe);

/// Authorize (manual capture) or sale (automatic capture): one confirmed PaymentIntent.
fn pay(req: &AuthorizeRequest, op: Operation) -> Result<Outcome, Failure> {
    let api = Api::from_settings()?;
    if req.amount.amount_cents == 0 {
        return Err(Failure::InvalidRequest(
            "Stripe needs an amount above zero".into(),
        ));
    }
    let token = req.payment_source_token.trim();
    let mut customer = req
        .customer_token
        .as_deref()
        .filter(|c| !c.is_empty())
        .map(str::to_owned);
    let mut form = Form::new();
    form.push("amount", req.amount.amount_cents.to_string())
        .push("currency", req.amount.currency.to_lowercase())
        .push(
            "capture_method",
            if op == Operation::Sale {
                "automatic"
            } else {
                "manual"
            },
        )
        .push("confirm", "true")
        .push_list("payment_method_types", &["card"]);
    if token.starts_with("tok_") {
        form.push("payment_method_data[type]", "card")
            .push("payment_method_data[card][token]", token);
    } else {
        check_source_token(token)?;
        if customer.is_none() && token.starts_with("pm_") {
            // A PaymentMethod attached to a customer can only be used with that customer.
            let pm = api.ok(
                Method::Get,
                &format!("/v1/payment_methods/{token}"),
                None,
                None,
            )?;
            customer = pm.get("customer").and_then(id_or_object);
        }
        form.push("payment_method", token);
    }
    if let Some(customer) = &customer {
        form.push("customer", customer.as_str());
    }
    // With a return URL Stripe answers 3-D Secure as a redirect; without, as Stripe.js data.
    if redirects()?
        && let Some(url) = req
            .shopper
            .as_ref()
            .and_then(|s| s.return_url.as_deref())
            .filter(|u| !u.is_empty())
    {
        form.push("return_url", url);
    }
    if multicapture() && op == Operation::Authorize {
        form.push(
            "payment_method_options[card][request_multicapture]",
            "if_available",
        );
    }
    form.push_map("metadata", &metadata(req));
    let outcome = match api.call(
        Method::Post,
        "/v1/payment_intents",
        Some(&form),
        Some(&req.idempotency_key),
    )? {
        Answer::Ok(pi) => intent_outcome(&pi, op, req.amount.amount_cents)?,
        Answer::Declined(d) => Outcome::Declined(d),
    };
    log::info(&format!("stripe {}: {}", op_name(op), describe(&outcome)));
    Ok(outcome)
}

/// The order number and the merchant platform's ids, as PaymentIntent metadata.
fn metadata(req: &AuthorizeRequest) -> Vec<(&'static str, String)> {
    let mut metadata = vec![("cl_payment_id", req.reference.clone())];
    if let Some(order) = &req.order {
        metadata.push(("cl_order_id", order.id.clone()));
        if let Some(number) = &order.number {
            metadata.push(("order_number", number.clone()));
        }
    }
    metadata
}

fn find_or_create_customer(
    api: &Api,
    email: Option<&str>,
    req: &TokenizeRequest,
) -> Result<String, Failure> {
    if let Some(email) = email {
        let mut query = Form::new();
        query.push("email", email).push("limit", "1");
        let found = api.ok(
            Method::Get,
            &format!("/v1/customers?{}", query.encode()),
            None,
            None,
        )?;
        if let Some(existing) = found["data"]
            .as_array()
            .and_then(|list| list.first())
            .and_then(|c| c["id"].as_str())
        {
            return Ok(existing.to_owned());
        }
    }
    let mut form = Form::new();
    if let Some(email) = email {
        form.push("email", email);
    }
    form.push_map("metadata", &[("cl_reference", req.reference.as_str())]);
    let key = format!("{}:customer", req.idempotency_key);
    let created = api.ok(Method::Post, "/v1/customers", Some(&form), Some(&key))?;
    id_of(&created, "customer")
}

/// Whether 3-D Secure goes by redirect (the `three_d_secure` setting).
fn redirects() -> Result<bool, Failure> {
    match settings::get(THREE_D_SECURE).as_deref().map(str::trim) {
        None | Some("" | "redirect") => Ok(true),
        Some("stripe_js") => Ok(false),
        Some(other) => Err(Failure::Misconfigured(format!(
            "setting `{THREE_D_SECURE}` is `{other}`; expected `redirect` or `stripe_js`"
        ))),
    }
}

fn multicapture() -> bool {
    settings::get(MULTICAPTURE).is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// The PaymentIntent a transaction is on: its PSP reference, or the token (a capture's
/// token is `pi_....capture.N`).
fn intent_id<'a>(token: &'a str, psp_reference: Option<&'a str>) -> Result<&'a str, Failure> {
    [psp_reference, Some(token)]
        .into_iter()
        .flatten()
        .map(|id| id.split('.').next().unwrap_or_default())
        .find(|id| id.starts_with("pi_") && is_id(id))
        .ok_or_else(|| {
            Failure::InvalidRequest("the transaction token is not a Stripe PaymentIntent".into())
        })
}

/// A capture's own token: the PaymentIntent and the capture's sequence number. Every
/// capture of one PaymentIntent would otherwise answer the same id.
pub fn capture_token(intent: &str, sequence: u32) -> String {
    format!("{intent}.capture.{sequence}")
}

/// A capture's outcome under the capture's own token; the PaymentIntent stays the PSP
/// reference.
fn as_capture(outcome: Outcome, intent: &str, sequence: u32) -> Outcome {
    retoken(outcome, &capture_token(intent, sequence.max(1)))
}

fn retoken(outcome: Outcome, token: &str) -> Outcome {
    match outcome {
        Outcome::Approved(a) => Outcome::Approved(Approved {
            transaction_token: token.to_owned(),
            ..a
        }),
        Outcome::Pending(p) => Outcome::Pending(Pending {
            transaction_token: token.to_owned(),
            ..p
        }),
        Outcome::ActionRequired(r) => Outcome::ActionRequired(ActionRequired {
            transaction_token: token.to_owned(),
            ..r
        }),
        Outcome::Declined(d) => Outcome::Declined(Declined {
            transaction_token: d.transaction_token.map(|_| token.to_owned()),
            ..d
        }),
    }
}

/// Refuses tokens that cannot be a Stripe payment source before they reach a URL.
fn check_source_token(token: &str) -> Result<(), Failure> {
    let known = ["pm_", "card_", "src_", "tok_"]
        .iter()
        .any(|p| token.starts_with(p));
    if known && is_id(token) {
        Ok(())
    } else {
        Err(Failure::InvalidRequest(
            "the payment source token is not a Stripe PaymentMethod (pm_...) or token (tok_...)"
                .into(),
        ))
    }
}

fn check_id(id: &str, prefix: &str, what: &str) -> Result<(), Failure> {
    if id.starts_with(prefix) && is_id(id) {
        Ok(())
    } else {
        Err(Failure::InvalidRequest(format!("not a Stripe {what} id")))
    }
}

/// Stripe ids are ASCII letters, digits and underscores: safe in a URL path.
fn is_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 255 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;
