//! The fake's own behaviour: idempotency (finished keys replayed, keys in flight refused) and
//! the objects' states through capture, refund, cancel and read.

use super::*;
use psp_plugin_sdk::http::Form;

/// What the fake answered: status, `Idempotent-Replayed`, raw and parsed body.
struct Reply {
    status: u16,
    replayed: bool,
    raw: Vec<u8>,
    json: Value,
}

/// Sends as the plugin does: a form POST with an idempotency key, or a bare GET.
async fn send(http: &reqwest::Client, url: String, key: &str, form: Option<&Form>) -> Reply {
    let req = match form {
        Some(form) => http
            .post(url)
            .header("Idempotency-Key", key)
            .body(form.encode()),
        None => http.get(url),
    };
    let resp = req.bearer_auth("sk_test_fake").send().await.expect("send");
    let (status, replayed) = (
        resp.status().as_u16(),
        resp.headers().contains_key("idempotent-replayed"),
    );
    let raw = resp.bytes().await.expect("body").to_vec();
    let json = serde_json::from_slice(&raw).expect("JSON body");
    Reply {
        status,
        replayed,
        raw,
        json,
    }
}

/// The plugin's authorize form (`capture_method=automatic` for a sale).
fn pay(amount: u64, capture: &str) -> Form {
    let mut form = Form::new();
    form.push("amount", amount.to_string())
        .push("currency", "eur")
        .push("capture_method", capture)
        .push("confirm", "true")
        .push_list("payment_method_types", &["card"])
        .push("payment_method", "pm_card_visa")
        .push_map("metadata", &[("cl_payment_id", "pay 1")]);
    form
}

fn with_key(key: &str) -> impl Fn(&ApiRequest) -> bool {
    move |r| r.idempotency_key.as_deref() == Some(key)
}

#[tokio::test]
async fn replays_finished_keys_and_refuses_keys_in_flight() {
    let stripe = FakeStripe::start().await;
    let http = reqwest::Client::new();
    let (url, auth) = (stripe.url("/v1/payment_intents"), pay(1500, "manual"));
    let post = async |key: &str, form: &Form| send(&http, url.clone(), key, Some(form)).await;
    let pm = send(
        &http,
        stripe.url("/v1/payment_methods/pm_card_visa"),
        "",
        None,
    )
    .await;
    assert_eq!((pm.status, &pm.json["customer"]), (200, &Value::Null));

    let (first, again) = (post("k1", &auth).await, post("k1", &auth).await);
    assert_eq!(
        (first.status, first.replayed, again.status, again.replayed),
        (200, false, 200, true)
    );
    assert_eq!(
        first.raw, again.raw,
        "a replay is the stored answer, byte for byte"
    );
    let id = first.json["id"].as_str().unwrap();
    assert!(id.starts_with("pi_") && id.len() == 27, "{id}");
    assert_eq!(first.json["status"], "requires_capture");
    assert_eq!(first.json["amount_capturable"], 1500);
    assert_eq!(first.json["metadata"]["cl_payment_id"], "pay 1");
    assert_eq!(
        (stripe.charges_for_key("k1"), stripe.requests_with_key("k1")),
        (1, 2)
    );
    let reused = post("k1", &pay(9, "manual")).await;
    assert_eq!(
        (reused.status, &reused.json["error"]["type"]),
        (400, &json!("idempotency_error"))
    );

    // Held: charged at arrival; a duplicate meanwhile gets 409, later the stored answer.
    stripe.hold_next_ms(1000);
    let (start, held) = (Instant::now(), post("k2", &auth));
    let (held, busy) = tokio::join!(held, async {
        assert!(
            stripe
                .wait_for(with_key("k2"), Duration::from_secs(5))
                .await
        );
        assert_eq!(stripe.charges_for_key("k2"), 1, "processed at arrival");
        post("k2", &auth).await
    });
    assert_eq!(
        (busy.status, &busy.json["error"]["type"]),
        (409, &json!("idempotency_error"))
    );
    assert_eq!(busy.json["error"]["code"], "idempotency_key_in_use");
    assert_eq!(held.status, 200);
    assert!(start.elapsed() >= Duration::from_millis(1000));
    let replay = post("k2", &auth).await;
    assert_eq!(
        (replay.status, replay.replayed, &replay.raw),
        (200, true, &held.raw)
    );

    // A client hanging up during the hold undoes nothing: its retry gets the answer.
    stripe.hold_next_ms(800);
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let hung_up = impatient
        .post(url.clone())
        .bearer_auth("sk_test_fake")
        .header("Idempotency-Key", "k3");
    assert!(hung_up.body(auth.encode()).send().await.is_err());
    assert!(
        stripe
            .wait_for(with_key("k3"), Duration::from_secs(5))
            .await
    );
    assert_eq!(stripe.charges_for_key("k3"), 1);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let retry = post("k3", &auth).await;
    assert_eq!(
        (retry.status, retry.replayed, &retry.json["status"]),
        (200, true, &json!("requires_capture"))
    );

    assert_eq!(stripe.charges_total(), 3);
    assert_eq!(
        (
            stripe.requests_with_key("k2"),
            stripe.requests_with_key("k3")
        ),
        (3, 2)
    );
    assert_eq!(stripe.keys(), ["k1", "k2", "k3"]);
    let log = stripe.requests();
    assert_eq!(
        (
            log.len(),
            log[0].method.as_str(),
            log[0].idempotency_key.as_deref()
        ),
        (9, "GET", None)
    );
    assert!(
        !stripe
            .wait_for_request("/v1/refunds", Duration::from_millis(50))
            .await
    );
}

