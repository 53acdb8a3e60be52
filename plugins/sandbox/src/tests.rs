//! Native unit tests: every token's behaviour, the follow-ups, tokenize, sync and notification
//! verification, each run inside a `Harness` (which also proves the sandbox sends no HTTP).

use std::time::Instant;

use psp_plugin_sdk::crypto::{hex_encode, hmac_sha256};
use psp_plugin_sdk::testing::{self, Harness};
use psp_plugin_sdk::types::*;
use psp_plugin_sdk::{CONTRACT_VERSION, Plugin};

use crate::{Sandbox, derive};

const SECRET: &str = "whsec_test";

fn harness() -> Harness {
    Harness::new().setting("webhook_secret", SECRET)
}

/// Runs `f` in a harness and checks the sandbox stayed offline.
fn offline<R>(f: impl FnOnce() -> R) -> R {
    let h = harness();
    let out = h.run(f);
    assert!(h.requests().is_empty(), "the sandbox must not send HTTP");
    out
}

fn approved(outcome: Result<Outcome, Failure>) -> Approved {
    match outcome {
        Ok(Outcome::Approved(a)) => a,
        other => panic!("expected approved, got {other:?}"),
    }
}

#[test]
fn info_describes_the_plugin() {
    let info = Sandbox::info();
    assert_eq!(info.name, "sandbox");
    assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(info.contract, CONTRACT_VERSION);
    assert_eq!(info.operations, Operation::ALL.to_vec());
    assert_eq!(info.settings.len(), 1);
    assert_eq!(info.settings[0].name, "webhook_secret");
    assert!(info.settings[0].required && info.settings[0].secret);
}

#[test]
fn ordinary_token_is_approved_with_a_deterministic_token() {
    let req = testing::authorize_request("tok_visa", 1000, "EUR");
    let first = approved(offline(|| Sandbox::authorize(req.clone())));
    let again = approved(offline(|| Sandbox::authorize(req.clone())));
    assert_eq!(first, again, "a retry gets the same answer");
    assert_eq!(first.amount_cents, 1000);
    assert_eq!(first.transaction_token.len(), "sbx_".len() + 24);
    assert_eq!(first.transaction_token, derive("sbx_", "idem-test-1"));

    let mut other = req;
    other.idempotency_key = "idem-other".into();
    let second = approved(offline(|| Sandbox::authorize(other)));
    assert_ne!(first.transaction_token, second.transaction_token);
}

#[test]
fn sale_follows_the_same_rules() {
    let ok = approved(offline(|| {
        Sandbox::sale(testing::authorize_request("tok_visa", 250, "USD"))
    }));
    assert_eq!(ok.amount_cents, 250);
    let declined = offline(|| Sandbox::sale(testing::authorize_request("tok_decline", 1, "EUR")));
    assert!(matches!(declined, Ok(Outcome::Declined(_))));
}

#[test]
fn tok_decline_is_declined() {
    match offline(|| Sandbox::authorize(testing::authorize_request("tok_decline", 1000, "EUR"))) {
        Ok(Outcome::Declined(d)) => {
            assert_eq!(d.code, "card_declined");
            assert!(!d.message.is_empty());
        }
        other => panic!("expected declined, got {other:?}"),
    }
}

#[test]
fn tok_pending_is_pending_with_token_as_reference() {
    match offline(|| Sandbox::authorize(testing::authorize_request("tok_pending", 700, "EUR"))) {
        Ok(Outcome::Pending(p)) => {
            assert!(p.transaction_token.starts_with("sbx_pend_"));
            assert_eq!(p.psp_reference, p.transaction_token);
            assert_eq!(p.amount_cents, 700);
        }
        other => panic!("expected pending, got {other:?}"),
    }
}

#[test]
fn tok_fail_is_unreachable() {
    let out = offline(|| Sandbox::authorize(testing::authorize_request("tok_fail", 1, "EUR")));
    assert!(matches!(out, Err(Failure::Unreachable(_))), "{out:?}");
}

