use psp_plugin_sdk::crypto::{base64_encode, hmac_sha256};
use psp_plugin_sdk::http::{HttpError, Method, Request as SentRequest};
use psp_plugin_sdk::testing::{self, Harness, Reply};
use serde_json::{Value, json};

use super::*;

const BASE: &str = "https://checkout-test.adyen.com/v71";
const HMAC_HEX: &str = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056";
const OTHER_HEX: &str = "00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF";

fn harness() -> Harness {
    Harness::new()
        .setting(API_KEY, "AQE_test_api_key")
        .setting(MERCHANT_ACCOUNT, "AcmeECOM")
        .setting(HMAC_KEY, HMAC_HEX)
        .setting(RETURN_URL, "https://shop.example/return")
}

fn order() -> Order {
    Order {
        id: "ord_1".into(),
        number: Some("12345".into()),
        customer_email: Some("Jane@Example.com".into()),
        language_code: Some("en".into()),
        country_code: Some("nl".into()),
        billing_address: None,
        shipping_address: None,
        line_items: vec![],
        metadata: vec![],
    }
}

fn body(req: &SentRequest) -> Value {
    serde_json::from_slice(req.body_bytes()).expect("JSON body")
}

fn authorised() -> Value {
    json!({"pspReference": "993617895204576J", "resultCode": "Authorised",
           "additionalData": {"authCode": "044925"}, "merchantReference": "12345-ref-test-1"})
}

fn received(psp: &str) -> Value {
    json!({"merchantAccount": "AcmeECOM", "paymentPspReference": "993617894903480A",
           "reference": "x", "pspReference": psp, "status": "received",
           "amount": {"value": 2000, "currency": "EUR"}})
}

// ---------------------------------------------------------------------------------------
// info
// ---------------------------------------------------------------------------------------

#[test]
fn info_describes_the_plugin() {
    let info = Adyen::info();
    assert_eq!(info.name, "adyen");
    assert_eq!(info.contract, CONTRACT_VERSION);
    assert!(!info.operations.contains(&Operation::Sync));
    assert!(info.operations.contains(&Operation::HandleWebhook));
    let names: Vec<_> = info.settings.iter().map(|s| s.name.as_str()).collect();
    for name in [
        API_KEY,
        MERCHANT_ACCOUNT,
        CHECKOUT_BASE,
        HMAC_KEY,
        RETURN_URL,
    ] {
        assert!(names.contains(&name), "{name}");
    }
    let secret = |n: &str| info.settings.iter().find(|s| s.name == n).unwrap().secret;
    assert!(secret(API_KEY) && secret(HMAC_KEY) && !secret(MERCHANT_ACCOUNT));
    assert!(info.settings.iter().all(|s| !s.description.is_empty()));
}

// ---------------------------------------------------------------------------------------
// authorize / sale: request shapes
// ---------------------------------------------------------------------------------------

#[test]
fn authorize_with_a_stored_payment_method() {
    let h = harness().on(
        Method::Post,
        format!("{BASE}/payments"),
        Reply::json(200, authorised()),
    );
    let mut req = testing::authorize_request("M5N7TQ4TG5PFWR50", 1999, "eur");
    req.customer_token = Some("shopper_42".into());
    req.order = Some(order());
    let outcome = h.run(|| Adyen::authorize(req)).unwrap();
    let Outcome::Approved(a) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(a.transaction_token, "993617895204576J");
    assert_eq!(a.amount_cents, 1999);
    assert!(a.metadata.contains(&Pair::new("authCode", "044925")));

    let sent = h.last_request().unwrap();
    assert_eq!(sent.method(), Method::Post);
    assert_eq!(sent.url(), format!("{BASE}/payments"));
    assert_eq!(sent.header_value("x-api-key"), Some("AQE_test_api_key"));
    assert_eq!(sent.header_value("idempotency-key"), Some("idem-test-1"));
    assert_eq!(sent.header_value("content-type"), Some("application/json"));
    assert_eq!(sent.header_value("authorization"), None);
    let b = body(&sent);
    assert_eq!(b["amount"], json!({"value": 1999, "currency": "EUR"}));
    assert_eq!(b["reference"], "12345-ref-test-1");
    assert_eq!(b["merchantAccount"], "AcmeECOM");
    assert_eq!(b["returnUrl"], "https://shop.example/return");
    assert_eq!(
        b["paymentMethod"],
        json!({"type": "scheme", "storedPaymentMethodId": "M5N7TQ4TG5PFWR50"})
    );
    assert_eq!(b["shopperReference"], "shopper_42");
    assert_eq!(b["shopperInteraction"], "ContAuth");
    assert_eq!(b["recurringProcessingModel"], "CardOnFile");
    assert_eq!(b["additionalData"], json!({"manualCapture": "true"}));
    assert!(b.get("captureDelayHours").is_none());
    assert_eq!(b["shopperEmail"], "Jane@Example.com");
    assert_eq!(b["countryCode"], "NL");
    assert!(h.unused_replies().is_empty());
}

