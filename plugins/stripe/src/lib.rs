//! The Stripe plugin: payments through Stripe's PaymentIntents API.
//!
//! - authorize / sale: create and confirm a PaymentIntent (`capture_method` manual or
//!   automatic) on a PaymentMethod (`pm_...`) or a legacy card token (`tok_...`).
//! - capture / void: capture or cancel that PaymentIntent; refund: create a Refund on it.
//! - tokenize: find or create the customer (by email) and attach the PaymentMethod.
//! - sync: read the PaymentIntent (or Refund) and map its status.
//! - handle-webhook: verify `Stripe-Signature` and turn Stripe events into PSP events keyed by
//!   the PaymentIntent id (refund events by the Refund id).
//!
//! The status mapping is in README.md. Every call is stateless; the host's idempotency key is
//! forwarded as Stripe's `Idempotency-Key`.

use std::time::{SystemTime, UNIX_EPOCH};

use psp_plugin_sdk::crypto::{constant_time_eq, hex_decode, hmac_sha256};
use psp_plugin_sdk::http::{Form, Method, Request, Response};
use psp_plugin_sdk::types::*;
use psp_plugin_sdk::{CONTRACT_VERSION, Plugin, log, settings};
use serde_json::Value;

/// The setting holding the secret API key (`sk_live_...` / `sk_test_...` / `rk_...`).
pub const SECRET_KEY: &str = "secret_key";
/// The setting overriding the API's base URL (tests, proxies).
pub const API_BASE: &str = "api_base";
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
        let path = format!("/v1/payment_intents/{intent}/capture");
        match api.call(Method::Post, &path, Some(&form), Some(&req.idempotency_key))? {
            Answer::Ok(pi) => intent_outcome(&pi, Operation::Capture, req.amount.amount_cents),
            Answer::Declined(d) => Ok(Outcome::Declined(d)),
        }
    }

    fn void(req: FollowUpRequest) -> Result<Outcome, Failure> {
        let api = Api::from_settings()?;
        let intent = intent_id(&req.transaction_token, req.psp_reference.as_deref())?;
        let path = format!("/v1/payment_intents/{intent}/cancel");
        match api.call(Method::Post, &path, None, Some(&req.idempotency_key))? {
            Answer::Ok(pi) => intent_outcome(&pi, Operation::Void, req.amount.amount_cents),
            Answer::Declined(d) => Ok(Outcome::Declined(d)),
        }
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
        let intent = [
            req.psp_reference.as_deref(),
            req.transaction_token.as_deref(),
        ]
        .into_iter()
        .flatten()
        .find(|id| id.starts_with("pi_"))
        .ok_or_else(|| {
            Failure::InvalidRequest("the transaction is not a Stripe PaymentIntent".into())
        })?;
        let pi = api.ok(
            Method::Get,
            &format!("/v1/payment_intents/{intent}"),
            None,
            None,
        )?;
        intent_outcome(&pi, req.operation, amount)
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

// ---------------------------------------------------------------------------------------
// Stripe's API
// ---------------------------------------------------------------------------------------

/// What Stripe answered: the object, or a card error (a business decline).
#[derive(Debug)]
enum Answer {
    Ok(Value),
    Declined(Declined),
}

struct Api {
    base: String,
    key: String,
}

impl Api {
    fn from_settings() -> Result<Api, Failure> {
        let key = settings::require(SECRET_KEY)?;
        let base = settings::get(API_BASE)
            .map(|b| b.trim().trim_end_matches('/').to_owned())
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| DEFAULT_API_BASE.to_owned());
        Ok(Api { base, key })
    }

    /// Performs one call and classifies the answer.
    fn call(
        &self,
        method: Method,
        path: &str,
        form: Option<&Form>,
        idempotency_key: Option<&str>,
    ) -> Result<Answer, Failure> {
        let mut request = Request::new(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .header("Stripe-Version", STRIPE_VERSION);
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        if let Some(form) = form {
            request = request.form(form);
        }
        let response = request.send()?;
        classify(method, path, &response)
    }

    /// A call whose card errors are not declines of a payment (tokenize, reads).
    fn ok(
        &self,
        method: Method,
        path: &str,
        form: Option<&Form>,
        idempotency_key: Option<&str>,
    ) -> Result<Value, Failure> {
        match self.call(method, path, form, idempotency_key)? {
            Answer::Ok(value) => Ok(value),
            Answer::Declined(d) => Err(Failure::InvalidRequest(format!(
                "Stripe declined the payment method ({}): {}",
                d.code, d.message
            ))),
        }
    }
}

/// Maps an HTTP answer of Stripe: 2xx -> the object; 402 or `card_error` -> a decline;
/// 5xx and 429 -> unreachable; 401/403 -> misconfigured; other 4xx -> invalid request.
fn classify(method: Method, path: &str, response: &Response) -> Result<Answer, Failure> {
    let what = format!("{method} {}", endpoint_name(path));
    if response.status >= 500 {
        return Err(Failure::Unreachable(format!(
            "Stripe answered HTTP {} to {what}",
            response.status
        )));
    }
    if response.status == 429 {
        return Err(Failure::Unreachable(format!(
            "Stripe rate-limited {what} (HTTP 429)"
        )));
    }
    if response.is_success() {
        return response.json::<Value>().map(Answer::Ok);
    }
    let body: Value = response.json().unwrap_or(Value::Null);
    let error = &body["error"];
    let text = |field: &str| error[field].as_str().filter(|s| !s.is_empty());
    let code = text("code");
    let message = text("message").unwrap_or("no message").to_owned();
    if response.status == 402 || text("type") == Some("card_error") {
        let code = text("decline_code")
            .or(code)
            .unwrap_or("card_declined")
            .to_owned();
        let transaction_token = error
            .get("payment_intent")
            .and_then(id_or_object)
            .filter(|id| id.starts_with("pi_"));
        return Ok(Answer::Declined(Declined {
            code,
            message,
            psp_reference: transaction_token.clone(),
            transaction_token,
        }));
    }
    // The same key is still being processed by Stripe (our earlier try of this very call):
    // its outcome is not known yet, so this is not a refusal; the host re-sends later.
    if response.status == 409 && code == Some("idempotency_key_in_use") {
        return Err(Failure::Unreachable(format!(
            "Stripe is still processing an earlier {what} with this idempotency key (HTTP 409)"
        )));
    }
    let code = code.unwrap_or("no code");
    match response.status {
        // Stripe's message quotes part of the key: do not pass it on.
        401 => Err(Failure::Misconfigured(format!(
            "Stripe rejected the secret key (HTTP 401 to {what})"
        ))),
        403 => Err(Failure::Misconfigured(format!(
            "the secret key may not call {what} (HTTP 403, {code})"
        ))),
        status => Err(Failure::InvalidRequest(format!(
            "Stripe refused {what} (HTTP {status}, {code}): {message}"
        ))),
    }
}

/// `/v1/payment_intents/pi_123/capture` -> `/v1/payment_intents/{id}/capture` (no ids in
/// messages that end up in logs).
fn endpoint_name(path: &str) -> String {
    path.split('?')
        .next()
        .unwrap_or_default()
        .split('/')
        .map(|seg| match seg.find('_') {
            Some(i) if i <= 4 && seg.len() > i + 4 => "{id}",
            _ => seg,
        })
        .collect::<Vec<_>>()
        .join("/")
}

// ---------------------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------------------

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

/// The PaymentIntent a follow-up acts upon (its token, or the PSP reference).
fn intent_id<'a>(token: &'a str, psp_reference: Option<&'a str>) -> Result<&'a str, Failure> {
    [Some(token), psp_reference]
        .into_iter()
        .flatten()
        .find(|id| id.starts_with("pi_") && is_id(id))
        .ok_or_else(|| {
            Failure::InvalidRequest("the transaction token is not a Stripe PaymentIntent".into())
        })
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

// ---------------------------------------------------------------------------------------
// Status mapping
// ---------------------------------------------------------------------------------------

/// Maps a PaymentIntent to the outcome of `op` (see the table in README.md).
pub fn intent_outcome(pi: &Value, op: Operation, requested: u64) -> Result<Outcome, Failure> {
    let id = id_of(pi, "payment intent")?;
    let status = pi["status"]
        .as_str()
        .ok_or_else(|| Failure::BadResponse("the PaymentIntent has no status".into()))?;
    let amount = pi["amount"].as_u64().unwrap_or(requested);
    let pending = || Outcome::pending(id.clone(), amount, id.clone());
    let declined = |code: String, message: String| {
        Outcome::Declined(Declined {
            code,
            message,
            transaction_token: Some(id.clone()),
            psp_reference: Some(id.clone()),
        })
    };
    let failed = || {
        let (code, message) = last_error(pi);
        declined(
            code.unwrap_or_else(|| "payment_failed".into()),
            message.unwrap_or_else(|| "Stripe could not complete the payment".into()),
        )
    };
    let canceled = || {
        let reason = pi["cancellation_reason"].as_str().unwrap_or("canceled");
        declined(
            "payment_intent_canceled".into(),
            format!("the PaymentIntent is canceled ({reason})"),
        )
    };
    let unexpected = || {
        Err(Failure::BadResponse(format!(
            "unexpected PaymentIntent status `{status}` for {}",
            op_name(op)
        )))
    };
    let outcome = match (op, status) {
        (Operation::Void, "canceled") => Outcome::approved(id.clone(), requested),
        (Operation::Void, _) => declined(
            "payment_intent_not_canceled".into(),
            format!("the PaymentIntent is {status}, not canceled"),
        ),
        (_, "canceled") => canceled(),
        (Operation::Authorize, "requires_capture") => Outcome::approved(
            id.clone(),
            pi["amount_capturable"]
                .as_u64()
                .filter(|a| *a > 0)
                .unwrap_or(amount),
        ),
        (Operation::Authorize | Operation::Sale, "succeeded") => Outcome::approved(
            id.clone(),
            pi["amount_received"]
                .as_u64()
                .filter(|a| *a > 0)
                .unwrap_or(amount),
        ),
        (Operation::Capture, "succeeded") => Outcome::approved(
            id.clone(),
            pi["amount_received"]
                .as_u64()
                .filter(|a| *a > 0)
                .unwrap_or(requested),
        ),
        (
            Operation::Authorize | Operation::Sale | Operation::Capture,
            "processing" | "requires_action" | "requires_confirmation",
        ) => pending(),
        // A sale that stopped at an authorization (it should not), or a capture still on its
        // way: not final either way.
        (Operation::Sale | Operation::Capture, "requires_capture") => pending(),
        (
            Operation::Authorize | Operation::Sale | Operation::Capture,
            "requires_payment_method",
        ) => failed(),
        _ => return unexpected(),
    };
    Ok(outcome)
}

/// Maps a Refund: succeeded -> approved, pending -> pending, failed/canceled -> declined.
pub fn refund_outcome(refund: &Value, requested: u64) -> Result<Outcome, Failure> {
    let id = id_of(refund, "refund")?;
    let amount = refund["amount"].as_u64().unwrap_or(requested);
    match refund["status"].as_str() {
        Some("succeeded") => Ok(Outcome::approved(id, amount)),
        Some("pending" | "requires_action") => Ok(Outcome::pending(id.clone(), amount, id)),
        Some(status @ ("failed" | "canceled")) => Ok(Outcome::Declined(Declined {
            code: refund["failure_reason"]
                .as_str()
                .map(|r| format!("refund_{r}"))
                .unwrap_or_else(|| format!("refund_{status}")),
            message: format!("Stripe reports the refund {status}"),
            psp_reference: Some(id.clone()),
            transaction_token: Some(id),
        })),
        other => Err(Failure::BadResponse(format!(
            "unexpected Refund status {}",
            other.unwrap_or("(none)")
        ))),
    }
}

/// `last_payment_error`'s decline code (or code) and message.
fn last_error(pi: &Value) -> (Option<String>, Option<String>) {
    let error = &pi["last_payment_error"];
    let text = |f: &str| {
        error[f]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    (
        text("decline_code").or_else(|| text("code")),
        text("message"),
    )
}

fn id_of(object: &Value, what: &str) -> Result<String, Failure> {
    object["id"]
        .as_str()
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| Failure::BadResponse(format!("Stripe answered a {what} without an id")))
}

/// An expandable field: the id, or the expanded object's id.
fn id_or_object(value: &Value) -> Option<String> {
    match value {
        Value::String(id) if !id.is_empty() => Some(id.clone()),
        Value::Object(_) => value["id"].as_str().map(str::to_owned),
        _ => None,
    }
}

fn op_name(op: Operation) -> &'static str {
    match op {
        Operation::Authorize => "authorize",
        Operation::Capture => "capture",
        Operation::Void => "void",
        Operation::Refund => "refund",
        Operation::Tokenize => "tokenize",
        Operation::Sale => "sale",
        Operation::Sync => "sync",
        Operation::HandleWebhook => "handle-webhook",
        Operation::Complete => "complete",
    }
}

/// A log-safe summary of an outcome.
fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Approved(a) => format!("approved {}", redact(&a.transaction_token)),
        Outcome::Pending(p) => format!("pending {}", redact(&p.transaction_token)),
        Outcome::Declined(d) => format!("declined ({})", d.code),
        Outcome::ActionRequired(r) => format!("action required {}", redact(&r.transaction_token)),
    }
}