#[test]
fn tok_slow_sleeps_then_approves() {
    let start = Instant::now();
    let ok = approved(offline(|| {
        Sandbox::authorize(testing::authorize_request("tok_slow_50", 10, "EUR"))
    }));
    assert!(start.elapsed().as_millis() >= 50);
    assert_eq!(ok.amount_cents, 10);

    let bad = offline(|| Sandbox::authorize(testing::authorize_request("tok_slow_x", 1, "EUR")));
    assert!(matches!(bad, Err(Failure::InvalidRequest(m)) if m.contains("tok_slow_")));
}

#[test]
fn follow_ups_are_approved_for_the_requested_amount() {
    let req = testing::follow_up_request("sbx_abc", 400, "EUR");
    let cap = testing::capture_request("sbx_abc", 400, "EUR");
    let capture = approved(offline(|| Sandbox::capture(cap.clone())));
    let void = approved(offline(|| Sandbox::void(req.clone())));
    let refund = approved(offline(|| Sandbox::refund(req.clone())));
    for a in [&capture, &void, &refund] {
        assert_eq!(a.amount_cents, 400);
    }
    assert_eq!(capture.transaction_token, derive("sbx_cap_", "idem-test-2"));
    assert_ne!(capture.transaction_token, void.transaction_token);
    assert_ne!(void.transaction_token, refund.transaction_token);
    assert_eq!(capture, approved(offline(|| Sandbox::capture(cap))));
}

#[test]
fn tokenize_saves_a_payment_source() {
    let req = testing::tokenize_request("tok_visa");
    let saved = offline(|| Sandbox::tokenize(req.clone())).unwrap();
    assert!(saved.payment_source_token.starts_with("sbx_pm_"));
    assert_eq!(
        saved.customer_token,
        Some(derive("sbx_cus_", "idem-test-3"))
    );

    let mut by_email = req.clone();
    by_email.customer_email = Some("Ada@Example.com".into());
    let saved_by_email = offline(|| Sandbox::tokenize(by_email)).unwrap();
    assert_eq!(
        saved_by_email.customer_token,
        Some(derive("sbx_cus_", "ada@example.com"))
    );

    let mut known = req;
    known.customer_token = Some("cus_existing".into());
    assert_eq!(
        offline(|| Sandbox::tokenize(known))
            .unwrap()
            .customer_token
            .as_deref(),
        Some("cus_existing")
    );

    // The saved token is an ordinary token afterwards.
    let mut pay = testing::authorize_request(&saved.payment_source_token, 99, "EUR");
    pay.customer_token = saved.customer_token;
    approved(offline(|| Sandbox::authorize(pay)));

    let fail = offline(|| Sandbox::tokenize(testing::tokenize_request("tok_fail")));
    assert!(matches!(fail, Err(Failure::Unreachable(_))));
}

#[test]
fn tok_pending_sync_is_pending_until_synced() {
    let token = match offline(|| {
        Sandbox::authorize(testing::authorize_request("tok_pending_sync", 700, "EUR"))
    }) {
        Ok(Outcome::Pending(p)) => {
            assert!(p.psp_reference.starts_with("sbx_wait_"), "{p:?}");
            assert_eq!(p.psp_reference, p.transaction_token);
            p.transaction_token
        }
        other => panic!("expected pending, got {other:?}"),
    };
    let synced = offline(|| {
        Sandbox::sync(testing::sync_request(
            Operation::Authorize,
            &token,
            700,
            "EUR",
        ))
    });
    assert!(matches!(synced, Ok(Outcome::Approved(_))), "{synced:?}");
}

