//! The Adyen plugin: Commerce Layer payments through Adyen's Checkout API v71
//! (`/payments`, `/payments/{pspReference}/captures|cancels|refunds`) and Adyen's standard
//! HMAC-signed notifications. See README.md for the settings and the mapping tables.

use psp_plugin_sdk::crypto::{hex_encode, sha256};
use psp_plugin_sdk::http::{Request, Response};
use psp_plugin_sdk::types::*;
use psp_plugin_sdk::{CONTRACT_VERSION, Plugin, log, settings};
use serde_json::{Map, Value, json};

mod action;
mod notification;

pub use action::details_body;
/// Reachable natively for the `adyen` fuzz target (fuzz/), which feeds notifications to them.
pub use notification::{event as notification_events, handle as handle_notifications};
pub use notification::{signing_string, verify_item};

/// Setting: the Checkout API key, sent as `X-API-Key`.
pub const API_KEY: &str = "api_key";
/// Setting: the merchant account every request is made for.
pub const MERCHANT_ACCOUNT: &str = "merchant_account";
/// Setting: the Checkout API base URL (with its version).
pub const CHECKOUT_BASE: &str = "checkout_base";
/// Setting: the hex HMAC key of the notification webhook.
pub const HMAC_KEY: &str = "hmac_key";
/// Setting: where the shopper returns after a redirect (required by `/payments`).
pub const RETURN_URL: &str = "return_url";
/// Setting: the currency of zero-amount verifications (tokenize).
pub const VERIFICATION_CURRENCY: &str = "verification_currency";

/// Adyen's test Checkout endpoint, used when `checkout_base` is not set.
pub const DEFAULT_CHECKOUT_BASE: &str = "https://checkout-test.adyen.com/v71";
/// Separates the payment's pspReference from a modification's in the tokens answered for
/// captures, cancels and refunds (`<payment>:<modification>`).
pub const TOKEN_SEPARATOR: char = ':';
/// Adyen caps `Idempotency-Key` at 64 characters.
const MAX_IDEMPOTENCY_KEY: usize = 64;
/// Options keys passed through to `/payments` as they are (3D Secure and risk data).
const PASSED_OPTIONS: &[&str] = &[
    "browserInfo",
    "origin",
    "channel",
    "shopperIP",
    "shopperLocale",
    "riskData",
    "authenticationData",
    "deviceFingerprint",
];

/// The Adyen plugin.
pub struct Adyen;

