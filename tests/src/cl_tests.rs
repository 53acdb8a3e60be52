//! Unit tests of the simulator's records: balances, statuses and pending transactions move
//! only on the answers CL would act on.

use super::*;
use serde_json::json;

const VECTOR_SECRET: &str = "1c0994cc4e996e8c6ee56a2198f66f3c";

fn assert_linkages_resolve(doc: &Value, resource: &Value) {
    let missing = unresolved_linkages(doc, resource);
    assert!(missing.is_empty(), "not included: {missing:?}");
}

fn answer(status: u16, body: Value) -> Response {
    Response {
        status,
        raw: serde_json::to_vec(&body).unwrap(),
        body,
        elapsed: Duration::ZERO,
    }
}

fn ok(token: &str, amount: i64) -> Response {
    answer(
        200,
        json!({"success": true, "data": {"transaction_token": token, "amount_cents": amount}}),
    )
}

#[test]
fn capture_void_and_refund_bodies_carry_cl_fields() {
    let mut state = State::default();
    let payment = ExternalPayment::new(&Order::sample(), "tok_visa");
    let auth = state
        .after_authorize(&payment, &ok("tok-auth", 12_200))
        .unwrap();

    let doc = capture_body(&auth, 5_000);
    let a = &doc["data"]["attributes"];
    assert_eq!(doc["data"]["type"], "authorizations");
    assert_eq!(doc["data"]["id"], auth.id.as_str());
    assert_eq!(a["token"], "tok-auth");
    assert_eq!(a["number"], format!("{}/T/001", payment.order.number));
    assert_eq!(a["amount_cents"], 12_200);
    assert_eq!(a["formatted_amount"], "€122,00");
    assert_eq!(a["capture_amount_cents"], 5_000);
    assert_eq!(a["capture_balance_cents"], 12_200);
    assert_eq!(a["void_balance_cents"], 12_200);
    assert_eq!(a["succeeded"], true);
    assert_linkages_resolve(&doc, &doc["data"]);

    let void = void_body(&auth);
    assert_eq!(void["data"]["attributes"]["capture_amount_cents"], 12_200);

    let capture = state
        .after_capture(&auth, 5_000, &ok("tok-cap", 5_000))
        .unwrap();
    let doc = refund_body(&capture, 2_000);
    let a = &doc["data"]["attributes"];
    assert_eq!(doc["data"]["type"], "captures");
    assert_eq!(a["token"], "tok-cap");
    assert_eq!(a["amount_cents"], 5_000);
    assert_eq!(a["refund_amount_cents"], 2_000);
    assert_eq!(a["refund_balance_cents"], 5_000);
    let reference = &doc["data"]["relationships"]["reference_authorization"]["data"];
    assert_eq!(reference, &ident("authorizations", &auth.id));
    assert_linkages_resolve(&doc, &doc["data"]);
}

#[test]
fn balances_follow_successful_answers_only() {
    let mut state = State::default();
    let order = Order::sample();
    let payment = ExternalPayment::new(&order, "tok_visa");
    let auth = state.after_authorize(&payment, &ok("a", 12_200)).unwrap();
    assert_eq!(state.orders[&order.id].payment_status, "authorized");

    // A declined capture changes nothing.
    let declined = answer(
        422,
        json!({"success": false, "error": {"code": "card_declined"}}),
    );
    assert!(state.after_capture(&auth, 5_000, &declined).is_none());
    assert_eq!(state.authorizations[&auth.id].capture_balance_cents, 12_200);

    let c1 = state.after_capture(&auth, 5_000, &ok("c1", 5_000)).unwrap();
    let current = &state.authorizations[&auth.id];
    assert_eq!(current.capture_balance_cents, 7_200);
    assert_eq!(current.void_balance_cents, 7_200);
    assert_eq!(state.orders[&order.id].payment_status, "partially_paid");
    // The failed capture still used a transaction number, as CL records it.
    assert_eq!(c1.number, format!("{}/T/003", order.number));

    state.after_refund(&c1, 2_000, &ok("r1", 2_000)).unwrap();
    assert_eq!(state.captures[&c1.id].refund_balance_cents, 3_000);
    assert_eq!(state.orders[&order.id].payment_status, "partially_refunded");

    let current = state.authorizations[&auth.id].clone();
    state
        .after_capture(&current, 7_200, &ok("c2", 7_200))
        .unwrap();
    assert_eq!(state.authorizations[&auth.id].capture_balance_cents, 0);
    assert_eq!(state.orders[&order.id].payment_status, "paid");
}