#[test]
fn stored_payment_method_without_customer_token_uses_the_email_digest() {
    let h = harness().on(
        Method::Post,
        format!("{BASE}/payments"),
        Reply::json(200, authorised()),
    );
    let mut req = testing::authorize_request("M5N7TQ4TG5PFWR50", 100, "EUR");
    req.order = Some(order());
    h.run(|| Adyen::authorize(req)).unwrap();
    let b = body(&h.last_request().unwrap());
    let expected = shopper_reference_for_email("jane@example.com ");
    assert_eq!(b["shopperReference"], expected.as_str());
    assert!(expected.starts_with("cl-") && !expected.contains('@'));

    // Neither customer token nor email: nothing to send, nothing sent.
    let h = harness();
    let req = testing::authorize_request("M5N7TQ4TG5PFWR50", 100, "EUR");
    let err = h.run(|| Adyen::authorize(req)).unwrap_err();
    assert!(matches!(err, Failure::InvalidRequest(_)), "{err:?}");
    assert!(h.requests().is_empty());
}

#[test]
fn authorize_with_encrypted_card_data_from_options() {
    let h = harness().on(
        Method::Post,
        format!("{BASE}/payments"),
        Reply::json(200, authorised()),
    );
    let mut req = testing::authorize_request("cl_placeholder", 2500, "EUR");
    req.order = Some(order());
    req.options_json = Some(
        json!({
            "paymentMethod": {"type": "scheme", "encryptedCardNumber": "adyenjs_0_1_25$abc",
                "encryptedExpiryMonth": "adyenjs_0_1_25$m", "encryptedExpiryYear": "adyenjs_0_1_25$y",
                "encryptedSecurityCode": "adyenjs_0_1_25$c"},
            "storePaymentMethod": true,
            "browserInfo": {"userAgent": "UA", "acceptHeader": "*/*"},
            "returnUrl": "https://shop.example/3ds",
            "ignored": "x"
        })
        .to_string(),
    );
    h.run(|| Adyen::authorize(req)).unwrap();
    let b = body(&h.last_request().unwrap());
    assert_eq!(
        b["paymentMethod"]["encryptedCardNumber"],
        "adyenjs_0_1_25$abc"
    );
    assert_eq!(b["shopperInteraction"], "Ecommerce");
    assert_eq!(b["storePaymentMethod"], true);
    assert_eq!(b["recurringProcessingModel"], "CardOnFile");
    assert_eq!(
        b["shopperReference"],
        shopper_reference_for_email("jane@example.com").as_str()
    );
    assert_eq!(b["browserInfo"]["userAgent"], "UA");
    assert_eq!(b["returnUrl"], "https://shop.example/3ds");
    assert!(b.get("ignored").is_none());
}

#[test]
fn authorize_with_payment_method_json_as_the_token() {
    let h = harness().on(
        Method::Post,
        format!("{BASE}/payments"),
        Reply::json(200, authorised()),
    );
    let token = json!({"type": "scheme", "encryptedCard": "adyenjs_0_1_25$blob"}).to_string();
    let req = testing::authorize_request(&token, 700, "USD");
    h.run(|| Adyen::authorize(req)).unwrap();
    let b = body(&h.last_request().unwrap());
    assert_eq!(b["paymentMethod"]["encryptedCard"], "adyenjs_0_1_25$blob");
    assert_eq!(
        b["reference"], "ref-test-1",
        "no order number: the CL id alone"
    );
    assert!(b.get("storePaymentMethod").is_none());
    assert!(b.get("shopperReference").is_none());

    let h = harness();
    let req = testing::authorize_request("{not json", 700, "USD");
    assert!(matches!(
        h.run(|| Adyen::authorize(req)),
        Err(Failure::InvalidRequest(_))
    ));
    let mut req = testing::authorize_request("pm", 700, "USD");
    req.options_json = Some("[1]".into());
    assert!(matches!(
        h.run(|| Adyen::authorize(req)),
        Err(Failure::InvalidRequest(_))
    ));
}

#[test]
fn sale_captures_immediately() {
    let h = harness().on(
        Method::Post,
        format!("{BASE}/payments"),
        Reply::json(200, authorised()),
    );
    let mut req = testing::authorize_request("M5N7TQ4TG5PFWR50", 500, "EUR");
    req.customer_token = Some("shopper_42".into());
    let outcome = h.run(|| Adyen::sale(req)).unwrap();
    assert!(
        matches!(outcome, Outcome::Approved(ref a) if a.transaction_token == "993617895204576J")
    );
    let b = body(&h.last_request().unwrap());
    assert_eq!(b["captureDelayHours"], 0);
    assert!(b.get("additionalData").is_none());
}

