//! The properties the fuzz targets check, one module per target (`fuzz_targets/<name>.rs`
//! calls `<name>::check`). They live here rather than in the targets so the tests crate can
//! run every seed through the same code on stable, without libFuzzer
//! (tests/tests/fuzz_seeds.rs includes this file).
//!
//! A `check` panics when a property fails, which libFuzzer records as a crash. Inputs a
//! parser refuses are fine: errors are values; only a panic or a broken invariant is a bug.

/// Commerce Layer: the request parser for every action, and the body signature.
pub mod commerce_layer {
    use psp_gateway::payments::PaymentRequest;
    use psp_gateway::protocol::commerce_layer::{parse, sign, signature_matches};
    use psp_gateway::store::Action;
    use serde_json::Value;

    const ACTIONS: [Action; 6] = [
        Action::Authorize,
        Action::Capture,
        Action::Void,
        Action::Refund,
        Action::Token,
        Action::Sale,
    ];
    const SECRET: &str = "fuzz-shared-secret";

    pub fn check(body: &[u8]) {
        for action in ACTIONS {
            if let Ok(req) = parse::parse("gw", action, body) {
                invariants(action, body, &req);
            }
        }
        signature(body);
    }

    fn non_blank(s: &Option<String>) -> bool {
        s.as_deref().is_some_and(|s| !s.trim().is_empty())
    }

    fn invariants(action: Action, body: &[u8], req: &PaymentRequest) {
        assert_eq!(req.gateway, "gw");
        assert_eq!(req.action, action);
        assert!(!req.resource_id.is_empty());
        if action != Action::Token {
            // What the plugins forward to the PSP as an ISO 4217 code.
            assert!(
                req.currency.len() == 3 && req.currency.bytes().all(|b| b.is_ascii_uppercase()),
                "currency {:?} for {action:?}",
                req.currency
            );
        }
        match action {
            Action::Authorize | Action::Sale => {
                assert!(non_blank(&req.payment_source_token));
                assert!(req.parent_token.is_none());
                assert!(req.order.is_some());
                assert_eq!(
                    req.natural_key,
                    format!("{}:{}", req.resource_id, req.amount_cents)
                );
            }
            Action::Capture | Action::Void | Action::Refund => {
                assert!(non_blank(&req.parent_token));
                assert!(req.payment_source_token.is_none());
                if action == Action::Void {
                    assert_eq!(req.natural_key, req.resource_id);
                }
            }
            Action::Token => {
                assert!(non_blank(&req.payment_source_token));
                assert_eq!(req.natural_key, req.resource_id);
            }
        }
        if let Some(options) = &req.options_json {
            let options: Value = serde_json::from_str(options).expect("options are JSON");
            assert!(options.is_object());
        }
        if let Some(order) = &req.order {
            // Every quantity is one the document sent (or 0 where it sent none usable):
            // never a wrapped or truncated number.
            // A member never read stays raw, so the tree may refuse what the reader took.
            let Ok(doc) = serde_json::from_slice::<Value>(body) else {
                return;
            };
            let sent: Vec<u64> = doc["included"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r["attributes"]["quantity"].as_u64())
                .collect();
            for item in &order.line_items {
                let q = u64::from(item.quantity);
                assert!(q == 0 || sent.contains(&q), "quantity {q} was not sent");
            }
        }
    }

    fn signature(body: &[u8]) {
        let sig = sign(SECRET, body);
        assert!(signature_matches(SECRET, body, &sig));
        // Header values may carry blanks around them.
        assert!(signature_matches(SECRET, body, &format!(" {sig}\t")));
        assert!(!signature_matches("another-secret", body, &sig));
        if !body.is_empty() {
            let mut flipped = body.to_vec();
            let i = usize::from(body[0]) % body.len();
            flipped[i] ^= 0x01;
            assert!(!signature_matches(SECRET, &flipped, &sig));
        }
        // Flipping the lowest bit keeps a base64 character printable and non-blank.
        let mut forged = sig.into_bytes();
        forged[0] ^= 0x01;
        let forged = String::from_utf8(forged).expect("base64 is ASCII");
        assert!(!signature_matches(SECRET, body, &forged));
    }
}

/// PGM: the body parsers shared by `pay` and `refund`, composed as the handlers compose them.
pub mod pgm {
    use psp_gateway::protocol::pgm::parse::{
        amount, currency, parse_json, required_str, sale_request, source_token,
    };
    use psp_gateway::store::Action;
    use serde_json::Value;

