//! Native unit tests: the SDK harness stands in for the host and for Stripe.

use psp_plugin_sdk::crypto::{hex_encode, hmac_sha256};
use psp_plugin_sdk::http::{HttpError, Method, Request};
use psp_plugin_sdk::testing::{self, Harness, Reply};
use serde_json::{Value, json};

use super::*;

const KEY: &str = "sk_test_unit_51Hx9QaZ";
const WHSEC: &str = "whsec_unit_test_8f3a1c";
const BASE: &str = "https://api.stripe.com";

fn harness() -> Harness {
    Harness::new()
        .setting(SECRET_KEY, KEY)
        .setting(WEBHOOK_SECRET, WHSEC)
}

fn intent(id: &str, status: &str, amount: u64) -> Value {
    json!({"id": id, "object": "payment_intent", "status": status, "amount": amount,
           "currency": "eur", "amount_capturable": 0, "amount_received": 0})
}

fn card_error(code: &str, decline_code: Option<&str>, pi: Option<&str>) -> Value {
    let mut error =
        json!({"type": "card_error", "code": code, "message": "Your card was declined."});
    if let Some(d) = decline_code {
        error["decline_code"] = json!(d);
    }
    if let Some(pi) = pi {
        error["payment_intent"] = intent(pi, "requires_payment_method", 1000);
    }
    json!({ "error": error })
}

/// The request's form body decoded into (key, value) pairs.
fn form_of(req: &Request) -> Vec<(String, String)> {
    req.body_text()
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

fn field<'a>(form: &'a [(String, String)], key: &str) -> Option<&'a str> {
    form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn authorize_req(token: &str) -> AuthorizeRequest {
    let mut req = testing::authorize_request(token, 12200, "EUR");
    req.customer_token = Some("cus_known123".into());
    req.order = Some(Order {
        id: "ordXyZ1234".into(),
        number: Some("4200001".into()),
        customer_email: Some("ann@example.com".into()),
        language_code: None,
        country_code: None,
        billing_address: None,
        shipping_address: None,
        line_items: vec![],
        metadata: vec![],
    });
    req
}

fn approved(outcome: &Result<Outcome, Failure>) -> &Approved {
    match outcome {
        Ok(Outcome::Approved(a)) => a,
        other => panic!("expected approved, got {other:?}"),
    }
}

fn pending(outcome: &Result<Outcome, Failure>) -> &Pending {
    match outcome {
        Ok(Outcome::Pending(p)) => p,
        other => panic!("expected pending, got {other:?}"),
    }
}

fn declined(outcome: &Result<Outcome, Failure>) -> &Declined {
    match outcome {
        Ok(Outcome::Declined(d)) => d,
        other => panic!("expected declined, got {other:?}"),
    }
}