#[test]
fn void_clears_the_authorization() {
    let mut state = State::default();
    let order = Order::sample();
    let auth = state
        .after_authorize(&ExternalPayment::new(&order, "t"), &ok("a", 12_200))
        .unwrap();
    let void = state.after_void(&auth, &ok("v", 12_200)).unwrap();
    assert_eq!(void.amount_cents, 12_200);
    let current = &state.authorizations[&auth.id];
    assert_eq!(
        (current.capture_balance_cents, current.void_balance_cents),
        (0, 0)
    );
    assert_eq!(state.orders[&order.id].payment_status, "voided");
}

#[test]
fn pending_transactions_settle_on_callback() {
    let mut state = State::default();
    let order = Order::sample();
    let pending = answer(
        202,
        json!({"success": true, "data": {"transaction_token": "p", "amount_cents": 12_200, "action_id": "act-1"}}),
    );
    let auth = state
        .after_authorize(&ExternalPayment::new(&order, "tok_pending"), &pending)
        .unwrap();
    assert!(!auth.succeeded);
    assert_eq!(auth.action_id.as_deref(), Some("act-1"));
    assert_eq!(state.orders[&order.id].payment_status, "unpaid");

    assert_eq!(
        state.apply_callback(&json!({"success": true, "data": {"action_id": "nope"}})),
        None
    );
    let failure = json!({"success": false, "data": {"action_id": "act-1", "error_code": "x"}});
    assert_eq!(state.apply_callback(&failure), Some(false));
    assert!(!state.authorizations[&auth.id].succeeded);

    let success =
        json!({"success": true, "data": {"action_id": "act-1", "message": "Payment authorized"}});
    assert_eq!(state.apply_callback(&success), Some(true));
    assert!(state.authorizations[&auth.id].succeeded);
    assert_eq!(state.orders[&order.id].payment_status, "authorized");
    // The action id is spent.
    assert_eq!(state.apply_callback(&success), None);

    // A pending capture moves the balance only once settled.
    let auth = state.authorizations[&auth.id].clone();
    let pending_capture = answer(
        202,
        json!({"success": true, "data": {"transaction_token": "pc", "amount_cents": 2_000, "action_id": "act-2"}}),
    );
    let capture = state.after_capture(&auth, 2_000, &pending_capture).unwrap();
    assert_eq!(state.authorizations[&auth.id].capture_balance_cents, 12_200);
    state.apply_callback(&json!({"success": true, "data": {"action_id": "act-2"}}));
    assert_eq!(state.authorizations[&auth.id].capture_balance_cents, 10_200);
    assert!(state.captures[&capture.id].succeeded);
}

#[test]
fn failures_are_counted_like_the_circuit_breaker() {
    let mut state = State::default();
    let payment = ExternalPayment::new(&Order::sample(), "t");
    let timeout = Response {
        status: 0,
        body: Value::Null,
        raw: b"timed out".to_vec(),
        elapsed: Duration::ZERO,
    };
    assert!(state.after_authorize(&payment, &timeout).is_none());
    assert!(
        state
            .after_authorize(&payment, &answer(503, json!({})))
            .is_none()
    );
    assert_eq!(state.consecutive_failures, 2);
    state.after_authorize(&payment, &answer(422, json!({"success": false})));
    assert_eq!(state.consecutive_failures, 2);
    state.after_authorize(&payment, &ok("a", 1));
    assert_eq!(state.consecutive_failures, 0);
}

#[test]
fn simulator_builds_routes_and_signs_what_it_sends() {
    let sim = ClSimulator::new("http://127.0.0.1:9/", "sandbox", VECTOR_SECRET);
    assert_eq!(
        sim.url(Action::Authorize),
        "http://127.0.0.1:9/commercelayer/sandbox/authorize"
    );
    assert_eq!(
        sim.url(Action::Token),
        "http://127.0.0.1:9/commercelayer/sandbox/token"
    );
    let (body, signature) = sim.encode(&authorize_body(&ExternalPayment::new(
        &Order::sample(),
        "t",
    )));
    assert!(verify(VECTOR_SECRET, &body, &signature));
}