#[tokio::test]
async fn captures_refunds_cancels_and_reads() {
    let stripe = FakeStripe::start().await;
    let http = reqwest::Client::new();
    let post = async |path: &str, key: &str, form: &Form| {
        send(&http, stripe.url(path), key, Some(form)).await
    };
    let get = async |path: &str| send(&http, stripe.url(path), "", None).await;
    let intents = "/v1/payment_intents";
    let sale = post(intents, "s", &pay(700, "automatic")).await.json;
    assert_eq!(
        (&sale["status"], &sale["amount_received"]),
        (&json!("succeeded"), &json!(700))
    );

    let auth = post(intents, "a", &pay(1000, "manual")).await.json;
    let id = auth["id"].as_str().unwrap();
    let mut amount = Form::new();
    amount.push("amount_to_capture", "600");
    let captured = post(&format!("{intents}/{id}/capture"), "c", &amount)
        .await
        .json;
    assert_eq!(
        (&captured["status"], &captured["amount_received"]),
        (&json!("succeeded"), &json!(600))
    );
    let twice = post(&format!("{intents}/{id}/capture"), "c2", &amount).await;
    assert_eq!(
        (twice.status, &twice.json["error"]["code"]),
        (400, &json!("payment_intent_unexpected_state"))
    );
    let mut refund = Form::new();
    refund.push("payment_intent", id).push("amount", "200");
    let re = post("/v1/refunds", "r", &refund).await.json;
    assert_eq!(
        (&re["status"], &re["amount"]),
        (&json!("succeeded"), &json!(200))
    );
    assert_eq!(
        get(&format!("/v1/refunds/{}", re["id"].as_str().unwrap()))
            .await
            .json,
        re
    );

    let auth = post(intents, "b", &pay(500, "manual")).await.json;
    let id = auth["id"].as_str().unwrap();
    let canceled = post(&format!("{intents}/{id}/cancel"), "v", &Form::new())
        .await
        .json;
    assert_eq!(
        (&canceled["status"], &canceled["amount_capturable"]),
        (&json!("canceled"), &json!(0))
    );
    assert_eq!(get(&format!("{intents}/{id}")).await.json, canceled);
    let missing = get("/v1/payment_intents/pi_missing").await;
    assert_eq!(
        (missing.status, &missing.json["error"]["code"]),
        (404, &json!("resource_missing"))
    );
    let anonymous = http
        .get(stripe.url("/v1/refunds/re_x"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!((stripe.charges_total(), stripe.refunds_total()), (3, 1));
}