fn assert_no_secrets_logged(h: &Harness, also: &[&str]) {
    for line in h.logs() {
        for needle in [KEY, WHSEC].iter().chain(also) {
            assert!(
                !line.message.contains(needle),
                "`{needle}` logged: {}",
                line.message
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// info
// ---------------------------------------------------------------------------------------

#[test]
fn info_describes_the_plugin() {
    let info = Stripe::info();
    assert_eq!(info.name, "stripe");
    assert_eq!(info.contract, CONTRACT_VERSION);
    assert_eq!(info.operations, Operation::ALL.to_vec());
    let names: Vec<_> = info.settings.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "secret_key",
            "api_base",
            "multicapture",
            "three_d_secure",
            "webhook_secret"
        ]
    );
    let spec = |n: &str| info.settings.iter().find(|s| s.name == n).unwrap();
    assert!(spec("secret_key").required && spec("secret_key").secret);
    assert!(!spec("api_base").required && !spec("api_base").secret);
    assert!(!spec("multicapture").required && !spec("multicapture").secret);
    assert!(!spec("three_d_secure").required && !spec("three_d_secure").secret);
    assert!(spec("webhook_secret").required && spec("webhook_secret").secret);
    assert!(info.settings.iter().all(|s| !s.description.is_empty()));
}

// ---------------------------------------------------------------------------------------
// authorize / sale
// ---------------------------------------------------------------------------------------

#[test]
fn authorize_sends_a_confirmed_manual_payment_intent() {
    let h = harness().on(
        Method::Post,
        format!("{BASE}/v1/payment_intents"),
        Reply::json(200, {
            let mut pi = intent("pi_auth0001", "requires_capture", 12200);
            pi["amount_capturable"] = json!(12200);
            pi
        }),
    );
    let out = h.run(|| Stripe::authorize(authorize_req("pm_1Visa4242abcd")));
    let a = approved(&out);
    assert_eq!(a.transaction_token, "pi_auth0001");
    assert_eq!(a.amount_cents, 12200);

    let requests = h.requests();
    assert_eq!(requests.len(), 1, "a customer token needs no lookup");
    let sent = &requests[0];
    assert_eq!(sent.method(), Method::Post);
    assert_eq!(sent.url(), "https://api.stripe.com/v1/payment_intents");
    assert_eq!(
        sent.header_value("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(sent.header_value("idempotency-key"), Some("idem-test-1"));
    assert_eq!(
        sent.header_value("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(sent.header_value("stripe-version"), Some(STRIPE_VERSION));
    let form = form_of(sent);
    assert_eq!(field(&form, "amount"), Some("12200"));
    assert_eq!(field(&form, "currency"), Some("eur"));
    assert_eq!(field(&form, "capture_method"), Some("manual"));
    assert_eq!(field(&form, "confirm"), Some("true"));
    assert_eq!(field(&form, "payment_method"), Some("pm_1Visa4242abcd"));
    assert_eq!(field(&form, "payment_method_types[]"), Some("card"));
    assert_eq!(field(&form, "customer"), Some("cus_known123"));
    assert_eq!(field(&form, "metadata[order_number]"), Some("4200001"));
    assert_eq!(field(&form, "metadata[cl_order_id]"), Some("ordXyZ1234"));
    assert_eq!(field(&form, "metadata[cl_payment_id]"), Some("ref-test-1"));
    assert_eq!(field(&form, "payment_method_data[type]"), None);
    // Nested keys keep their brackets literal, as Stripe documents them.
    assert!(sent.body_text().contains("metadata[order_number]=4200001"));
    assert!(h.unused_replies().is_empty());
    assert_no_secrets_logged(&h, &["pm_1Visa4242abcd", "pi_auth0001"]);
}

#[test]
fn authorize_looks_up_the_customer_of_a_saved_payment_method() {
    let h = harness()
        .on(
            Method::Get,
            format!("{BASE}/v1/payment_methods/pm_saved123456"),
            Reply::json(
                200,
                json!({"id": "pm_saved123456", "object": "payment_method", "customer": "cus_owner999"}),
            ),
        )
        .on(
            Method::Post,
            format!("{BASE}/v1/payment_intents"),
            Reply::json(200, intent("pi_auth0002", "requires_capture", 500)),
        );
    let out = h.run(|| Stripe::authorize(testing::authorize_request("pm_saved123456", 500, "USD")));
    assert_eq!(approved(&out).amount_cents, 500);
    let requests = h.requests();
    assert_eq!(requests[0].method(), Method::Get);
    assert!(requests[0].body_bytes().is_empty());
    let form = form_of(&requests[1]);
    assert_eq!(field(&form, "customer"), Some("cus_owner999"));
    assert_eq!(field(&form, "currency"), Some("usd"));
    assert_eq!(field(&form, "metadata[cl_payment_id]"), Some("ref-test-1"));
}

#[test]
fn authorize_without_customer_sends_none() {
    let h = harness()
        .on(
            Method::Get,
            format!("{BASE}/v1/payment_methods/pm_guest1234567"),
            Reply::json(200, json!({"id": "pm_guest1234567", "customer": null})),
        )
        .on(
            Method::Post,
            format!("{BASE}/v1/payment_intents"),
            Reply::json(200, intent("pi_auth0003", "requires_capture", 500)),
        );
    let out =
        h.run(|| Stripe::authorize(testing::authorize_request("pm_guest1234567", 500, "EUR")));
    approved(&out);
    assert_eq!(field(&form_of(&h.requests()[1]), "customer"), None);
}

#[test]
fn legacy_card_tokens_go_through_payment_method_data() {
    let h = harness().on(
        Method::Post,
        format!("{BASE}/v1/payment_intents"),
        Reply::json(200, intent("pi_auth0004", "requires_capture", 1000)),
    );
    let out =
        h.run(|| Stripe::authorize(testing::authorize_request("tok_visa12345678", 1000, "EUR")));
    approved(&out);
    let requests = h.requests();
    assert_eq!(requests.len(), 1, "no PaymentMethod lookup for a token");
    let form = form_of(&requests[0]);
    assert_eq!(field(&form, "payment_method_data[type]"), Some("card"));
    assert_eq!(
        field(&form, "payment_method_data[card][token]"),
        Some("tok_visa12345678")
    );
    assert_eq!(field(&form, "payment_method"), None);
}

#[test]
fn sale_captures_automatically() {
    let h = harness().on(
        Method::Post,
        format!("{BASE}/v1/payment_intents"),
        Reply::json(200, {
            let mut pi = intent("pi_sale0001", "succeeded", 2500);
            pi["amount_received"] = json!(2500);
            pi
        }),
    );
    let out = h.run(|| Stripe::sale(authorize_req("pm_1Visa4242abcd")));
    let a = approved(&out);
    assert_eq!(
        (a.transaction_token.as_str(), a.amount_cents),
        ("pi_sale0001", 2500)
    );
    let form = form_of(&h.requests()[0]);
    assert_eq!(field(&form, "capture_method"), Some("automatic"));
}

#[test]
fn processing_and_requires_confirmation_are_pending() {
    for status in ["processing", "requires_confirmation"] {
        for sale in [false, true] {
            let h = harness().on(
                Method::Post,
                format!("{BASE}/v1/payment_intents"),
                Reply::json(200, intent("pi_pend0001", status, 12200)),
            );
            let out = h.run(|| {
                let req = authorize_req("pm_3ds2Required99");
                if sale {
                    Stripe::sale(req)
                } else {
                    Stripe::authorize(req)
                }
            });
            let p = pending(&out);
            assert_eq!(p.transaction_token, "pi_pend0001", "{status}");
            assert_eq!(p.psp_reference, "pi_pend0001", "{status}");
            assert_eq!(p.amount_cents, 12200);
        }
    }
}

#[test]
fn requires_payment_method_is_declined_with_the_last_error() {
    let mut pi = intent("pi_fail0001", "requires_payment_method", 1000);
    pi["last_payment_error"] = json!({"type": "card_error", "code": "card_declined", "decline_code": "insufficient_funds",
               "message": "Your card has insufficient funds."});
    let h = harness().on(
        Method::Post,
        format!("{BASE}/v1/payment_intents"),
        Reply::json(200, pi),
    );
    let out = h.run(|| Stripe::authorize(authorize_req("pm_1Visa4242abcd")));
    let d = declined(&out);
    assert_eq!(d.code, "insufficient_funds");
    assert_eq!(d.message, "Your card has insufficient funds.");
    assert_eq!(d.transaction_token.as_deref(), Some("pi_fail0001"));
}

#[test]
fn card_errors_are_declines_with_stripes_codes() {
    // decline_code wins over code; the PaymentIntent id is kept.
    let h = harness().on(
        Method::Post,
        format!("{BASE}/v1/payment_intents"),
        Reply::json(
            402,
            card_error("card_declined", Some("stolen_card"), Some("pi_decl0001")),
        ),
    );
    let out = h.run(|| Stripe::authorize(authorize_req("pm_1Visa4242abcd")));
    let d = declined(&out);
    assert_eq!(d.code, "stolen_card");
    assert_eq!(d.message, "Your card was declined.");
    assert_eq!(d.transaction_token.as_deref(), Some("pi_decl0001"));

    // No decline_code: the code.
    let h = harness().on(
        Method::Post,
        format!("{BASE}/v1/payment_intents"),
        Reply::json(402, card_error("expired_card", None, None)),
    );
    let out = h.run(|| Stripe::sale(authorize_req("pm_1Visa4242abcd")));
    let d = declined(&out);
    assert_eq!(d.code, "expired_card");
    assert_eq!(d.transaction_token, None);

    // A 402 whose error type is not card_error (localstripe's) is still a decline.
    let h = harness().on(
        Method::Post,
        format!("{BASE}/v1/payment_intents"),
        Reply::json(
            402,
            json!({"error": {"type": "invalid_request_error", "code": "card_declined",
                             "message": "Your card was declined.", "charge": "ch_1"}}),
        ),
    );
    let out = h.run(|| Stripe::authorize(authorize_req("pm_1Visa4242abcd")));
    assert_eq!(declined(&out).code, "card_declined");
}

#[test]
fn server_errors_and_outages_are_unreachable() {
    for reply in [
        Reply::json(500, json!({"error": {"type": "api_error"}})),
        Reply::status(503),
        Reply::status(429),
        Reply::error(HttpError::Connect("refused".into())),
    ] {
        let h = harness().on(Method::Post, format!("{BASE}/v1/payment_intents"), reply);
        let out = h.run(|| Stripe::authorize(authorize_req("pm_1Visa4242abcd")));
        assert!(matches!(out, Err(Failure::Unreachable(_))), "{out:?}");
    }
    let h = harness().on(
        Method::Post,
        format!("{BASE}/v1/payment_intents"),
        Reply::error(HttpError::Timeout),
    );
    let out = h.run(|| Stripe::authorize(authorize_req("pm_1Visa4242abcd")));
    assert!(matches!(out, Err(Failure::Timeout(_))), "{out:?}");
}

#[test]
fn a_key_still_in_use_is_an_outcome_not_known_yet_and_a_reused_key_a_refusal() {
    let in_use = Reply::json(
        409,
        json!({"error": {"type": "invalid_request_error", "code": "idempotency_key_in_use",
                         "message": "There is currently another in-progress request using this Idempotent Key"}}),
    );
    let h = harness().on(Method::Post, format!("{BASE}/v1/payment_intents"), in_use);
    let out = h.run(|| Stripe::authorize(authorize_req("pm_1Visa4242abcd")));
    assert!(matches!(out, Err(Failure::Unreachable(_))), "{out:?}");

    // Other parameters under a used key: Stripe refuses it, and so does the plugin.
    let reused = Reply::json(
        400,
        json!({"error": {"type": "idempotency_error",
                         "message": "Keys for idempotent requests can only be used with the same parameters"}}),
    );
    let h = harness().on(Method::Post, format!("{BASE}/v1/payment_intents"), reused);
    let out = h.run(|| Stripe::authorize(authorize_req("pm_1Visa4242abcd")));
    assert!(matches!(out, Err(Failure::InvalidRequest(_))), "{out:?}");
}

#[test]
fn client_errors_are_failures_not_declines() {
    let h = harness().on(
        Method::Post,
        format!("{BASE}/v1/payment_intents"),
        Reply::json(
            401,
            json!({"error": {"type": "invalid_request_error",
                             "message": format!("Invalid API Key provided: {KEY}")}}),
        ),
    );
    let out = h.run(|| Stripe::authorize(authorize_req("pm_1Visa4242abcd")));
    match out {
        Err(Failure::Misconfigured(m)) => assert!(!m.contains(KEY), "{m}"),
        other => panic!("{other:?}"),
    }

    let h = harness().on(
        Method::Post,
        format!("{BASE}/v1/payment_intents"),
        Reply::json(
            400,
            json!({"error": {"type": "invalid_request_error", "code": "resource_missing",
                             "message": "No such PaymentMethod: 'pm_x'"}}),
        ),
    );
    let out = h.run(|| Stripe::authorize(authorize_req("pm_1Visa4242abcd")));
    match out {
        Err(Failure::InvalidRequest(m)) => {
            assert!(m.contains("resource_missing"), "{m}");
            assert!(m.contains("/v1/payment_intents"), "{m}");
        }
        other => panic!("{other:?}"),
    }

    let h = harness().on(
        Method::Post,
        format!("{BASE}/v1/payment_intents"),
        Reply::text(200, "<html>proxy</html>"),
    );
    let out = h.run(|| Stripe::authorize(authorize_req("pm_1Visa4242abcd")));
    assert!(matches!(out, Err(Failure::BadResponse(_))), "{out:?}");
}

#[test]
fn settings_are_required_and_api_base_overridable() {
    let h = Harness::new().setting(WEBHOOK_SECRET, WHSEC);
    let out = h.run(|| Stripe::authorize(authorize_req("pm_1Visa4242abcd")));
    assert!(matches!(out, Err(Failure::Misconfigured(ref m)) if m.contains("secret_key")));
    assert!(h.requests().is_empty());

    let h = harness().setting(API_BASE, "http://127.0.0.1:12111/").on(
        Method::Post,
        "http://127.0.0.1:12111/v1/payment_intents",
        Reply::json(200, intent("pi_local0001", "requires_capture", 12200)),
    );
    let out = h.run(|| Stripe::authorize(authorize_req("pm_1Visa4242abcd")));
    approved(&out);
}

#[test]
fn odd_tokens_are_refused_before_any_call() {
    for token in ["4242424242424242", "pm_../../v1/charges", "", "nonce-abc"] {
        let h = harness();
        let out = h.run(|| Stripe::authorize(authorize_req(token)));
        assert!(
            matches!(out, Err(Failure::InvalidRequest(_))),
            "{token}: {out:?}"
        );
        assert!(h.requests().is_empty());
    }
}

// ---------------------------------------------------------------------------------------
// capture / void / refund
// ---------------------------------------------------------------------------------------

#[test]
fn partial_capture_sends_amount_to_capture() {
    let mut pi = intent("pi_auth0001", "succeeded", 12200);
    pi["amount_received"] = json!(5000);
    let h = harness().on(
        Method::Post,
        format!("{BASE}/v1/payment_intents/pi_auth0001/capture"),
        Reply::json(200, pi),
    );
    let out = h.run(|| Stripe::capture(testing::capture_request("pi_auth0001", 5000, "EUR")));
    let a = approved(&out);
    assert_eq!(
        (a.transaction_token.as_str(), a.amount_cents),
        ("pi_auth0001.capture.1", 5000)
    );
    assert_eq!(a.psp_reference, "pi_auth0001");
    let sent = h.last_request().unwrap();
    assert_eq!(sent.header_value("idempotency-key"), Some("idem-test-2"));
    assert_eq!(field(&form_of(&sent), "amount_to_capture"), Some("5000"));
    // Without multicapture, Stripe is not told about later captures.
    assert_eq!(field(&form_of(&sent), "final_capture"), None);

    // A capture still processing is pending on the PaymentIntent.
    let h = harness().on(
        Method::Post,
        format!("{BASE}/v1/payment_intents/pi_auth0001/capture"),
        Reply::json(200, intent("pi_auth0001", "processing", 12200)),
    );
    let out = h.run(|| Stripe::capture(testing::capture_request("pi_auth0001", 5000, "EUR")));
    assert_eq!(pending(&out).psp_reference, "pi_auth0001");
    assert_eq!(pending(&out).transaction_token, "pi_auth0001.capture.1");

    // Capturing something that is not a PaymentIntent never reaches Stripe.
    let h = harness();
    let out = h.run(|| Stripe::capture(testing::capture_request("ch_123456789", 5000, "EUR")));
    assert!(matches!(out, Err(Failure::InvalidRequest(_))));
    assert!(h.requests().is_empty());
}

#[test]
fn void_cancels_the_payment_intent() {
    let h = harness().on(
        Method::Post,
        format!("{BASE}/v1/payment_intents/pi_auth0001/cancel"),
        Reply::json(200, intent("pi_auth0001", "canceled", 12200)),
    );
    let out = h.run(|| Stripe::void(testing::follow_up_request("pi_auth0001", 12200, "EUR")));
    let a = approved(&out);
    assert_eq!(
        (a.transaction_token.as_str(), a.amount_cents),
        ("pi_auth0001.void", 12200)
    );
    assert_eq!(a.psp_reference, "pi_auth0001");
    let sent = h.last_request().unwrap();
    assert_eq!(sent.header_value("idempotency-key"), Some("idem-test-2"));
    assert!(sent.body_bytes().is_empty());

    let h = harness().on(
        Method::Post,
        format!("{BASE}/v1/payment_intents/pi_auth0001/cancel"),
        Reply::json(
            400,
            json!({"error": {"type": "invalid_request_error", "code": "payment_intent_unexpected_state",
                             "message": "This PaymentIntent could not be canceled."}}),
        ),
    );
    let out = h.run(|| Stripe::void(testing::follow_up_request("pi_auth0001", 12200, "EUR")));
    assert!(
        matches!(out, Err(Failure::InvalidRequest(ref m)) if m.contains("payment_intent_unexpected_state"))
    );
}

#[test]
fn refund_statuses_map_to_outcomes() {
    let refund = |status: &str| {
        json!({"id": "re_refund0001", "object": "refund", "amount": 3000, "status": status,
               "payment_intent": "pi_auth0001", "failure_reason": if status == "failed" { json!("expired_or_canceled_card") } else { Value::Null }})
    };
    let run = |status: &str| {
        let h = harness().on(
            Method::Post,
            format!("{BASE}/v1/refunds"),
            Reply::json(200, refund(status)),
        );
        let mut req = testing::follow_up_request("pi_auth0001", 3000, "EUR");
        req.order = authorize_req("pm_x1234567890").order;
        let out = h.run(|| Stripe::refund(req));
        (out, h)
    };
    let (out, h) = run("succeeded");
    let a = approved(&out);
    assert_eq!(
        (a.transaction_token.as_str(), a.amount_cents),
        ("re_refund0001", 3000)
    );
    let sent = h.last_request().unwrap();
    assert_eq!(sent.url(), "https://api.stripe.com/v1/refunds");
    assert_eq!(sent.header_value("idempotency-key"), Some("idem-test-2"));
    let form = form_of(&sent);
    assert_eq!(field(&form, "payment_intent"), Some("pi_auth0001"));
    assert_eq!(field(&form, "amount"), Some("3000"));
    assert_eq!(field(&form, "metadata[cl_refund_id]"), Some("ref-test-2"));
    assert_eq!(field(&form, "metadata[order_number]"), Some("4200001"));

    let (out, _) = run("pending");
    let p = pending(&out);
    assert_eq!(
        (p.transaction_token.as_str(), p.psp_reference.as_str()),
        ("re_refund0001", "re_refund0001")
    );

    let (out, _) = run("failed");
    let d = declined(&out);
    assert_eq!(d.code, "refund_expired_or_canceled_card");
    assert_eq!(d.transaction_token.as_deref(), Some("re_refund0001"));

    let (out, _) = run("mystery");
    assert!(matches!(out, Err(Failure::BadResponse(_))));
}

// ---------------------------------------------------------------------------------------
// tokenize
// ---------------------------------------------------------------------------------------

#[test]
fn tokenize_reuses_the_customer_with_that_email() {
    let h = harness()
        .on(
            Method::Get,
            format!("{BASE}/v1/customers?"),
            Reply::json(200, json!({"object": "list", "data": [{"id": "cus_existing01", "email": "a+b@example.com"}]})),
        )
        .on(
            Method::Post,
            format!("{BASE}/v1/payment_methods/pm_newcard12345/attach"),
            Reply::json(200, json!({"id": "pm_newcard12345", "customer": "cus_existing01"})),
        );
    let mut req = testing::tokenize_request("pm_newcard12345");
    req.customer_email = Some("a+b@example.com".into());
    let out = h.run(|| Stripe::tokenize(req)).unwrap();
    assert_eq!(out.customer_token.as_deref(), Some("cus_existing01"));
    assert_eq!(out.payment_source_token, "pm_newcard12345");
    let requests = h.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[0].url(),
        "https://api.stripe.com/v1/customers?email=a%2Bb%40example.com&limit=1"
    );
    assert_eq!(
        field(&form_of(&requests[1]), "customer"),
        Some("cus_existing01")
    );
    assert_eq!(
        requests[1].header_value("idempotency-key"),
        Some("idem-test-3:attach")
    );
    assert_no_secrets_logged(&h, &["pm_newcard12345", "cus_existing01"]);
}

#[test]
fn tokenize_creates_a_customer_when_none_matches() {
    let h = harness()
        .on(
            Method::Get,
            format!("{BASE}/v1/customers?"),
            Reply::json(200, json!({"object": "list", "data": []})),
        )
        .on(
            Method::Post,
            format!("{BASE}/v1/customers"),
            Reply::json(
                200,
                json!({"id": "cus_created001", "email": "ann@example.com"}),
            ),
        )
        .on(
            Method::Post,
            format!("{BASE}/v1/payment_methods/pm_newcard12345/attach"),
            Reply::json(
                200,
                json!({"id": "pm_newcard12345", "customer": "cus_created001"}),
            ),
        );
    let mut req = testing::tokenize_request("pm_newcard12345");
    req.order = authorize_req("pm_x1234567890").order; // email from the order
    let out = h.run(|| Stripe::tokenize(req)).unwrap();
    assert_eq!(out.customer_token.as_deref(), Some("cus_created001"));
    let created = &h.requests()[1];
    let form = form_of(created);
    assert_eq!(field(&form, "email"), Some("ann@example.com"));
    assert_eq!(field(&form, "metadata[cl_reference]"), Some("ref-test-3"));
    assert_eq!(
        created.header_value("idempotency-key"),
        Some("idem-test-3:customer")
    );
}

#[test]
fn tokenize_with_a_customer_token_and_a_legacy_token() {
    let h = harness()
        .on(
            Method::Post,
            format!("{BASE}/v1/payment_methods"),
            Reply::json(200, json!({"id": "pm_fromtoken01", "customer": null})),
        )
        .on(
            Method::Post,
            format!("{BASE}/v1/payment_methods/pm_fromtoken01/attach"),
            Reply::json(
                200,
                json!({"id": "pm_fromtoken01", "customer": "cus_given00001"}),
            ),
        );
    let mut req = testing::tokenize_request("tok_visa12345678");
    req.customer_token = Some("cus_given00001".into());
    let out = h.run(|| Stripe::tokenize(req)).unwrap();
    assert_eq!(out.payment_source_token, "pm_fromtoken01");
    assert_eq!(out.customer_token.as_deref(), Some("cus_given00001"));
    let form = form_of(&h.requests()[0]);
    assert_eq!(field(&form, "type"), Some("card"));
    assert_eq!(field(&form, "card[token]"), Some("tok_visa12345678"));
}

#[test]
fn tokenize_card_error_is_an_invalid_request() {
    let h = harness().on(
        Method::Post,
        format!("{BASE}/v1/payment_methods/pm_declined0001/attach"),
        Reply::json(402, card_error("card_declined", None, None)),
    );
    let mut req = testing::tokenize_request("pm_declined0001");
    req.customer_token = Some("cus_given00001".into());
    let out = h.run(|| Stripe::tokenize(req));
    assert!(matches!(out, Err(Failure::InvalidRequest(ref m)) if m.contains("card_declined")));
}

// ---------------------------------------------------------------------------------------
// sync and the status table
// ---------------------------------------------------------------------------------------

#[test]
fn sync_reads_the_payment_intent_or_the_refund() {
    let h = harness().on(
        Method::Get,
        format!("{BASE}/v1/payment_intents/pi_pend0001"),
        Reply::json(200, intent("pi_pend0001", "requires_capture", 12200)),
    );
    let mut req = testing::sync_request(Operation::Authorize, "pi_pend0001", 12200, "EUR");
    req.psp_reference = Some("pi_pend0001".into());
    let out = h.run(|| Stripe::sync(req));
    assert_eq!(approved(&out).transaction_token, "pi_pend0001");

    let h = harness().on(
        Method::Get,
        format!("{BASE}/v1/refunds/re_refund0001"),
        Reply::json(
            200,
            json!({"id": "re_refund0001", "status": "pending", "amount": 3000}),
        ),
    );
    let out = h.run(|| {
        Stripe::sync(testing::sync_request(
            Operation::Refund,
            "re_refund0001",
            3000,
            "EUR",
        ))
    });
    assert_eq!(pending(&out).psp_reference, "re_refund0001");
}

#[test]
fn status_table() {
    use Operation::*;
    let kind = |op: Operation, status: &str| -> &'static str {
        match intent_outcome(&intent("pi_t0000001", status, 100), op, 100) {
            Ok(Outcome::Approved(_)) => "approved",
            Ok(Outcome::Pending(_)) => "pending",
            Ok(Outcome::Declined(_)) => "declined",
            Ok(Outcome::ActionRequired(_)) => "action_required",
            Err(_) => "error",
        }
    };
    let table = [
        (Authorize, "requires_capture", "approved"),
        (Authorize, "succeeded", "approved"),
        (Authorize, "processing", "pending"),
        (Authorize, "requires_action", "pending"),
        (Authorize, "requires_confirmation", "pending"),
        (Authorize, "requires_payment_method", "declined"),
        (Authorize, "canceled", "declined"),
        (Sale, "succeeded", "approved"),
        (Sale, "processing", "pending"),
        (Sale, "requires_action", "pending"),
        (Sale, "requires_payment_method", "declined"),
        (Sale, "canceled", "declined"),
        (Capture, "succeeded", "approved"),
        (Capture, "processing", "pending"),
        (Capture, "canceled", "declined"),
        (Void, "canceled", "approved"),
        (Void, "requires_capture", "declined"),
        (Authorize, "weird_new_status", "error"),
    ];
    for (op, status, expected) in table {
        assert_eq!(kind(op, status), expected, "{op:?} {status}");
    }
}

// ---------------------------------------------------------------------------------------
// webhooks
// ---------------------------------------------------------------------------------------

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn sign(secret: &str, t: u64, body: &[u8]) -> String {
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(body);
    hex_encode(hmac_sha256(secret.as_bytes(), &signed))
}

fn event(kind: &str, object: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"id": "evt_1", "object": "event", "type": kind,
                               "data": {"object": object}}))
    .unwrap()
}

fn deliver(h: &Harness, header: &str, body: &[u8]) -> Result<WebhookReply, Failure> {
    h.run(|| {
        Stripe::handle_webhook(testing::webhook_request(
            &[
                ("content-type", "application/json"),
                ("stripe-signature", header),
            ],
            body.to_vec(),
        ))
    })
}

#[test]
fn webhook_with_a_valid_signature_is_accepted() {
    let body = event(
        "payment_intent.amount_capturable_updated",
        json!({"id": "pi_pend0001", "object": "payment_intent", "amount_capturable": 12200, "currency": "eur"}),
    );
    let t = now();
    let header = format!("t={t},v1={}", sign(WHSEC, t, &body));
    let reply = deliver(&harness(), &header, &body).unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, br#"{"received":true}"#);
    assert_eq!(reply.content_type, "application/json");
    assert_eq!(
        reply.events,
        vec![PspEvent {
            psp_reference: "pi_pend0001".into(),
            transaction_token: None,
            status: FinalStatus::Succeeded,
            kind: Some(EventKind::Authorized),
            code: None,
            message: None,
            amount: Some(Money::new(12200, "EUR")),
        }]
    );
}

#[test]
fn webhook_signature_failures_are_unauthenticated() {
    let body = event(
        "payment_intent.succeeded",
        json!({"id": "pi_x0000001", "amount": 5}),
    );
    let t = now();
    let good = sign(WHSEC, t, &body);
    let unauth = |header: &str, body: &[u8]| {
        let out = deliver(&harness(), header, body);
        assert!(
            matches!(out, Err(Failure::Unauthenticated(_))),
            "{header}: {out:?}"
        );
    };
    // Tampered body.
    let mut tampered = body.clone();
    tampered[10] ^= 1;
    unauth(&format!("t={t},v1={good}"), &tampered);
    // Wrong secret.
    unauth(
        &format!("t={t},v1={}", sign("whsec_other", t, &body)),
        &body,
    );
    // Expired (six minutes old) and too far in the future, though correctly signed.
    let old = t - 360;
    unauth(&format!("t={old},v1={}", sign(WHSEC, old, &body)), &body);
    let future = t + 360;
    unauth(
        &format!("t={future},v1={}", sign(WHSEC, future, &body)),
        &body,
    );
    // A signature over another timestamp.
    unauth(&format!("t={},v1={good}", t - 1), &body);
    // Malformed headers.
    unauth("", &body);
    unauth(&format!("v1={good}"), &body);
    unauth(&format!("t={t}"), &body);
    unauth(&format!("t={t},v0={good}"), &body);
    unauth(&format!("t=abc,v1={good}"), &body);
    unauth(&format!("t={t},v1=zz{good}"), &body);
    // Missing header.
    let out = harness().run(|| Stripe::handle_webhook(testing::webhook_request(&[], body.clone())));
    assert!(matches!(out, Err(Failure::Unauthenticated(_))));
    // Within the tolerance is fine.
    let recent = t - 200;
    assert!(
        deliver(
            &harness(),
            &format!("t={recent},v1={}", sign(WHSEC, recent, &body)),
            &body
        )
        .is_ok()
    );
}

#[test]
fn webhook_accepts_any_of_several_v1_signatures_and_secrets() {
    let body = event("payment_intent.succeeded", json!({"id": "pi_x0000001"}));
    let t = now();
    let header = format!(
        "t={t}, v1={}, v1={}, v0=deadbeef",
        sign("whsec_old", t, &body),
        sign(WHSEC, t, &body)
    );
    assert!(deliver(&harness(), &header, &body).is_ok());
    // Rotation: two secrets configured, Stripe signs with the new one only.
    let h = Harness::new().setting(WEBHOOK_SECRET, format!("whsec_retired, {WHSEC}"));
    let header = format!("t={t},v1={}", sign(WHSEC, t, &body));
    assert!(deliver(&h, &header, &body).is_ok());
    // The pure check, at a fixed time.
    assert!(verify_signature(&header, &body, &[WHSEC], t + 300).is_ok());
    assert!(verify_signature(&header, &body, &[WHSEC], t + 301).is_err());
}

#[test]
fn webhook_needs_its_secret() {
    let out = Harness::new().run(|| {
        Stripe::handle_webhook(testing::webhook_request(
            &[("Stripe-Signature", "t=1,v1=00")],
            "{}",
        ))
    });
    assert!(matches!(out, Err(Failure::Misconfigured(_))));
}

fn events_for(kind: &str, object: Value) -> Vec<PspEvent> {
    let body = event(kind, object);
    let t = now();
    let header = format!("t={t},v1={}", sign(WHSEC, t, &body));
    deliver(&harness(), &header, &body).unwrap().events
}

#[test]
fn webhook_event_mapping() {
    let ev = &events_for(
        "payment_intent.succeeded",
        json!({"id": "pi_s0000001", "amount": 900, "amount_received": 800, "currency": "usd"}),
    )[0];
    assert_eq!(ev.psp_reference, "pi_s0000001");
    assert_eq!(
        (ev.status, ev.kind, ev.amount.clone()),
        (FinalStatus::Succeeded, None, Some(Money::new(800, "USD")))
    );

    let ev = &events_for(
        "payment_intent.payment_failed",
        json!({"id": "pi_f0000001", "status": "requires_payment_method",
               "last_payment_error": {"code": "card_declined", "decline_code": "do_not_honor",
                                      "message": "Your card was declined."}}),
    )[0];
    assert_eq!(ev.status, FinalStatus::Failed);
    assert_eq!(ev.code.as_deref(), Some("do_not_honor"));
    assert_eq!(ev.message.as_deref(), Some("Your card was declined."));

    let ev = &events_for(
        "payment_intent.payment_failed",
        json!({"id": "pi_f0000002", "last_payment_error": {"code": "payment_intent_authentication_failure"}}),
    )[0];
    assert_eq!(
        ev.code.as_deref(),
        Some("payment_intent_authentication_failure")
    );

    let evs = events_for(
        "payment_intent.canceled",
        json!({"id": "pi_c0000001", "cancellation_reason": "abandoned"}),
    );
    assert!(evs.iter().all(|e| e.psp_reference == "pi_c0000001"));
    assert!(
        evs.iter()
            .any(|e| e.kind == Some(EventKind::Voided) && e.status == FinalStatus::Succeeded)
    );
    assert!(
        evs.iter()
            .any(|e| e.kind == Some(EventKind::Authorized) && e.status == FinalStatus::Failed)
    );

    let evs = events_for(
        "charge.refunded",
        json!({"id": "ch_1", "object": "charge", "payment_intent": "pi_s0000001",
               "refunds": {"object": "list", "data": [
                   {"id": "re_done000001", "status": "succeeded", "amount": 300, "currency": "eur"},
                   {"id": "re_wait000001", "status": "pending", "amount": 200}]}}),
    );
    assert_eq!(evs.len(), 1, "pending refunds are not final: {evs:?}");
    assert_eq!(evs[0].psp_reference, "re_done000001");
    assert_eq!(evs[0].kind, Some(EventKind::Refunded));
    assert_eq!(evs[0].amount, Some(Money::new(300, "EUR")));

    for kind in ["refund.updated", "charge.refund.updated"] {
        let evs = events_for(
            kind,
            json!({"id": "re_fail000001", "object": "refund", "status": "failed",
                   "failure_reason": "lost_or_stolen_card", "amount": 300}),
        );
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].status, FinalStatus::Failed);
        assert_eq!(evs[0].code.as_deref(), Some("refund_lost_or_stolen_card"));
    }

    // Unknown types are acknowledged and ignored.
    let body = event("customer.created", json!({"id": "cus_1"}));
    let t = now();
    let reply = deliver(
        &harness(),
        &format!("t={t},v1={}", sign(WHSEC, t, &body)),
        &body,
    )
    .unwrap();
    assert_eq!(reply.status, 200);
    assert!(reply.events.is_empty());

    // A validly signed body that is not JSON is a bad request.
    let body = b"not json".to_vec();
    let out = deliver(
        &harness(),
        &format!("t={t},v1={}", sign(WHSEC, t, &body)),
        &body,
    );
    assert!(matches!(out, Err(Failure::InvalidRequest(_))));
}