    pub fn check(body: &[u8]) {
        // The oracle is a full tree of the same body: the raw reader must agree with it.
        let tree = serde_json::from_slice::<Value>(body);
        let Ok(parsed) = parse_json(body) else {
            assert!(!tree.is_ok_and(|v| v.is_object()), "an object was refused");
            return;
        };
        // The reader leaves members raw, so it may take what the tree refuses (a lone
        // surrogate escape in a member never read): nothing to compare then.
        let Ok(value) = tree else {
            return;
        };
        assert!(value.is_object());
        let amount = amount(&parsed).ok();
        assert_eq!(amount, value["amount"].as_u64().filter(|a| *a > 0));
        let currency = currency(&parsed).ok();
        if let Some(c) = &currency {
            assert!(c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()));
            let sent = value["currency"].as_str().expect("a currency was sent");
            assert!(sent.eq_ignore_ascii_case(c));
        }
        for field in ["shopTransactionId", "paymentId"] {
            let sent = value[field].as_str().filter(|s| !s.trim().is_empty());
            assert_eq!(required_str(&parsed, field).ok().as_deref(), sent);
        }
        for path in [
            ["providerData", "customerEmail"],
            ["subscriptionInfo", "token"],
        ] {
            let sent = value[path[0]][path[1]].as_str();
            assert_eq!(parsed.text_at(&path).as_deref(), sent);
        }
        assert_eq!(
            parsed.integer_at(&["subscriptionInfo", "intervalCount"]),
            value["subscriptionInfo"]["intervalCount"].as_i64()
        );
        let token = source_token(&parsed).ok();
        if let Some(t) = &token {
            assert!(!t.is_empty());
        }
        let (Some(amount), Some(currency), Ok(shop), Some(token)) = (
            amount,
            currency,
            required_str(&parsed, "shopTransactionId"),
            token,
        ) else {
            return;
        };
        let options = parsed.provider_options();
        assert_eq!(
            options.as_ref(),
            value.get("providerData").and_then(|d| d.get("options"))
        );
        let req = sale_request(
            "gw",
            &shop,
            amount,
            currency,
            token.clone(),
            None,
            options.as_ref(),
        );
        assert_eq!(req.action, Action::Sale);
        assert_eq!(req.natural_key, shop);
        assert_eq!(req.resource_id, shop);
        assert_eq!(req.amount_cents, amount);
        assert_eq!(req.payment_source_token, Some(token));
        if let Some(options) = options {
            let back: Value = serde_json::from_str(req.options_json.as_deref().unwrap())
                .expect("options are JSON");
            // Exact, floats included: serde_json's float_roundtrip feature is on.
            assert_eq!(back, options);
        }
    }
}

/// The operator's config from TOML text: never a panic, an error names its problems, and a
/// loaded config holds what validation promises.
pub mod config {
    use std::collections::HashSet;
    use std::path::Path;

    use psp_gateway::config::{Config, ConfigError};

    /// Variables named `UNSET...` are missing; `PSP_LISTEN` is an address; any other is set
    /// to a value of its own.
    fn env(name: &str) -> Option<String> {
        match name {
            n if n.starts_with("UNSET") => None,
            "PSP_LISTEN" => Some("127.0.0.1:8080".into()),
            n => Some(format!("value-of-{}", n.to_ascii_lowercase())),
        }
    }

    pub fn check(data: &[u8]) {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        match Config::from_toml(
            text,
            Path::new("/fuzz/config.toml"),
            Path::new("/fuzz"),
            &env,
        ) {
            Ok(config) => invariants(&config),
            Err(e) => errors(&e),
        }
    }

    fn errors(e: &ConfigError) {
        let problems = e.problems();
        assert!(!problems.is_empty());
        for p in problems {
            assert!(!matches!(p, ConfigError::Several(_)), "nested Several");
            assert!(p.to_string().contains("/fuzz/config.toml"), "{p}");
        }
    }