#[test]
fn checkout_base_setting_and_long_idempotency_keys() {
    let h = harness()
        .setting(CHECKOUT_BASE, "http://127.0.0.1:4010/")
        .on(
            Method::Post,
            "http://127.0.0.1:4010/payments",
            Reply::json(200, authorised()),
        );
    let mut req = testing::authorize_request("M5N7TQ4TG5PFWR50", 500, "EUR");
    req.customer_token = Some("shopper_42".into());
    req.idempotency_key = format!(
        "a-very-long-gateway-name-for-sure:authorize:{}",
        "f".repeat(32)
    );
    assert!(req.idempotency_key.len() > 64);
    h.run(|| Adyen::authorize(req.clone())).unwrap();
    let key = h
        .last_request()
        .unwrap()
        .header_value("idempotency-key")
        .unwrap()
        .to_owned();
    assert_eq!(key.len(), 64);
    assert_eq!(key, adyen_idempotency_key(&req.idempotency_key), "stable");
    assert_ne!(key, req.idempotency_key);
}

#[test]
fn missing_settings_are_misconfigured() {
    let req = testing::authorize_request("M5N7TQ4TG5PFWR50", 500, "EUR");
    let h = Harness::new().setting(MERCHANT_ACCOUNT, "AcmeECOM");
    assert!(
        matches!(h.run(|| Adyen::authorize(req.clone())), Err(Failure::Misconfigured(m)) if m.contains(API_KEY))
    );
    let h = Harness::new().setting(API_KEY, "k");
    assert!(
        matches!(h.run(|| Adyen::authorize(req.clone())), Err(Failure::Misconfigured(m)) if m.contains(MERCHANT_ACCOUNT))
    );
    let h = Harness::new()
        .setting(API_KEY, "k")
        .setting(MERCHANT_ACCOUNT, "m");
    let mut req = req;
    req.customer_token = Some("shopper_42".into());
    assert!(
        matches!(h.run(|| Adyen::authorize(req)), Err(Failure::Misconfigured(m)) if m.contains(RETURN_URL))
    );
    let h = Harness::new();
    let hook = testing::webhook_request(&[], "{}");
    assert!(
        matches!(h.run(|| Adyen::handle_webhook(hook)), Err(Failure::Misconfigured(m)) if m.contains(HMAC_KEY))
    );
}

// ---------------------------------------------------------------------------------------
// authorize: result codes
// ---------------------------------------------------------------------------------------

fn authorize_answer(answer: Value) -> Result<Outcome, Failure> {
    let h = harness().on(
        Method::Post,
        format!("{BASE}/payments"),
        Reply::json(200, answer),
    );
    let mut req = testing::authorize_request("M5N7TQ4TG5PFWR50", 1000, "EUR");
    req.customer_token = Some("shopper_42".into());
    req.order = Some(order());
    h.run(|| Adyen::authorize(req))
}

#[test]
fn received_and_pending_are_pending_on_the_psp_reference() {
    for code in ["Received", "Pending"] {
        let outcome =
            authorize_answer(json!({"pspReference": "PSP0000000000001", "resultCode": code}))
                .unwrap();
        let Outcome::Pending(p) = outcome else {
            panic!("{code}: {outcome:?}")
        };
        assert_eq!(p.psp_reference, "PSP0000000000001");
        assert_eq!(p.transaction_token, "PSP0000000000001");
        assert_eq!(p.amount_cents, 1000);
    }
}

#[test]
fn shopper_actions_are_action_required_with_adyen_s_action() {
    for code in ["RedirectShopper", "IdentifyShopper", "ChallengeShopper"] {
        let action = json!({"type": "threeDS2", "subtype": "fingerprint", "token": "eyJ0"});
        let outcome = authorize_answer(
            json!({"pspReference": "PSP0000000000002", "resultCode": code, "action": action}),
        )
        .unwrap();
        let Outcome::ActionRequired(r) = outcome else {
            panic!("{code}: {outcome:?}")
        };
        assert_eq!(r.psp_reference, "PSP0000000000002");
        assert_eq!(r.transaction_token, "PSP0000000000002");
        let ShopperAction::Sdk(sdk) = &r.action else {
            panic!("{code}: {:?}", r.action)
        };
        assert_eq!(sdk.kind, "threeDS2");
        assert_eq!(
            serde_json::from_str::<Value>(&sdk.data_json).unwrap(),
            action
        );
        assert!(r.metadata.contains(&Pair::new("resultCode", code)));
    }
    let redirect = json!({"type": "redirect", "method": "GET", "url": "https://checkoutshopper-test.adyen.com/checkoutshopper/r"});
    let outcome = authorize_answer(
        json!({"pspReference": "PSP4", "resultCode": "RedirectShopper", "action": redirect}),
    )
    .unwrap();
    assert!(
        matches!(&outcome, Outcome::ActionRequired(r)
            if r.action == ShopperAction::redirect("https://checkoutshopper-test.adyen.com/checkoutshopper/r")),
        "{outcome:?}"
    );
    // Adyen's own 3DS2 example has no pspReference: under the merchant reference.
    let outcome =
        authorize_answer(json!({"resultCode": "IdentifyShopper", "action": {"type": "threeDS2"}}))
            .unwrap();
    let Outcome::ActionRequired(r) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(r.psp_reference, "12345-ref-test-1");
    // No action to follow: pending until a notification.
    let outcome =
        authorize_answer(json!({"pspReference": "PSP5", "resultCode": "RedirectShopper"})).unwrap();
    assert!(
        matches!(outcome, Outcome::Pending(ref p) if p.psp_reference == "PSP5"),
        "{outcome:?}"
    );
}