#[test]
fn redaction_keeps_ids_out_of_logs() {
    assert_eq!(redact("pi_3NxYzAbCdEfGh1234"), "pi_…1234");
    assert_eq!(redact("pm_short"), "pm_…");
    assert_eq!(
        endpoint_name("/v1/payment_intents/pi_123456789/capture"),
        "/v1/payment_intents/{id}/capture"
    );
    assert_eq!(endpoint_name("/v1/customers?email=a"), "/v1/customers");
}

// ---------------------------------------------------------------------------------------
// 3-D Secure, complete, and captures' own tokens
// ---------------------------------------------------------------------------------------

fn action_required(outcome: &Result<Outcome, Failure>) -> &ActionRequired {
    match outcome {
        Ok(Outcome::ActionRequired(r)) => r,
        other => panic!("expected action required, got {other:?}"),
    }
}

#[test]
fn requires_action_is_a_redirect_when_stripe_gives_a_url() {
    let mut pi = intent("pi_3ds00001", "requires_action", 12200);
    pi["next_action"] = json!({"type": "redirect_to_url",
        "redirect_to_url": {"url": "https://hooks.stripe.com/3d_secure_2/hosted?x=1",
                            "return_url": "https://shop.example/back"}});
    let h = harness().on(
        Method::Post,
        format!("{BASE}/v1/payment_intents"),
        Reply::json(200, pi),
    );
    let mut req = authorize_req("pm_3ds2Required99");
    req.shopper = Some(Shopper {
        return_url: Some("https://shop.example/back".into()),
        cancel_url: None,
        ip_address: None,
        user_agent: None,
        accept_header: None,
    });
    let out = h.run(|| Stripe::authorize(req.clone()));
    let r = action_required(&out);
    assert_eq!(
        (
            r.transaction_token.as_str(),
            r.psp_reference.as_str(),
            r.amount_cents
        ),
        ("pi_3ds00001", "pi_3ds00001", 12200)
    );
    match &r.action {
        ShopperAction::Redirect(redirect) => {
            assert_eq!(
                redirect.url,
                "https://hooks.stripe.com/3d_secure_2/hosted?x=1"
            );
            assert_eq!(redirect.method, RedirectMethod::Get);
        }
        other => panic!("expected a redirect, got {other:?}"),
    }
    // The shopper's return URL went to Stripe, so Stripe can send the shopper back.
    let sent = form_of(&h.last_request().unwrap());
    assert_eq!(
        field(&sent, "return_url"),
        Some("https://shop.example/back")
    );

    // `three_d_secure = "stripe_js"`: never a return URL; anything else is refused.
    for (setting, sent_url) in [
        ("stripe_js", None),
        ("redirect", Some("https://shop.example/back")),
    ] {
        let h = harness().setting(THREE_D_SECURE, setting).on(
            Method::Post,
            format!("{BASE}/v1/payment_intents"),
            Reply::json(200, intent("pi_3ds00001", "requires_capture", 12200)),
        );
        h.run(|| Stripe::authorize(req.clone())).unwrap();
        let sent = form_of(&h.last_request().unwrap());
        assert_eq!(field(&sent, "return_url"), sent_url);
    }
    let h = harness().setting(THREE_D_SECURE, "popup");
    let out = h.run(|| Stripe::authorize(req.clone()));
    assert!(matches!(out, Err(Failure::Misconfigured(_))), "{out:?}");
    assert!(h.requests().is_empty());
}