#[test]
fn sync_keeps_pending_references_pending() {
    let pending = derive("sbx_pend_", "k");
    match offline(|| {
        Sandbox::sync(testing::sync_request(
            Operation::Authorize,
            &pending,
            5,
            "EUR",
        ))
    }) {
        Ok(Outcome::Pending(p)) => {
            assert_eq!(p.psp_reference, pending);
            assert_eq!(p.transaction_token, pending);
        }
        other => panic!("expected pending, got {other:?}"),
    }
    let mut by_reference = testing::sync_request(Operation::Sale, "sbx_other", 5, "EUR");
    by_reference.psp_reference = Some(pending);
    assert!(matches!(
        offline(|| Sandbox::sync(by_reference)),
        Ok(Outcome::Pending(_))
    ));

    let done = approved(offline(|| {
        Sandbox::sync(testing::sync_request(
            Operation::Capture,
            "sbx_cap_1",
            5,
            "EUR",
        ))
    }));
    assert_eq!(done.transaction_token, "sbx_cap_1");
    assert_eq!(done.amount_cents, 5);
}

fn signed(body: &str, header: &str) -> WebhookRequest {
    let signature = hex_encode(hmac_sha256(SECRET.as_bytes(), body.as_bytes()));
    testing::webhook_request(
        &[("content-type", "application/json"), (header, &signature)],
        body,
    )
}

#[test]
fn webhook_with_valid_signature_yields_one_event() {
    let body = r#"{"reference":"sbx_pend_abc","outcome":"succeeded"}"#;
    let reply = offline(|| Sandbox::handle_webhook(signed(body, "sandbox-signature"))).unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.content_type, "application/json");
    assert_eq!(reply.body, br#"{"received":true}"#);
    assert_eq!(
        reply.events,
        vec![PspEvent {
            psp_reference: "sbx_pend_abc".into(),
            transaction_token: None,
            status: FinalStatus::Succeeded,
            kind: None,
            code: None,
            message: None,
            amount: None,
        }]
    );

    let failed = r#"{"reference":"r1","outcome":"failed","code":"expired","kind":"captured","amount_cents":12,"currency":"EUR"}"#;
    let reply = offline(|| Sandbox::handle_webhook(signed(failed, "Sandbox-Signature"))).unwrap();
    assert_eq!(reply.events[0].status, FinalStatus::Failed);
    assert_eq!(reply.events[0].code.as_deref(), Some("expired"));
    assert_eq!(reply.events[0].kind, Some(EventKind::Captured));
    assert_eq!(reply.events[0].amount, Some(Money::new(12, "EUR")));
    for bad in [
        r#"{"reference":"r1","outcome":"failed","kind":"lost"}"#,
        r#"{"reference":"r1","outcome":"failed","amount_cents":12}"#,
    ] {
        let err =
            offline(|| Sandbox::handle_webhook(signed(bad, "Sandbox-Signature"))).unwrap_err();
        assert!(matches!(err, Failure::InvalidRequest(_)), "{bad}: {err:?}");
    }
}

#[test]
fn tok_3ds_asks_the_shopper_to_act_and_complete_finishes_it() {
    let mut req = testing::authorize_request("tok_3ds", 900, "EUR");
    req.shopper = Some(Shopper {
        return_url: Some("https://shop.example/back?o=1".into()),
        cancel_url: None,
        ip_address: None,
        user_agent: None,
        accept_header: None,
    });
    let outcome = offline(|| Sandbox::authorize(req)).unwrap();
    let Outcome::ActionRequired(r) = outcome else {
        panic!("{outcome:?}")
    };
    assert!(r.transaction_token.starts_with("sbx_3ds_"));
    assert_eq!(r.psp_reference, r.transaction_token);
    assert_eq!(r.amount_cents, 900);
    let ShopperAction::Redirect(redirect) = &r.action else {
        panic!("{:?}", r.action)
    };
    assert_eq!(redirect.method, RedirectMethod::Get);
    assert_eq!(
        redirect.url,
        format!(
            "https://sandbox.psp-gateway.invalid/3ds/{}?return_url=https%3A%2F%2Fshop.example%2Fback%3Fo%3D1",
            r.transaction_token
        )
    );
    let complete = |outcome: &str| {
        let req = testing::complete_request(
            &r.transaction_token,
            &r.psp_reference,
            900,
            "EUR",
            &[("outcome", outcome)],
        );
        offline(|| Sandbox::complete(req))
    };
    assert_eq!(
        approved(complete("succeeded")).psp_reference,
        r.psp_reference
    );
    assert!(
        matches!(complete("failed"), Ok(Outcome::Declined(d)) if d.code == "authentication_failed")
    );
    assert!(matches!(complete("maybe"), Err(Failure::InvalidRequest(_))));
    // Pending until then, for the reconciler.
    let sync = testing::sync_request(Operation::Authorize, &r.transaction_token, 900, "EUR");
    assert!(matches!(
        offline(|| Sandbox::sync(sync)),
        Ok(Outcome::Pending(_))
    ));
    let not_3ds =
        testing::complete_request("sbx_1", "sbx_1", 1, "EUR", &[("outcome", "succeeded")]);
    assert!(matches!(
        offline(|| Sandbox::complete(not_3ds)),
        Err(Failure::InvalidRequest(_))
    ));
}