#[test]
fn refusals_are_declined_with_reason_and_code() {
    let outcome = authorize_answer(json!({"pspReference": "PSP0000000000003",
        "resultCode": "Refused", "refusalReason": "Not enough balance", "refusalReasonCode": "12"}))
    .unwrap();
    assert_eq!(
        outcome,
        Outcome::Declined(Declined {
            psp_reference: Some("PSP0000000000003".into()),
            code: "12".into(),
            message: "Not enough balance".into(),
            transaction_token: Some("PSP0000000000003".into()),
        })
    );
    for code in ["Error", "Cancelled"] {
        let outcome = authorize_answer(json!({"pspReference": "P", "resultCode": code,
            "refusalReason": "Acquirer Error", "refusalReasonCode": "4"}))
        .unwrap();
        assert!(
            matches!(outcome, Outcome::Declined(ref d) if d.code == "4" && d.message == "Acquirer Error"),
            "{code}"
        );
    }
    let outcome = authorize_answer(json!({"resultCode": "Refused"})).unwrap();
    assert!(
        matches!(outcome, Outcome::Declined(ref d) if d.code == "refused" && d.transaction_token.is_none())
    );
}

#[test]
fn odd_answers_are_bad_responses() {
    assert!(matches!(
        authorize_answer(json!({"resultCode": "Authorised"})),
        Err(Failure::BadResponse(_))
    ));
    assert!(matches!(
        authorize_answer(json!({"pspReference": "P"})),
        Err(Failure::BadResponse(_))
    ));
    assert!(matches!(
        authorize_answer(json!({"pspReference": "P", "resultCode": "Teleported"})),
        Err(Failure::BadResponse(_))
    ));
    let h = harness().on(
        Method::Post,
        format!("{BASE}/payments"),
        Reply::text(200, "<html>"),
    );
    let mut req = testing::authorize_request("pm", 1, "EUR");
    req.customer_token = Some("shopper_42".into());
    assert!(matches!(
        h.run(|| Adyen::authorize(req)),
        Err(Failure::BadResponse(_))
    ));
}

#[test]
fn http_errors_map_to_failures() {
    let error = |status: u16| {
        Reply::json(
            status,
            json!({"status": status, "errorCode": "000",
            "message": "Something went wrong", "errorType": "validation"}),
        )
    };
    let cases: Vec<(Reply, &str)> = vec![
        (error(401), "misconfigured"),
        (error(403), "misconfigured"),
        (error(400), "invalid-request"),
        (error(422), "invalid-request"),
        (error(429), "unreachable"),
        (error(500), "unreachable"),
        (Reply::status(503), "unreachable"),
        (Reply::error(HttpError::Timeout), "timeout"),
        (
            Reply::error(HttpError::Denied("checkout-test.adyen.com".into())),
            "misconfigured",
        ),
    ];
    for (reply, kind) in cases {
        let h = harness().on(Method::Post, format!("{BASE}/payments"), reply);
        let mut req = testing::authorize_request("pm", 1, "EUR");
        req.customer_token = Some("shopper_42".into());
        let err = h.run(|| Adyen::authorize(req)).unwrap_err();
        assert_eq!(err.kind(), kind, "{err:?}");
    }
}

// ---------------------------------------------------------------------------------------
// capture, void, refund
// ---------------------------------------------------------------------------------------

#[test]
fn capture_is_pending_on_the_capture_reference() {
    let h = harness().on(
        Method::Post,
        format!("{BASE}/payments/993617894903480A/captures"),
        Reply::json(201, received("993617894906488A")),
    );
    let mut req = testing::capture_request("993617894903480A", 2000, "EUR");
    req.order = Some(order());
    let outcome = h.run(|| Adyen::capture(req)).unwrap();
    let Outcome::Pending(p) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(p.psp_reference, "993617894906488A");
    assert_eq!(p.transaction_token, "993617894903480A:993617894906488A");
    assert_eq!(p.amount_cents, 2000);
    let sent = h.last_request().unwrap();
    assert_eq!(sent.header_value("x-api-key"), Some("AQE_test_api_key"));
    assert_eq!(sent.header_value("idempotency-key"), Some("idem-test-2"));
    assert_eq!(
        body(&sent),
        json!({"merchantAccount": "AcmeECOM", "reference": "12345-ref-test-2",
               "amount": {"value": 2000, "currency": "EUR"}})
    );
}

#[test]
fn void_cancels_without_an_amount() {
    let h = harness().on(
        Method::Post,
        format!("{BASE}/payments/993617894903480A/cancels"),
        Reply::json(201, received("CANCEL0000000001")),
    );
    let req = testing::follow_up_request("993617894903480A", 2000, "EUR");
    let outcome = h.run(|| Adyen::void(req)).unwrap();
    assert!(matches!(outcome, Outcome::Pending(ref p) if p.psp_reference == "CANCEL0000000001"));
    let b = body(&h.last_request().unwrap());
    assert_eq!(
        b,
        json!({"merchantAccount": "AcmeECOM", "reference": "ref-test-2"})
    );
}