#[test]
fn requires_action_without_a_url_is_data_for_stripe_js() {
    for sale in [false, true] {
        let mut pi = intent("pi_3ds00002", "requires_action", 12200);
        pi["client_secret"] = json!("pi_3ds00002_secret_abc");
        pi["next_action"] = json!({"type": "use_stripe_sdk",
            "use_stripe_sdk": {"type": "three_d_secure_redirect", "stripe_js": ""}});
        let h = harness().on(
            Method::Post,
            format!("{BASE}/v1/payment_intents"),
            Reply::json(200, pi),
        );
        let out = h.run(|| {
            let req = authorize_req("pm_3ds2Required99");
            if sale {
                Stripe::sale(req)
            } else {
                Stripe::authorize(req)
            }
        });
        let r = action_required(&out);
        let ShopperAction::Sdk(sdk) = &r.action else {
            panic!("expected SDK data, got {:?}", r.action);
        };
        assert_eq!(sdk.kind, "use_stripe_sdk");
        let data: Value = serde_json::from_str(&sdk.data_json).unwrap();
        assert_eq!(data["client_secret"], "pi_3ds00002_secret_abc");
        assert_eq!(data["payment_intent"], "pi_3ds00002");
        assert_eq!(
            data["next_action"]["use_stripe_sdk"]["type"],
            "three_d_secure_redirect"
        );
        // No shopper context, no return URL sent.
        assert_eq!(
            field(&form_of(&h.last_request().unwrap()), "return_url"),
            None
        );
        // The client secret never reaches a log line.
        assert_no_secrets_logged(&h, &["pi_3ds00002_secret_abc"]);
    }
    // A requires_action without any next_action is pending: nothing to show the shopper.
    let h = harness().on(
        Method::Post,
        format!("{BASE}/v1/payment_intents"),
        Reply::json(200, intent("pi_3ds00003", "requires_action", 12200)),
    );
    let out = h.run(|| Stripe::authorize(authorize_req("pm_3ds2Required99")));
    assert_eq!(pending(&out).transaction_token, "pi_3ds00003");
}