impl Plugin for Adyen {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "adyen".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            contract: CONTRACT_VERSION.into(),
            operations: vec![
                Operation::Authorize,
                Operation::Capture,
                Operation::Void,
                Operation::Refund,
                Operation::Tokenize,
                Operation::Sale,
                Operation::HandleWebhook,
            ],
            settings: vec![
                SettingSpec::new(
                    API_KEY,
                    true,
                    true,
                    "Adyen Checkout API key (Customer Area > Developers > API credentials), sent as X-API-Key",
                ),
                SettingSpec::new(
                    MERCHANT_ACCOUNT,
                    true,
                    false,
                    "Adyen merchant account the payments are made for",
                ),
                SettingSpec::new(
                    HMAC_KEY,
                    true,
                    true,
                    "Hex HMAC key of the standard notification webhook (verifies additionalData.hmacSignature)",
                ),
                SettingSpec::new(
                    RETURN_URL,
                    true,
                    false,
                    "URL the shopper returns to after a redirect (Adyen's required returnUrl); options.returnUrl overrides it",
                ),
                SettingSpec::new(
                    CHECKOUT_BASE,
                    false,
                    false,
                    "Checkout API base URL with its version (default https://checkout-test.adyen.com/v71; live: https://{PREFIX}-checkout-live.adyenpayments.com/checkout/v71)",
                ),
                SettingSpec::new(
                    VERIFICATION_CURRENCY,
                    false,
                    false,
                    "Currency of the zero-amount verification made to save a card (default EUR)",
                ),
            ],
        }
    }

    fn authorize(req: AuthorizeRequest) -> Result<Outcome, Failure> {
        pay(&req, Capture::Manual)
    }

    /// One `/payments` call with `captureDelayHours: 0` (immediate automatic capture).
    fn sale(req: AuthorizeRequest) -> Result<Outcome, Failure> {
        pay(&req, Capture::Immediate)
    }

    /// Adyen captures partially without a final flag: what stays uncaptured lapses with
    /// the authorization, or is released by a void.
    fn capture(req: CaptureRequest) -> Result<Outcome, Failure> {
        let req = FollowUpRequest {
            idempotency_key: req.idempotency_key,
            amount: req.amount,
            transaction_token: req.transaction_token,
            psp_reference: req.psp_reference,
            reference: req.reference,
            order: req.order,
        };
        modify(&req, Modification::Capture)
    }

    fn void(req: FollowUpRequest) -> Result<Outcome, Failure> {
        modify(&req, Modification::Cancel)
    }

    fn refund(req: FollowUpRequest) -> Result<Outcome, Failure> {
        modify(&req, Modification::Refund)
    }

    fn tokenize(req: TokenizeRequest) -> Result<Tokenized, Failure> {
        tokenize(&req)
    }

    /// `/payments/details` with what the shopper's return (or the Drop-in) produced.
    fn complete(req: CompleteRequest) -> Result<Outcome, Failure> {
        let config = Config::load()?;
        let body = details_body(&req)?;
        let resp = config.post("/payments/details", &req.idempotency_key, &body)?;
        let answer: Value = resp.json()?;
        let merchant_ref = answer["merchantReference"]
            .as_str()
            .unwrap_or(&req.transaction_token)
            .to_owned();
        let outcome = payment_outcome(&answer, req.amount.amount_cents, &merchant_ref)?;
        log::info(&format!(
            "adyen complete: {}",
            answer["resultCode"].as_str().unwrap_or("no resultCode")
        ));
        Ok(outcome)
    }

    fn sync(_req: SyncRequest) -> Result<Outcome, Failure> {
        Err(Failure::Unsupported(
            "Adyen's Checkout API v71 cannot read a payment or modification by reference; \
             Adyen reports outcomes through notifications only"
                .into(),
        ))
    }

    fn handle_webhook(req: WebhookRequest) -> Result<WebhookReply, Failure> {
        let key = settings::require(HMAC_KEY)?;
        let events = notification::handle(&req.body, &key)?;
        Ok(WebhookReply {
            events,
            status: 200,
            content_type: "text/plain".into(),
            body: b"[accepted]".to_vec(),
        })
    }
}

psp_plugin_sdk::export_plugin!(Adyen);

/// How a payment is captured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Capture {
    /// Authorize only: `additionalData.manualCapture = "true"`.
    Manual,
    /// Sale: `captureDelayHours = 0`.
    Immediate,
}

/// The three modifications of a payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Modification {
    Capture,
    Cancel,
    Refund,
}

impl Modification {
    fn path(self) -> &'static str {
        match self {
            Modification::Capture => "captures",
            Modification::Cancel => "cancels",
            Modification::Refund => "refunds",
        }
    }
}

/// The gateway settings every call needs.
struct Config {
    api_key: String,
    merchant_account: String,
    base: String,
}