#[test]
fn refund_of_a_capture_acts_on_the_payment() {
    let h = harness().on(
        Method::Post,
        format!("{BASE}/payments/993617894903480A/refunds"),
        Reply::json(201, received("REFUND0000000001")),
    );
    // The capture's token is `<payment>:<capture>`.
    let req = testing::follow_up_request("993617894903480A:993617894906488A", 750, "eur");
    let outcome = h.run(|| Adyen::refund(req)).unwrap();
    let Outcome::Pending(p) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(p.psp_reference, "REFUND0000000001");
    assert_eq!(p.transaction_token, "993617894903480A:REFUND0000000001");
    let b = body(&h.last_request().unwrap());
    assert_eq!(b["amount"], json!({"value": 750, "currency": "EUR"}));
    assert_eq!(b["merchantAccount"], "AcmeECOM");
    assert_eq!(b["reference"], "ref-test-2");
}

#[test]
fn modification_answers_and_errors() {
    assert!(matches!(
        modification_outcome(&json!({"status": "received"}), "P", 1),
        Err(Failure::BadResponse(_))
    ));
    assert!(matches!(
        modification_outcome(&json!({"status": "done", "pspReference": "X"}), "P", 1),
        Err(Failure::BadResponse(_))
    ));
    let h = harness().on(
        Method::Post,
        format!("{BASE}/payments/P1/captures"),
        Reply::json(422, json!({"status": 422, "errorCode": "167",
            "message": "Original pspReference required for this operation", "errorType": "validation"})),
    );
    let err = h
        .run(|| Adyen::capture(testing::capture_request("P1", 1, "EUR")))
        .unwrap_err();
    assert!(
        matches!(err, Failure::InvalidRequest(ref m) if m.contains("167")),
        "{err:?}"
    );
    // Odd characters in a token are escaped, never spliced into the path.
    let h = harness().on(
        Method::Post,
        format!("{BASE}/payments/a%2Fb%3Fc/cancels"),
        Reply::json(201, received("C1")),
    );
    h.run(|| Adyen::void(testing::follow_up_request("a/b?c", 1, "EUR")))
        .unwrap();
    let h = harness();
    let err = h
        .run(|| Adyen::void(testing::follow_up_request(" ", 1, "EUR")))
        .unwrap_err();
    assert!(matches!(err, Failure::InvalidRequest(_)));
}

#[test]
fn sync_is_unsupported() {
    let h = harness();
    let err = h
        .run(|| Adyen::sync(testing::sync_request(Operation::Capture, "P", 1, "EUR")))
        .unwrap_err();
    assert!(matches!(err, Failure::Unsupported(_)));
    assert!(h.requests().is_empty());
}

// ---------------------------------------------------------------------------------------
// tokenize
// ---------------------------------------------------------------------------------------

fn card_token() -> String {
    json!({"type": "scheme", "encryptedCardNumber": "adyenjs_0_1_25$n",
           "encryptedExpiryMonth": "adyenjs_0_1_25$m", "encryptedExpiryYear": "adyenjs_0_1_25$y",
           "encryptedSecurityCode": "adyenjs_0_1_25$c"})
    .to_string()
}

#[test]
fn tokenize_stores_the_card_with_a_zero_amount_verification() {
    let answer = json!({"pspReference": "993617895195570C", "resultCode": "Authorised",
        "additionalData": {"tokenization.shopperReference": "x",
            "tokenization.storedPaymentMethodId": "M5N7TQ4TG5PFWR50",
            "tokenization.store.operationType": "created"}});
    let h = harness().on(
        Method::Post,
        format!("{BASE}/payments"),
        Reply::json(200, answer),
    );
    let mut req = testing::tokenize_request(&card_token());
    req.customer_email = Some("Jane@Example.com".into());
    let saved = h.run(|| Adyen::tokenize(req)).unwrap();
    let shopper = shopper_reference_for_email("jane@example.com");
    assert_eq!(saved.customer_token.as_deref(), Some(shopper.as_str()));
    assert_eq!(saved.payment_source_token, "M5N7TQ4TG5PFWR50");
    let sent = h.last_request().unwrap();
    assert_eq!(sent.header_value("idempotency-key"), Some("idem-test-3"));
    let b = body(&sent);
    assert_eq!(b["amount"], json!({"value": 0, "currency": "EUR"}));
    assert_eq!(b["storePaymentMethod"], true);
    assert_eq!(b["shopperReference"], shopper.as_str());
    assert_eq!(b["recurringProcessingModel"], "CardOnFile");
    assert_eq!(b["shopperInteraction"], "Ecommerce");
    assert_eq!(
        b["paymentMethod"]["encryptedCardNumber"],
        "adyenjs_0_1_25$n"
    );
    assert_eq!(b["returnUrl"], "https://shop.example/return");
    assert!(b.get("additionalData").is_none());
}