#[test]
fn sync_without_a_token_finds_the_transaction_by_its_idempotency_key() {
    let authorized = approved(offline(|| {
        Sandbox::authorize(testing::authorize_request("tok_visa", 100, "EUR"))
    }));
    let mut sync = testing::sync_request(Operation::Authorize, "unused", 100, "EUR");
    sync.transaction_token = None;
    assert_eq!(
        sync.idempotency_key, "idem-test-1",
        "the authorize request's key"
    );
    let found = approved(offline(|| Sandbox::sync(sync)));
    assert_eq!(found.transaction_token, authorized.transaction_token);
}

#[test]
fn webhook_signature_is_required_and_checked() {
    let body = r#"{"reference":"r","outcome":"succeeded"}"#;
    let unsigned = testing::webhook_request(&[], body);
    assert!(matches!(
        offline(|| Sandbox::handle_webhook(unsigned)),
        Err(Failure::Unauthenticated(_))
    ));

    let mut tampered = signed(body, "Sandbox-Signature");
    tampered.body = br#"{"reference":"r","outcome":"failed"}"#.to_vec();
    assert!(matches!(
        offline(|| Sandbox::handle_webhook(tampered)),
        Err(Failure::Unauthenticated(_))
    ));

    let garbage = testing::webhook_request(&[("Sandbox-Signature", "not hex")], body);
    assert!(matches!(
        offline(|| Sandbox::handle_webhook(garbage)),
        Err(Failure::Unauthenticated(_))
    ));

    // Signed with another secret.
    let other = Harness::new().setting("webhook_secret", "another");
    assert!(matches!(
        other.run(|| Sandbox::handle_webhook(signed(body, "Sandbox-Signature"))),
        Err(Failure::Unauthenticated(_))
    ));
}

#[test]
fn webhook_without_secret_is_misconfigured() {
    let out = Harness::new().run(|| Sandbox::handle_webhook(signed("{}", "Sandbox-Signature")));
    assert!(matches!(out, Err(Failure::Misconfigured(m)) if m.contains("webhook_secret")));
}

#[test]
fn malformed_notifications_name_the_field() {
    let cases = [
        ("not json", "JSON"),
        (r#"{"outcome":"succeeded"}"#, "`reference`"),
        (r#"{"reference":"","outcome":"succeeded"}"#, "`reference`"),
        (r#"{"reference":"r"}"#, "`outcome`"),
        (r#"{"reference":"r","outcome":"maybe"}"#, "`outcome`"),
    ];
    for (body, field) in cases {
        match offline(|| Sandbox::handle_webhook(signed(body, "Sandbox-Signature"))) {
            Err(Failure::InvalidRequest(m)) => assert!(m.contains(field), "{body}: {m}"),
            other => panic!("{body}: expected invalid-request, got {other:?}"),
        }
    }
}