impl Config {
    fn load() -> Result<Config, Failure> {
        let api_key = settings::require(API_KEY)?;
        let merchant_account = settings::require(MERCHANT_ACCOUNT)?;
        let base = settings::get(CHECKOUT_BASE)
            .map(|b| b.trim().to_owned())
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| DEFAULT_CHECKOUT_BASE.to_owned());
        Ok(Config {
            api_key,
            merchant_account,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    /// POSTs `body` to `{base}{path}` with the API key and the idempotency key.
    fn post(&self, path: &str, idempotency_key: &str, body: &Value) -> Result<Response, Failure> {
        let resp = Request::post(format!("{}{path}", self.base))
            .header("X-API-Key", self.api_key.as_str())
            .header("Idempotency-Key", adyen_idempotency_key(idempotency_key))
            .header("Accept", "application/json")
            .json(body)
            .send()?;
        check_status(resp)
    }
}

/// The host's key as is when Adyen accepts it, else its SHA-256 in hex (64 characters):
/// stable across retries either way.
pub fn adyen_idempotency_key(key: &str) -> String {
    if key.len() <= MAX_IDEMPOTENCY_KEY && key.is_ascii() {
        key.to_owned()
    } else {
        hex_encode(sha256(key.as_bytes()))
    }
}

/// Turns an error answer into a failure: Adyen's `ServiceError` (`status`, `errorCode`,
/// `errorType`, `message`) names what went wrong; the body is otherwise never quoted.
fn check_status(resp: Response) -> Result<Response, Failure> {
    if resp.is_success() {
        return Ok(resp);
    }
    let status = resp.status;
    let error: Value = resp.json().unwrap_or(Value::Null);
    let text = |k: &str| error.get(k).and_then(Value::as_str).unwrap_or("");
    let detail = format!(
        "Adyen answered HTTP {status} (errorCode `{}`, errorType `{}`): {}",
        text("errorCode"),
        text("errorType"),
        text("message")
    );
    log::warn(&detail);
    Err(match status {
        401 | 403 => Failure::Misconfigured(detail),
        400 | 404 | 409 | 422 => Failure::InvalidRequest(detail),
        429 | 500.. => Failure::Unreachable(detail),
        _ => Failure::BadResponse(detail),
    })
}

/// `"<order number>-<reference>"` (the CL payment id alone without an order number).
pub fn merchant_reference(order: Option<&Order>, reference: &str) -> String {
    match order
        .and_then(|o| o.number.as_deref())
        .filter(|n| !n.is_empty())
    {
        Some(number) => format!("{number}-{reference}"),
        None => reference.to_owned(),
    }
}

/// A `shopperReference` for a customer known only by email: not the email itself (Adyen
/// asks for no personal data there) but a stable digest of it.
pub fn shopper_reference_for_email(email: &str) -> String {
    let digest = hex_encode(sha256(email.trim().to_lowercase().as_bytes()));
    format!("cl-{}", &digest[..32])
}

fn amount(money: &Money) -> Value {
    json!({"value": money.amount_cents, "currency": money.currency.to_uppercase()})
}

/// Percent-encodes a path segment (pspReferences are alphanumeric; anything else is escaped).
fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn parse_options(options_json: Option<&str>) -> Result<Map<String, Value>, Failure> {
    match options_json.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(Map::new()),
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(Value::Null) => Ok(Map::new()),
            _ => Err(Failure::InvalidRequest(
                "options must be a JSON object".into(),
            )),
        },
    }
}

/// A payment source token that is itself Adyen payment method data (a JSON object such as
/// Adyen's encrypted card fields), or `None` for a stored payment method id.
fn token_payment_method(token: &str) -> Result<Option<Map<String, Value>>, Failure> {
    let token = token.trim();
    if !token.starts_with('{') {
        return Ok(None);
    }
    match serde_json::from_str::<Value>(token) {
        Ok(Value::Object(map)) => Ok(Some(map)),
        _ => Err(Failure::InvalidRequest(
            "the payment source token starts like JSON but is not a JSON object".into(),
        )),
    }
}

/// The shopper reference: the customer token, else derived from the email.
fn shopper_reference(customer_token: Option<&str>, email: Option<&str>) -> Option<String> {
    customer_token
        .map(str::trim)
        .filter(|t| t.len() >= 3)
        .map(str::to_owned)
        .or_else(|| {
            email
                .filter(|e| !e.trim().is_empty())
                .map(shopper_reference_for_email)
        })
}

/// The payment's own `options.returnUrl`, else the shopper's way back the host gives (its
/// return route, or the platform's URL), else the gateway's setting.
fn return_url(options: &Map<String, Value>, shopper: Option<&Shopper>) -> Result<String, Failure> {
    let given = options.get("returnUrl").and_then(Value::as_str);
    let shopper = shopper.and_then(|s| s.return_url.as_deref());
    match given.into_iter().chain(shopper).find(|u| !u.is_empty()) {
        Some(url) => Ok(url.to_owned()),
        None => settings::require(RETURN_URL),
    }
}