#[test]
fn tokenize_reads_the_recurring_detail_reference_too() {
    let answer = json!({"pspReference": "P", "resultCode": "Authorised",
        "additionalData": {"recurring.recurringDetailReference": "8415698462516992",
                           "recurring.shopperReference": "shopper_42"}});
    let h = harness().setting(VERIFICATION_CURRENCY, "usd").on(
        Method::Post,
        format!("{BASE}/payments"),
        Reply::json(200, answer),
    );
    let mut req = testing::tokenize_request(&card_token());
    req.customer_token = Some("shopper_42".into());
    let saved = h.run(|| Adyen::tokenize(req)).unwrap();
    assert_eq!(saved.customer_token.as_deref(), Some("shopper_42"));
    assert_eq!(saved.payment_source_token, "8415698462516992");
    assert_eq!(
        body(&h.last_request().unwrap())["amount"]["currency"],
        "USD"
    );
}

#[test]
fn tokenize_failures() {
    let run = |answer: Value| {
        let h = harness().on(
            Method::Post,
            format!("{BASE}/payments"),
            Reply::json(200, answer),
        );
        let mut req = testing::tokenize_request(&card_token());
        req.customer_token = Some("shopper_42".into());
        h.run(|| Adyen::tokenize(req))
    };
    assert!(matches!(
        run(json!({"resultCode": "Refused", "refusalReason": "CVC Declined"})),
        Err(Failure::InvalidRequest(m)) if m.contains("CVC Declined")
    ));
    assert!(matches!(
        run(json!({"resultCode": "IdentifyShopper", "action": {}})),
        Err(Failure::InvalidRequest(_))
    ));
    assert!(matches!(
        run(json!({"resultCode": "Authorised", "pspReference": "P"})),
        Err(Failure::BadResponse(_))
    ));
    // No customer at all.
    let h = harness();
    assert!(matches!(
        h.run(|| Adyen::tokenize(testing::tokenize_request(&card_token()))),
        Err(Failure::InvalidRequest(_))
    ));
    // Already a stored payment method id: answered as is, Adyen not called.
    let mut req = testing::tokenize_request("M5N7TQ4TG5PFWR50");
    req.customer_token = Some("shopper_42".into());
    let saved = h.run(|| Adyen::tokenize(req)).unwrap();
    assert_eq!(saved.payment_source_token, "M5N7TQ4TG5PFWR50");
    assert!(h.requests().is_empty());
}

// ---------------------------------------------------------------------------------------
// notifications
// ---------------------------------------------------------------------------------------

fn item(event_code: &str, psp: &str, original: &str, success: &str) -> Value {
    json!({
        "additionalData": {},
        "amount": {"currency": "EUR", "value": 2000},
        "eventCode": event_code,
        "eventDate": "2024-01-01T01:00:00+01:00",
        "merchantAccountCode": "AcmeECOM",
        "merchantReference": "12345-ref",
        "originalReference": original,
        "pspReference": psp,
        "reason": if success == "true" { "" } else { "Insufficient balance" },
        "success": success
    })
}

fn sign_item(mut item: Value, hex_key: &str) -> Value {
    let key = psp_plugin_sdk::crypto::hex_decode(hex_key).unwrap();
    let sig = base64_encode(hmac_sha256(&key, signing_string(&item).as_bytes()));
    item["additionalData"]["hmacSignature"] = json!(sig);
    item
}

fn batch(items: Vec<Value>) -> Vec<u8> {
    let items: Vec<Value> = items
        .into_iter()
        .map(|i| json!({"NotificationRequestItem": i}))
        .collect();
    serde_json::to_vec(&json!({"live": "false", "notificationItems": items})).unwrap()
}

fn webhook(body: Vec<u8>) -> Result<WebhookReply, Failure> {
    harness().run(|| Adyen::handle_webhook(testing::webhook_request(&[], body)))
}

#[test]
fn signing_string_follows_adyens_order() {
    let i = item("CAPTURE", "CAP1", "PAY1", "true");
    assert_eq!(
        signing_string(&i),
        "CAP1:PAY1:AcmeECOM:12345-ref:2000:EUR:CAPTURE:true"
    );
    let bare = json!({"pspReference": "P", "eventCode": "AUTHORISATION", "success": "false"});
    assert_eq!(signing_string(&bare), "P::::::AUTHORISATION:false");
}

#[test]
fn known_signature_from_the_adyen_python_library() {
    // `Adyen.util.generate_notification_sig` (Adyen 16.0.0) of this item with HMAC_HEX.
    let mut i = json!({"pspReference": "7914073381342284", "merchantAccountCode": "TestMerchant",
        "merchantReference": "TestPayment-1407325143704", "amount": {"value": 1130, "currency": "EUR"},
        "eventCode": "AUTHORISATION", "success": "true",
        "additionalData": {"hmacSignature": "coqCmt/IZ4E3CzPvMY8zTjQVL5hYJUiBRg8UU+iCWo0="}});
    assert_eq!(
        signing_string(&i),
        "7914073381342284::TestMerchant:TestPayment-1407325143704:1130:EUR:AUTHORISATION:true"
    );
    let key = psp_plugin_sdk::crypto::hex_decode(HMAC_HEX).unwrap();
    assert!(verify_item(&i, &key).is_ok());
    i["merchantReference"] = json!("TestPayment-1407325143705");
    assert!(matches!(
        verify_item(&i, &key),
        Err(Failure::Unauthenticated(_))
    ));
}