    fn invariants(config: &Config) {
        let plugins = &config.plugins;
        assert!(plugins.dir.is_absolute());
        assert!(plugins.cache_dir.as_ref().is_some_and(|d| d.is_absolute()));
        assert!((1..=4096).contains(&plugins.memory_limit_mb));
        assert!(plugins.call_timeout_ms > 0 && plugins.max_instances > 0);
        assert!(config.outbox.first_retry_ms > 0);
        assert!(config.outbox.first_retry_ms <= config.outbox.max_retry_ms);
        assert!(config.reconciler.interval_ms > 0);
        let mut seen = HashSet::new();
        for gw in &config.gateways {
            assert!(!gw.id.is_empty());
            assert!(
                gw.id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            );
            assert!(seen.insert(gw.id.as_str()), "gateway {} twice", gw.id);
            assert!(gw.async_after_ms > 0 && gw.call_timeout_ms != Some(0));
            assert!(matches!(gw.pgm_auth.as_deref(), None | Some("none")));
            assert!(!(gw.pgm_auth.is_some() && gw.pgm_auth_token.is_some()));
            assert_eq!(config.gateway(&gw.id).map(|g| &g.id), Some(&gw.id));
        }
    }
}

/// The host's neutral JSON views of plugin answers (host/src/plugins/json.rs), over answers
/// deserialized the way stored requests and answers are.
pub mod plugin_json {
    use psp_gateway::plugins::json;
    use psp_gateway::plugins::types::{
        Failure, FinalStatus, Outcome, Pair, Tokenized, WebhookReply,
    };
    use serde_json::Value;

    pub fn check(data: &[u8]) {
        if let Ok(o) = serde_json::from_slice::<Outcome>(data) {
            outcome(&o);
        }
        if let Ok(f) = serde_json::from_slice::<Failure>(data) {
            failure(&f);
        }
        if let Ok(t) = serde_json::from_slice::<Tokenized>(data) {
            let view = json::tokenized(&t);
            assert_eq!(view["result"], "tokenized");
            assert_eq!(
                view["payment_source_token"],
                t.payment_source_token.as_str()
            );
            assert_eq!(view["customer_token"].as_str(), t.customer_token.as_deref());
        }
        if let Ok(w) = serde_json::from_slice::<WebhookReply>(data) {
            webhook(&w);
        }
    }

    /// The view's metadata object: each key once, the last pair of a key winning.
    fn metadata(view: &Value, pairs: &[Pair]) {
        let object = view.as_object().expect("metadata is an object");
        for p in pairs {
            let last = pairs.iter().rev().find(|q| q.key == p.key).unwrap();
            assert_eq!(object[&p.key], last.value.as_str());
        }
        assert!(object.len() <= pairs.len());
    }

    fn outcome(o: &Outcome) {
        let view = json::outcome(o);
        match o {
            Outcome::Approved(a) => {
                assert_eq!(view["result"], "approved");
                assert_eq!(view["transaction_token"], a.transaction_token.as_str());
                assert_eq!(view["amount_cents"].as_u64(), Some(a.amount_cents));
                assert_eq!(
                    view["messages"].as_array().map(Vec::len),
                    Some(a.messages.len())
                );
                metadata(&view["metadata"], &a.metadata);
            }
            Outcome::Pending(p) => {
                assert_eq!(view["result"], "pending");
                assert_eq!(view["amount_cents"].as_u64(), Some(p.amount_cents));
                assert_eq!(view["psp_reference"], p.psp_reference.as_str());
                metadata(&view["metadata"], &p.metadata);
            }
            Outcome::Declined(d) => {
                assert_eq!(view["result"], "declined");
                assert_eq!(view["code"], d.code.as_str());
                assert_eq!(
                    view["transaction_token"].as_str(),
                    d.transaction_token.as_deref()
                );
            }
            Outcome::ActionRequired(r) => {
                assert_eq!(view["result"], "action_required");
                assert_eq!(view["psp_reference"], r.psp_reference.as_str());
                assert!(view["action"]["type"].is_string());
                metadata(&view["metadata"], &r.metadata);
            }
        }
        // The view is what the diagnostics route prints: it must serialise and read back.
        let text = serde_json::to_string(&view).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), view);
    }

    fn failure(f: &Failure) {
        let (kind, message) = json::failure_parts(f);
        let view = json::failure(f);
        assert_eq!(view["kind"], kind);
        assert_eq!(view["message"], message);
        assert!(kind.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
    }

    fn webhook(w: &WebhookReply) {
        let view = json::webhook(w);
        assert_eq!(view["status"].as_u64(), Some(u64::from(w.status)));
        let events = view["events"].as_array().expect("events");
        assert_eq!(events.len(), w.events.len());
        for (e, v) in w.events.iter().zip(events) {
            // The reference is shortened: never more than 4 + 1 + 4 characters of it.
            let shown = v["psp_reference"].as_str().unwrap();
            assert!(shown.chars().count() <= 9, "{shown:?}");
            assert!(shown == "***" || e.psp_reference.chars().count() > 10);
            let status = match e.status {
                FinalStatus::Succeeded => "succeeded",
                FinalStatus::Failed => "failed",
            };
            assert_eq!(v["status"], status);
            assert_eq!(
                v["amount_cents"].as_u64(),
                e.amount.as_ref().map(|m| m.amount_cents)
            );
        }
    }
}