/// `pi_3Nx...Kq9` -> `pi_…Kq9`: enough to correlate, never a whole token.
pub fn redact(id: &str) -> String {
    let prefix = id.find('_').map_or("", |i| &id[..=i]);
    let tail: String = id
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    if id.len() <= prefix.len() + 8 {
        format!("{prefix}…")
    } else {
        format!("{prefix}…{tail}")
    }
}

// ---------------------------------------------------------------------------------------
// Webhooks
// ---------------------------------------------------------------------------------------

/// Checks a `Stripe-Signature` header (`t=<unix secs>,v1=<hex>[,v1=<hex>...]`): some `v1`
/// must be the HMAC-SHA256 of `"{t}.{body}"` keyed with one of `secrets`, and `t` within
/// [`SIGNATURE_TOLERANCE_SECS`] of `now`. Comparisons are constant time.
pub fn verify_signature(
    header: &str,
    body: &[u8],
    secrets: &[&str],
    now: u64,
) -> Result<(), Failure> {
    let unauthenticated =
        |why: &str| Failure::Unauthenticated(format!("{SIGNATURE_HEADER}: {why}"));
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for item in header.split(',') {
        let Some((key, value)) = item.trim().split_once('=') else {
            continue;
        };
        match key.trim() {
            "t" => timestamp = value.trim().parse::<u64>().ok(),
            "v1" => {
                if let Ok(sig) = hex_decode(value.trim()) {
                    signatures.push(sig);
                }
            }
            _ => {}
        }
    }
    let t = timestamp.ok_or_else(|| unauthenticated("no valid timestamp"))?;
    if signatures.is_empty() {
        return Err(unauthenticated("no v1 signature"));
    }
    if secrets.is_empty() {
        return Err(Failure::Misconfigured(format!(
            "setting `{WEBHOOK_SECRET}` is empty"
        )));
    }
    let mut signed = t.to_string().into_bytes();
    signed.push(b'.');
    signed.extend_from_slice(body);
    let mut matched = false;
    for secret in secrets {
        let expected = hmac_sha256(secret.as_bytes(), &signed);
        for given in &signatures {
            // No early exit: every candidate is compared.
            matched |= constant_time_eq(given, &expected);
        }
    }
    if !matched {
        return Err(unauthenticated("no signature matches the body"));
    }
    if now.abs_diff(t) > SIGNATURE_TOLERANCE_SECS {
        return Err(unauthenticated("timestamp outside the tolerance"));
    }
    Ok(())
}