#[test]
fn every_tracked_event_maps_to_an_operation_and_status() {
    let cases = [
        (
            "AUTHORISATION",
            "true",
            EventKind::Authorized,
            FinalStatus::Succeeded,
        ),
        (
            "AUTHORISATION",
            "false",
            EventKind::Authorized,
            FinalStatus::Failed,
        ),
        (
            "CAPTURE",
            "true",
            EventKind::Captured,
            FinalStatus::Succeeded,
        ),
        ("CAPTURE", "false", EventKind::Captured, FinalStatus::Failed),
        (
            "CAPTURE_FAILED",
            "true",
            EventKind::Captured,
            FinalStatus::Failed,
        ),
        (
            "CANCELLATION",
            "true",
            EventKind::Voided,
            FinalStatus::Succeeded,
        ),
        (
            "CANCELLATION",
            "false",
            EventKind::Voided,
            FinalStatus::Failed,
        ),
        (
            "REFUND",
            "true",
            EventKind::Refunded,
            FinalStatus::Succeeded,
        ),
        (
            "REFUNDED_REVERSED",
            "true",
            EventKind::Reversed,
            FinalStatus::Succeeded,
        ),
        (
            "CHARGEBACK",
            "true",
            EventKind::Chargeback,
            FinalStatus::Succeeded,
        ),
        ("REFUND", "false", EventKind::Refunded, FinalStatus::Failed),
        (
            "REFUND_FAILED",
            "true",
            EventKind::Refunded,
            FinalStatus::Failed,
        ),
    ];
    for (code, success, op, status) in cases {
        let reply = webhook(batch(vec![sign_item(
            item(code, "MOD1", "PAY1", success),
            HMAC_HEX,
        )]))
        .unwrap_or_else(|e| panic!("{code}: {e:?}"));
        assert_eq!(reply.status, 200);
        assert_eq!(reply.content_type, "text/plain");
        assert_eq!(reply.body, b"[accepted]");
        let e = &reply.events[0];
        assert_eq!(e.psp_reference, "MOD1", "{code}");
        assert_eq!(e.kind, Some(op), "{code}");
        assert_eq!(e.status, status, "{code} {success}");
        assert_eq!(e.code.as_deref(), Some(code));
        assert_eq!(e.amount, Some(Money::new(2000, "EUR")));
        if success == "false" {
            assert_eq!(e.message.as_deref(), Some("Insufficient balance"));
        } else {
            assert_eq!(e.message, None);
        }
        // AUTHORISATION also names the merchant reference (a payment pending without a
        // pspReference); the modifications only their own pspReference.
        if op == EventKind::Authorized {
            assert_eq!(reply.events.len(), 2);
            assert_eq!(reply.events[1].psp_reference, "12345-ref");
        } else {
            assert_eq!(reply.events.len(), 1, "{code}");
        }
    }
}

#[test]
fn untracked_events_are_accepted_and_ignored() {
    let reply = webhook(batch(vec![
        sign_item(item("REPORT_AVAILABLE", "R1", "", "true"), HMAC_HEX),
        sign_item(item("CAPTURE", "CAP1", "PAY1", "true"), HMAC_HEX),
    ]))
    .unwrap();
    assert_eq!(reply.events.len(), 1);
    assert_eq!(reply.events[0].psp_reference, "CAP1");
    assert_eq!(reply.body, b"[accepted]");
}

#[test]
fn tampered_unsigned_or_wrongly_keyed_items_reject_the_batch() {
    let good = sign_item(item("CAPTURE", "CAP1", "PAY1", "true"), HMAC_HEX);
    assert!(webhook(batch(vec![good.clone()])).is_ok());

    let mut tampered = good.clone();
    tampered["amount"]["value"] = json!(2);
    let err = webhook(batch(vec![good.clone(), tampered])).unwrap_err();
    assert!(matches!(err, Failure::Unauthenticated(_)), "{err:?}");

    let mut flipped = good.clone();
    flipped["success"] = json!("false");
    assert!(matches!(
        webhook(batch(vec![flipped])),
        Err(Failure::Unauthenticated(_))
    ));

    let mut unsigned = good.clone();
    unsigned["additionalData"] = json!({});
    assert!(matches!(
        webhook(batch(vec![unsigned])),
        Err(Failure::Unauthenticated(_))
    ));

    let mut garbage = good.clone();
    garbage["additionalData"]["hmacSignature"] = json!("not base64!");
    assert!(matches!(
        webhook(batch(vec![garbage])),
        Err(Failure::Unauthenticated(_))
    ));

    let wrong_key = sign_item(item("CAPTURE", "CAP1", "PAY1", "true"), OTHER_HEX);
    assert!(matches!(
        webhook(batch(vec![wrong_key])),
        Err(Failure::Unauthenticated(_))
    ));
}