/// The Stripe plugin's pure parts, natively: the webhook signature, events and the status
/// mapping of PaymentIntents and Refunds.
pub mod stripe {
    use psp_plugin_sdk::crypto::{hex_encode, hmac_sha256};
    use psp_plugin_sdk::testing::Harness;
    use psp_plugin_sdk::types::{EventKind, Failure, Operation, Outcome, ShopperAction};
    use psp_plugin_stripe::{
        SIGNATURE_TOLERANCE_SECS, events_of, intent_outcome, refund_outcome, verify_signature,
    };
    use serde_json::Value;

    const SECRET: &str = "whsec_fuzz";
    const NOW: u64 = 1_700_000_000;
    const REQUESTED: u64 = 1234;

    pub fn check(data: &[u8]) {
        // The harness takes the plugin's log lines (natively they would go to stderr).
        Harness::new().run(|| {
            signature(data);
            let Ok(value) = serde_json::from_slice::<Value>(data) else {
                return;
            };
            events(&value);
            for object in [&value, &value["data"]["object"]] {
                for op in Operation::ALL {
                    if let Ok(o) = intent_outcome(object, op, REQUESTED) {
                        outcome(&o);
                        if op == Operation::Void {
                            assert!(!matches!(o, Outcome::Pending(_)));
                        }
                        if let Outcome::ActionRequired(r) = &o {
                            // Only a payment waits for the shopper, and what it shows is
                            // usable: a URL, or the PaymentIntent's JSON for Stripe.js.
                            assert!(matches!(op, Operation::Authorize | Operation::Sale));
                            assert_eq!(object["status"], "requires_action");
                            shopper_action(&r.action, &r.transaction_token);
                        }
                    }
                }
                if let Ok(o) = refund_outcome(object, REQUESTED) {
                    outcome(&o);
                }
            }
        });
    }

    fn header(t: u64, body: &[u8]) -> String {
        let mut signed = format!("{t}.").into_bytes();
        signed.extend_from_slice(body);
        format!(
            "t={t},v1={}",
            hex_encode(hmac_sha256(SECRET.as_bytes(), &signed))
        )
    }

    fn signature(body: &[u8]) {
        let good = header(NOW, body);
        assert!(verify_signature(&good, body, &[SECRET], NOW).is_ok());
        assert!(verify_signature(&good, body, &["whsec_old", SECRET], NOW + 1).is_ok());
        let late = NOW + SIGNATURE_TOLERANCE_SECS + 1;
        assert!(verify_signature(&good, body, &[SECRET], late).is_err());
        assert!(verify_signature(&good, body, &["whsec_other"], NOW).is_err());
        if !body.is_empty() {
            let mut flipped = body.to_vec();
            let i = usize::from(body[0]) % body.len();
            flipped[i] ^= 0x01;
            let e = verify_signature(&good, &flipped, &[SECRET], NOW).unwrap_err();
            assert!(matches!(e, Failure::Unauthenticated(_)), "{e:?}");
        }
        // The input as a header over an empty body: it cannot hold a valid signature.
        let forged = String::from_utf8_lossy(body);
        assert!(verify_signature(&forged, b"", &[SECRET], NOW).is_err());
    }

    fn events(event: &Value) {
        for e in events_of(event) {
            assert!(!e.psp_reference.is_empty());
            if e.kind == Some(EventKind::Refunded) {
                assert!(e.psp_reference.starts_with("re_"));
            }
        }
    }

    fn shopper_action(action: &ShopperAction, intent: &str) {
        match action {
            ShopperAction::Redirect(r) => assert!(!r.url.is_empty()),
            ShopperAction::Sdk(sdk) => {
                let data: Value = serde_json::from_str(&sdk.data_json).expect("SDK data is JSON");
                assert_eq!(data["payment_intent"], intent);
                assert!(data["next_action"].is_object());
            }
        }
    }