/// Builds the `/payments` body of an authorize or sale.
pub fn payment_body(
    req: &AuthorizeRequest,
    merchant_account: &str,
    sale: bool,
) -> Result<Value, Failure> {
    let options = parse_options(req.options_json.as_deref())?;
    let email = req.order.as_ref().and_then(|o| o.customer_email.as_deref());
    let mut body = Map::new();
    body.insert("amount".into(), amount(&req.amount));
    body.insert(
        "reference".into(),
        json!(merchant_reference(req.order.as_ref(), &req.reference)),
    );
    body.insert("merchantAccount".into(), json!(merchant_account));
    body.insert(
        "returnUrl".into(),
        json!(return_url(&options, req.shopper.as_ref())?),
    );

    let given = match options.get("paymentMethod") {
        Some(Value::Object(pm)) => Some(pm.clone()),
        Some(_) => {
            return Err(Failure::InvalidRequest(
                "options.paymentMethod must be a JSON object".into(),
            ));
        }
        None => token_payment_method(&req.payment_source_token)?,
    };
    match given {
        // Payment method data from Adyen's Drop-in / Components: a shopper-present payment,
        // saved for later when the options ask for it.
        Some(pm) => {
            body.insert("paymentMethod".into(), Value::Object(pm));
            body.insert("shopperInteraction".into(), json!("Ecommerce"));
            if options.get("storePaymentMethod") == Some(&Value::Bool(true)) {
                let shopper =
                    shopper_reference(req.customer_token.as_deref(), email).ok_or_else(|| {
                        Failure::InvalidRequest(
                            "storing a payment method needs a customer token or email".into(),
                        )
                    })?;
                body.insert("storePaymentMethod".into(), json!(true));
                body.insert("shopperReference".into(), json!(shopper));
                body.insert("recurringProcessingModel".into(), json!("CardOnFile"));
            } else if let Some(shopper) = shopper_reference(req.customer_token.as_deref(), None) {
                body.insert("shopperReference".into(), json!(shopper));
            }
        }
        // A stored payment method id (saved by tokenize): card on file.
        None => {
            let id = req.payment_source_token.trim();
            if id.is_empty() {
                return Err(Failure::InvalidRequest(
                    "no payment source token and no options.paymentMethod".into(),
                ));
            }
            let shopper =
                shopper_reference(req.customer_token.as_deref(), email).ok_or_else(|| {
                    Failure::InvalidRequest(
                        "a stored payment method needs the customer token (shopperReference)"
                            .into(),
                    )
                })?;
            body.insert(
                "paymentMethod".into(),
                json!({"type": "scheme", "storedPaymentMethodId": id}),
            );
            body.insert("shopperReference".into(), json!(shopper));
            body.insert("shopperInteraction".into(), json!("ContAuth"));
            let model = options
                .get("recurringProcessingModel")
                .and_then(Value::as_str)
                .unwrap_or("CardOnFile");
            body.insert("recurringProcessingModel".into(), json!(model));
        }
    }
    if sale {
        body.insert("captureDelayHours".into(), json!(0));
    } else {
        body.insert("additionalData".into(), json!({"manualCapture": "true"}));
    }
    if let Some(email) = email.filter(|e| !e.is_empty()) {
        body.insert("shopperEmail".into(), json!(email));
    }
    if let Some(country) = req
        .order
        .as_ref()
        .and_then(|o| o.country_code.as_deref())
        .filter(|c| c.len() == 2)
    {
        body.insert("countryCode".into(), json!(country.to_uppercase()));
    }
    for key in PASSED_OPTIONS {
        if let Some(v) = options.get(*key) {
            body.insert((*key).into(), v.clone());
        }
    }
    Ok(Value::Object(body))
}

fn pay(req: &AuthorizeRequest, capture: Capture) -> Result<Outcome, Failure> {
    let config = Config::load()?;
    let body = payment_body(req, &config.merchant_account, capture == Capture::Immediate)?;
    let resp = config.post("/payments", &req.idempotency_key, &body)?;
    let answer: Value = resp.json()?;
    let merchant_ref = body["reference"].as_str().unwrap_or_default();
    payment_outcome(&answer, req.amount.amount_cents, merchant_ref)
}