#[test]
fn malformed_notifications_are_invalid_requests() {
    for body in [&b"nope"[..], b"{}", br#"{"notificationItems": [{"x": 1}]}"#] {
        assert!(matches!(
            webhook(body.to_vec()),
            Err(Failure::InvalidRequest(_))
        ));
    }
    let h = harness().setting(HMAC_KEY, "zz-not-hex");
    let body = batch(vec![item("CAPTURE", "C", "P", "true")]);
    assert!(matches!(
        h.run(|| Adyen::handle_webhook(testing::webhook_request(&[], body))),
        Err(Failure::Misconfigured(_))
    ));
}

#[test]
fn an_item_signed_over_a_float_amount_verifies_after_a_json_round_trip() {
    // Found by the adyen fuzz target: without serde_json's float_roundtrip this float's
    // text changes on re-parsing, so the signing string (and the signature) did too.
    let mut i = item("CAPTURE", "CAP1", "PAY1", "true");
    i["amount"]["value"] = serde_json::from_str("55555555555555551e131").unwrap();
    let reply = webhook(batch(vec![sign_item(i, HMAC_HEX)])).unwrap();
    assert_eq!(reply.events.len(), 1);
}

#[test]
fn complete_sends_the_returns_details_to_payments_details() {
    let h = harness().on(
        Method::Post,
        format!("{BASE}/payments/details"),
        Reply::json(200, authorised()),
    );
    let req = testing::complete_request(
        "12345-ref-test-1",
        "12345-ref-test-1",
        2500,
        "EUR",
        &[("redirectResult", "X6XtfGC3!Y..."), ("utm_source", "mail")],
    );
    let out = h.run(|| Adyen::complete(req));
    match out {
        Ok(Outcome::Approved(a)) => assert_eq!(
            (a.transaction_token.as_str(), a.amount_cents),
            ("993617895204576J", 2500)
        ),
        other => panic!("expected approved, got {other:?}"),
    }
    let sent = h.last_request().unwrap();
    assert_eq!(
        body(&sent),
        json!({"details": {"redirectResult": "X6XtfGC3!Y..."}}),
        "only Adyen's own detail keys are sent"
    );
    assert_eq!(sent.header_value("idempotency-key"), Some("idem-test-1"));

    // The Drop-in's state.data passes as it is; a refusal is a decline.
    let h = harness().on(
        Method::Post,
        format!("{BASE}/payments/details"),
        Reply::json(
            200,
            json!({"pspReference": "PSP9", "resultCode": "Refused",
                   "refusalReason": "3D Not Authenticated", "refusalReasonCode": "11"}),
        ),
    );
    let mut req = testing::complete_request("PSP9", "PSP9", 2500, "EUR", &[]);
    req.details_json = Some(
        json!({"details": {"threeDSResult": "eyJ0cmFuc1N0YXR1cyI6IlkifQ=="},
               "paymentData": "Ab02b4c0!BQABAg"})
        .to_string(),
    );
    let out = h.run(|| Adyen::complete(req));
    match out {
        Ok(Outcome::Declined(d)) => assert_eq!(d.code, "11"),
        other => panic!("expected declined, got {other:?}"),
    }
    assert_eq!(
        body(&h.last_request().unwrap()),
        json!({"details": {"threeDSResult": "eyJ0cmFuc1N0YXR1cyI6IlkifQ=="},
               "paymentData": "Ab02b4c0!BQABAg"})
    );

    // Nothing Adyen could use: refused before any call.
    for (params, details) in [
        (vec![("utm_source", "mail")], None),
        (vec![], Some("not json")),
        (vec![], Some(r#"{"paymentData": "x"}"#)),
    ] {
        let h = harness();
        let mut req = testing::complete_request("PSP9", "PSP9", 2500, "EUR", &params);
        req.details_json = details.map(str::to_owned);
        let out = h.run(|| Adyen::complete(req));
        assert!(matches!(out, Err(Failure::InvalidRequest(_))), "{out:?}");
        assert!(h.requests().is_empty());
    }
}

#[test]
fn the_shoppers_return_url_comes_before_the_setting() {
    let shopper = Shopper {
        return_url: Some("https://pay.example.com/psp/adyen/return/txn_1".into()),
        cancel_url: None,
        ip_address: None,
        user_agent: None,
        accept_header: None,
    };
    for (options, with_shopper, want) in [
        (None, true, "https://pay.example.com/psp/adyen/return/txn_1"),
        (None, false, "https://shop.example/return"),
        (
            Some(r#"{"returnUrl": "https://shop.example/3ds"}"#),
            true,
            "https://shop.example/3ds",
        ),
    ] {
        let h = harness().on(
            Method::Post,
            format!("{BASE}/payments"),
            Reply::json(200, authorised()),
        );
        let mut req = testing::authorize_request("M5N7TQ4TG5PFWR50", 2500, "EUR");
        req.customer_token = Some("shopper-7".into());
        req.options_json = options.map(str::to_owned);
        req.shopper = with_shopper.then(|| shopper.clone());
        h.run(|| Adyen::authorize(req)).unwrap();
        assert_eq!(body(&h.last_request().unwrap())["returnUrl"], want);
    }
}