    fn outcome(o: &Outcome) {
        match o {
            Outcome::Approved(a) => assert!(!a.transaction_token.is_empty()),
            Outcome::Pending(p) => {
                assert!(!p.transaction_token.is_empty());
                assert_eq!(p.transaction_token, p.psp_reference);
            }
            Outcome::ActionRequired(r) => assert!(!r.transaction_token.is_empty()),
            Outcome::Declined(d) => {
                assert!(!d.code.is_empty());
                assert!(
                    d.transaction_token
                        .as_deref()
                        .is_some_and(|t| !t.is_empty())
                );
            }
        }
    }
}

/// The Adyen plugin's pure parts, natively: notifications (verified, then turned into
/// events) and the mapping of its answers.
pub mod adyen {
    use psp_plugin_adyen::{
        TOKEN_SEPARATOR, handle_notifications, modification_outcome, notification_events,
        payment_outcome, signing_string, tokenized,
    };
    use psp_plugin_sdk::crypto::{base64_encode, hex_decode, hmac_sha256};
    use psp_plugin_sdk::testing::Harness;
    use psp_plugin_sdk::types::Outcome;
    use serde_json::{Map, Value};

    /// The adyen plugin tests' key, so their signed notifications verify as seeds too.
    const HEX_KEY: &str = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056";
    const AMOUNT: u64 = 1234;

    pub fn check(data: &[u8]) {
        Harness::new().run(|| {
            let unsigned = handle_notifications(data, HEX_KEY);
            let Ok(mut doc) = serde_json::from_slice::<Value>(data) else {
                assert!(unsigned.is_err());
                return;
            };
            signed(&mut doc);
            answers(&doc);
        });
    }

    /// Signs every item with the key: the batch must then verify and give exactly the
    /// events of its items.
    fn signed(doc: &mut Value) {
        let key = hex_decode(HEX_KEY).unwrap();
        let Some(items) = doc
            .get_mut("notificationItems")
            .and_then(Value::as_array_mut)
        else {
            return;
        };
        let mut expected = Vec::new();
        let mut well_formed = true;
        for entry in items.iter_mut() {
            let Some(item) = entry
                .get_mut("NotificationRequestItem")
                .and_then(Value::as_object_mut)
            else {
                well_formed = false;
                continue;
            };
            let sig = base64_encode(hmac_sha256(
                &key,
                signing_string(&item.clone().into()).as_bytes(),
            ));
            let data = item
                .entry("additionalData")
                .or_insert_with(|| Value::Object(Map::new()));
            if !data.is_object() {
                *data = Value::Object(Map::new());
            }
            data["hmacSignature"] = Value::String(sig);
            expected.extend(notification_events(&Value::Object(item.clone())));
        }
        let body = serde_json::to_vec(doc).unwrap();
        match handle_notifications(&body, HEX_KEY) {
            Ok(events) => {
                assert!(well_formed);
                assert_eq!(events, expected);
            }
            Err(e) => assert!(!well_formed, "a signed batch was refused: {e:?}"),
        }
    }

    fn answers(doc: &Value) {
        if let Ok(o) = payment_outcome(doc, AMOUNT, "merchant-ref") {
            match o {
                Outcome::Approved(a) => {
                    assert!(!a.transaction_token.is_empty());
                    assert_eq!(a.amount_cents, AMOUNT);
                }
                Outcome::Pending(p) => {
                    assert!(!p.transaction_token.is_empty());
                    assert_eq!(p.amount_cents, AMOUNT);
                }
                Outcome::ActionRequired(r) => {
                    assert!(!r.transaction_token.is_empty());
                    assert_eq!(r.amount_cents, AMOUNT);
                }
                Outcome::Declined(d) => assert!(!d.code.is_empty()),
            }
        }
        if let Ok(o) = modification_outcome(doc, "PAYMENT", AMOUNT) {
            let Outcome::Pending(p) = o else {
                panic!("a modification is pending until its notification")
            };
            assert_eq!(
                p.transaction_token,
                format!("PAYMENT{TOKEN_SEPARATOR}{}", p.psp_reference)
            );
            assert_eq!(p.amount_cents, AMOUNT);
        }
        if let Ok(t) = tokenized(doc, "shopper".into()) {
            assert!(!t.payment_source_token.is_empty());
            assert_eq!(t.customer_token.as_deref(), Some("shopper"));
        }
    }
}