/// Maps a `/payments` answer (`PaymentResponse`) to an outcome. `merchant_reference` is what
/// a pending payment is known by when Adyen answered an action without a pspReference.
pub fn payment_outcome(
    answer: &Value,
    amount_cents: u64,
    merchant_reference: &str,
) -> Result<Outcome, Failure> {
    let text = |k: &str| {
        answer
            .get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let psp_reference = text("pspReference");
    let result_code = text("resultCode")
        .ok_or_else(|| Failure::BadResponse("Adyen's answer has no resultCode".into()))?;
    let need_reference = || {
        psp_reference.map(str::to_owned).ok_or_else(|| {
            Failure::BadResponse(format!(
                "Adyen answered {result_code} without a pspReference"
            ))
        })
    };
    match result_code {
        "Authorised" => {
            let reference = need_reference()?;
            let mut approved = Approved {
                transaction_token: reference.clone(),
                psp_reference: reference,
                amount_cents,
                messages: vec![format!("Adyen: {result_code}")],
                metadata: vec![Pair::new("resultCode", result_code)],
            };
            if let Some(code) = answer["additionalData"]["authCode"].as_str() {
                approved.metadata.push(Pair::new("authCode", code));
            }
            Ok(Outcome::Approved(approved))
        }
        "Received" | "Pending" | "PresentToShopper" => {
            let reference = need_reference()?;
            Ok(Outcome::Pending(Pending {
                transaction_token: reference.clone(),
                amount_cents,
                psp_reference: reference,
                metadata: vec![Pair::new("resultCode", result_code)],
            }))
        }
        "RedirectShopper" | "IdentifyShopper" | "ChallengeShopper" => {
            // The notification of such a payment carries its pspReference when Adyen gave
            // one, and its merchantReference in every case.
            let reference = psp_reference.unwrap_or(merchant_reference).to_owned();
            let metadata = vec![Pair::new("resultCode", result_code)];
            Ok(match answer.get("action").filter(|a| a.is_object()) {
                Some(a) => Outcome::ActionRequired(ActionRequired {
                    transaction_token: reference.clone(),
                    psp_reference: reference,
                    amount_cents,
                    action: action::shopper_action(a),
                    metadata,
                }),
                // Nothing for the shopper to follow: only a notification will tell.
                None => Outcome::Pending(Pending {
                    transaction_token: reference.clone(),
                    amount_cents,
                    psp_reference: reference,
                    metadata,
                }),
            })
        }
        "Refused" | "Error" | "Cancelled" => Ok(Outcome::Declined(Declined {
            code: text("refusalReasonCode")
                .map(str::to_owned)
                .unwrap_or_else(|| result_code.to_lowercase()),
            message: text("refusalReason")
                .map(str::to_owned)
                .unwrap_or_else(|| format!("Adyen: {result_code}")),
            transaction_token: psp_reference.map(str::to_owned),
            psp_reference: psp_reference.map(str::to_owned),
        })),
        other => Err(Failure::BadResponse(format!(
            "Adyen answered the unexpected resultCode `{other}`"
        ))),
    }
}

/// The payment's pspReference in a token the plugin answered: the token itself for a payment,
/// the part before [`TOKEN_SEPARATOR`] for a modification.
pub fn payment_reference(token: &str) -> &str {
    token.split(TOKEN_SEPARATOR).next().unwrap_or(token).trim()
}

/// Builds the body of a capture, cancel or refund.
fn modification_body(req: &FollowUpRequest, merchant_account: &str, m: Modification) -> Value {
    let mut body = json!({
        "merchantAccount": merchant_account,
        "reference": merchant_reference(req.order.as_ref(), &req.reference),
    });
    if m != Modification::Cancel {
        body["amount"] = amount(&req.amount);
    }
    body
}

fn modify(req: &FollowUpRequest, m: Modification) -> Result<Outcome, Failure> {
    let config = Config::load()?;
    let payment = payment_reference(&req.transaction_token);
    if payment.is_empty() {
        return Err(Failure::InvalidRequest(
            "no Adyen pspReference to act upon".into(),
        ));
    }
    let body = modification_body(req, &config.merchant_account, m);
    let path = format!("/payments/{}/{}", path_segment(payment), m.path());
    let resp = config.post(&path, &req.idempotency_key, &body)?;
    let answer: Value = resp.json()?;
    modification_outcome(&answer, payment, req.amount.amount_cents)
}

/// Maps a capture / cancel / refund answer (`status: received`) to a pending outcome: Adyen
/// reports the result in a CAPTURE / CANCELLATION / REFUND notification carrying the
/// modification's own pspReference.
pub fn modification_outcome(
    answer: &Value,
    payment: &str,
    amount_cents: u64,
) -> Result<Outcome, Failure> {
    let status = answer["status"].as_str().unwrap_or_default();
    if status != "received" {
        return Err(Failure::BadResponse(format!(
            "Adyen answered the modification with status `{status}`, expected `received`"
        )));
    }
    let reference = answer["pspReference"]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Failure::BadResponse("the modification has no pspReference".into()))?;
    Ok(Outcome::Pending(Pending {
        transaction_token: format!("{payment}{TOKEN_SEPARATOR}{reference}"),
        amount_cents,
        psp_reference: reference.to_owned(),
        metadata: vec![
            Pair::new("status", status),
            Pair::new("paymentPspReference", payment),
        ],
    }))
}