#[test]
fn complete_re_reads_the_payment_intent() {
    let cases = [
        ("requires_capture", "approved"),
        ("requires_payment_method", "declined"),
        ("requires_action", "action"),
    ];
    for (status, expected) in cases {
        let mut pi = intent("pi_3ds00001", status, 12200);
        pi["amount_capturable"] = json!(12200);
        pi["next_action"] = json!({"type": "use_stripe_sdk", "use_stripe_sdk": {}});
        let h = harness().on(
            Method::Get,
            format!("{BASE}/v1/payment_intents/pi_3ds00001"),
            Reply::json(200, pi),
        );
        let req = testing::complete_request(
            "pi_3ds00001",
            "pi_3ds00001",
            12200,
            "EUR",
            &[
                ("payment_intent", "pi_3ds00001"),
                ("redirect_status", "succeeded"),
            ],
        );
        let out = h.run(|| Stripe::complete(req));
        match expected {
            "approved" => assert_eq!(approved(&out).amount_cents, 12200),
            "declined" => assert_eq!(
                declined(&out).transaction_token.as_deref(),
                Some("pi_3ds00001")
            ),
            _ => assert_eq!(action_required(&out).transaction_token, "pi_3ds00001"),
        }
        assert_eq!(h.requests().len(), 1, "{status}: one read, no write");
    }
    // A return naming another PaymentIntent is refused without a call.
    let h = harness();
    let req = testing::complete_request(
        "pi_3ds00001",
        "pi_3ds00001",
        12200,
        "EUR",
        &[("payment_intent", "pi_someoneelse")],
    );
    let out = h.run(|| Stripe::complete(req));
    assert!(matches!(out, Err(Failure::InvalidRequest(_))), "{out:?}");
    assert!(h.requests().is_empty());
}