/// Turns a Stripe event into PSP events; unknown types give none.
pub fn events_of(event: &Value) -> Vec<PspEvent> {
    let object = &event["data"]["object"];
    let id = object["id"].as_str().unwrap_or_default().to_owned();
    if id.is_empty() {
        return Vec::new();
    }
    let kind = event["type"].as_str().unwrap_or_default();
    let currency = object["currency"]
        .as_str()
        .unwrap_or_default()
        .to_uppercase();
    let ev = |status, kind, amount_cents: Option<u64>| PspEvent {
        psp_reference: id.clone(),
        transaction_token: None,
        status,
        kind,
        code: None,
        message: None,
        amount: amount_cents
            .filter(|_| !currency.is_empty())
            .map(|cents| Money::new(cents, currency.clone())),
    };
    match kind {
        "payment_intent.amount_capturable_updated" => vec![ev(
            FinalStatus::Succeeded,
            Some(EventKind::Authorized),
            object["amount_capturable"].as_u64(),
        )],
        // Succeeded settles whatever is pending on the PaymentIntent: a sale, a capture, or an
        // authorization (captured meanwhile, which implies it was authorized).
        "payment_intent.succeeded" => vec![ev(
            FinalStatus::Succeeded,
            None,
            object["amount_received"]
                .as_u64()
                .filter(|a| *a > 0)
                .or_else(|| object["amount"].as_u64()),
        )],
        "payment_intent.payment_failed" => {
            let (code, message) = last_error(object);
            vec![PspEvent {
                code: Some(code.unwrap_or_else(|| "payment_failed".into())),
                message,
                ..ev(FinalStatus::Failed, None, None)
            }]
        }
        // A cancel completes a void and fails anything else still pending.
        "payment_intent.canceled" => {
            let reason = object["cancellation_reason"].as_str().unwrap_or("canceled");
            let mut events = vec![ev(FinalStatus::Succeeded, Some(EventKind::Voided), None)];
            // Captured covers both a sale and a capture.
            for op in [EventKind::Authorized, EventKind::Captured] {
                events.push(PspEvent {
                    code: Some("payment_intent_canceled".into()),
                    message: Some(format!("the PaymentIntent was canceled ({reason})")),
                    ..ev(FinalStatus::Failed, Some(op), None)
                });
            }
            events
        }
        "charge.refunded" => object["refunds"]["data"]
            .as_array()
            .map(|refunds| refunds.iter().filter_map(refund_event).collect())
            .unwrap_or_default(),
        "charge.refund.updated" | "refund.updated" | "refund.created" | "refund.failed" => {
            refund_event(object).into_iter().collect()
        }
        _ => Vec::new(),
    }
}

/// A final Refund as a PSP event keyed by its id; `None` while it is pending.
fn refund_event(refund: &Value) -> Option<PspEvent> {
    let id = refund["id"].as_str().filter(|id| id.starts_with("re_"))?;
    let (status, code) = match refund["status"].as_str()? {
        "succeeded" => (FinalStatus::Succeeded, None),
        status @ ("failed" | "canceled") => (
            FinalStatus::Failed,
            Some(
                refund["failure_reason"]
                    .as_str()
                    .map(|r| format!("refund_{r}"))
                    .unwrap_or_else(|| format!("refund_{status}")),
            ),
        ),
        _ => return None,
    };
    let currency = refund["currency"]
        .as_str()
        .unwrap_or_default()
        .to_uppercase();
    Some(PspEvent {
        psp_reference: id.to_owned(),
        transaction_token: None,
        status,
        kind: Some(EventKind::Refunded),
        message: code
            .as_ref()
            .map(|_| "Stripe reports the refund failed".to_owned()),
        code,
        amount: refund["amount"]
            .as_u64()
            .filter(|_| !currency.is_empty())
            .map(|cents| Money::new(cents, currency)),
    })
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;