/// Builds the zero-amount `/payments` body that saves `payment_method` for `shopper`.
fn tokenize_body(
    req: &TokenizeRequest,
    merchant_account: &str,
    payment_method: Map<String, Value>,
    shopper: &str,
    currency: &str,
) -> Result<Value, Failure> {
    let mut body = json!({
        "amount": {"value": 0, "currency": currency},
        "reference": merchant_reference(req.order.as_ref(), &req.reference),
        "merchantAccount": merchant_account,
        "paymentMethod": payment_method,
        "returnUrl": settings::require(RETURN_URL)?,
        "storePaymentMethod": true,
        "shopperReference": shopper,
        "recurringProcessingModel": "CardOnFile",
        "shopperInteraction": "Ecommerce",
    });
    let email = req
        .customer_email
        .as_deref()
        .or_else(|| req.order.as_ref().and_then(|o| o.customer_email.as_deref()));
    if let Some(email) = email.filter(|e| !e.is_empty()) {
        body["shopperEmail"] = json!(email);
    }
    Ok(body)
}

fn tokenize(req: &TokenizeRequest) -> Result<Tokenized, Failure> {
    let email = req
        .customer_email
        .as_deref()
        .or_else(|| req.order.as_ref().and_then(|o| o.customer_email.as_deref()));
    let shopper = shopper_reference(req.customer_token.as_deref(), email).ok_or_else(|| {
        Failure::InvalidRequest("saving a card needs a customer token or email".into())
    })?;
    let Some(payment_method) = token_payment_method(&req.payment_source_token)? else {
        // Already a stored payment method id (saved with storePaymentMethod on a payment).
        let id = req.payment_source_token.trim();
        if id.is_empty() {
            return Err(Failure::InvalidRequest("no payment source token".into()));
        }
        return Ok(Tokenized {
            customer_token: Some(shopper),
            payment_source_token: id.to_owned(),
        });
    };
    let config = Config::load()?;
    let currency = settings::get(VERIFICATION_CURRENCY)
        .map(|c| c.trim().to_uppercase())
        .filter(|c| c.len() == 3)
        .unwrap_or_else(|| "EUR".into());
    let body = tokenize_body(
        req,
        &config.merchant_account,
        payment_method,
        &shopper,
        &currency,
    )?;
    let resp = config.post("/payments", &req.idempotency_key, &body)?;
    let answer: Value = resp.json()?;
    tokenized(&answer, shopper)
}

/// Maps the zero-amount verification's answer to the saved payment method.
pub fn tokenized(answer: &Value, shopper: String) -> Result<Tokenized, Failure> {
    let result_code = answer["resultCode"].as_str().unwrap_or_default();
    match result_code {
        "Authorised" => {}
        "Refused" | "Error" | "Cancelled" => {
            let reason = answer["refusalReason"].as_str().unwrap_or(result_code);
            return Err(Failure::InvalidRequest(format!(
                "Adyen refused to verify the card: {reason}"
            )));
        }
        "" => {
            return Err(Failure::BadResponse(
                "Adyen's answer has no resultCode".into(),
            ));
        }
        other => {
            return Err(Failure::InvalidRequest(format!(
                "Adyen answered {other}: the card needs shopper interaction (3D Secure); \
                 save it during a payment with options.storePaymentMethod instead"
            )));
        }
    }
    let data = &answer["additionalData"];
    let id = data["tokenization.storedPaymentMethodId"]
        .as_str()
        .or_else(|| data["recurring.recurringDetailReference"].as_str())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            Failure::BadResponse(
                "Adyen verified the card but returned no stored payment method id \
                 (is tokenization enabled for the merchant account?)"
                    .into(),
            )
        })?;
    Ok(Tokenized {
        customer_token: Some(shopper),
        payment_source_token: id.to_owned(),
    })
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;