#[test]
fn every_capture_has_its_own_token_and_refunds_reach_the_payment_intent() {
    let mut tokens = Vec::new();
    for sequence in 1..=3 {
        let mut pi = intent("pi_multi0001", "requires_capture", 12200);
        pi["amount_received"] = json!(1000 * sequence);
        let h = harness().setting(MULTICAPTURE, "true").on(
            Method::Post,
            format!("{BASE}/v1/payment_intents/pi_multi0001/capture"),
            Reply::json(
                200,
                if sequence == 3 {
                    json!({"id": "pi_multi0001", "status": "succeeded", "amount": 12200,
                       "amount_received": 6000})
                } else {
                    pi
                },
            ),
        );
        let mut req = testing::capture_request("pi_multi0001", 1000 * sequence as u64, "EUR");
        req.psp_reference = Some("pi_multi0001".into());
        req.sequence = sequence as u32;
        req.final_capture = sequence == 3;
        let out = h.run(|| Stripe::capture(req));
        let sent = form_of(&h.last_request().unwrap());
        let final_flag = field(&sent, "final_capture").map(str::to_owned);
        assert_eq!(
            final_flag.as_deref(),
            if sequence == 3 { None } else { Some("false") }
        );
        let token = match &out {
            Ok(Outcome::Approved(a)) => a.transaction_token.clone(),
            Ok(Outcome::Pending(p)) => p.transaction_token.clone(),
            other => panic!("{other:?}"),
        };
        tokens.push(token);
    }
    assert_eq!(
        tokens,
        [
            "pi_multi0001.capture.1",
            "pi_multi0001.capture.2",
            "pi_multi0001.capture.3"
        ]
    );
    // A refund of the second capture is a Refund on its PaymentIntent.
    let h = harness().on(
        Method::Post,
        format!("{BASE}/v1/refunds"),
        Reply::json(
            200,
            json!({"id": "re_multi0002", "status": "succeeded", "amount": 2000}),
        ),
    );
    let out = h.run(|| Stripe::refund(testing::follow_up_request(&tokens[1], 2000, "EUR")));
    assert_eq!(approved(&out).transaction_token, "re_multi0002");
    let sent = form_of(&h.last_request().unwrap());
    assert_eq!(field(&sent, "payment_intent"), Some("pi_multi0001"));
    // With multicapture on, an authorization asks Stripe for it.
    let h = harness().setting(MULTICAPTURE, "true").on(
        Method::Post,
        format!("{BASE}/v1/payment_intents"),
        Reply::json(200, intent("pi_multi0001", "requires_capture", 12200)),
    );
    h.run(|| Stripe::authorize(authorize_req("pm_card_visa1234")))
        .unwrap();
    let sent = form_of(&h.last_request().unwrap());
    assert_eq!(
        field(&sent, "payment_method_options[card][request_multicapture]"),
        Some("if_available")
    );
    // A capture's sync keeps the capture's token.
    let h = harness().on(
        Method::Get,
        format!("{BASE}/v1/payment_intents/pi_multi0001"),
        Reply::json(
            200,
            json!({"id": "pi_multi0001", "status": "succeeded", "amount": 12200,
                                "amount_received": 3000}),
        ),
    );
    let mut req = testing::sync_request(Operation::Capture, &tokens[1], 2000, "EUR");
    req.psp_reference = Some("pi_multi0001".into());
    let out = h.run(|| Stripe::sync(req));
    assert_eq!(approved(&out).transaction_token, "pi_multi0001.capture.2");
}
