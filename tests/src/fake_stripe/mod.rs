//! A small fake of Stripe's API, written for fault-injection end-to-end tests of the Stripe
//! plugin, where localstripe is not enough: localstripe ignores `Idempotency-Key` and answers
//! at once, so it cannot show what a retry after a crash or a timeout does to a charge.
//!
//! It owns, in memory, the PaymentIntents, PaymentMethods and Refunds the plugin creates
//! (authorize, sale, capture, cancel, refund, sync: the routes of `plugins/stripe`), Stripe's
//! idempotency layer (a finished key replays its stored answer byte for byte, a key whose
//! first request is still held gets 409 `idempotency_error`) and a log of every request.
//! `hold_next_ms` makes the next new POST be processed at arrival but answered late, so a
//! test can kill the gateway (or let it time out) while "Stripe" has already charged.
//!
//! The server runs on the caller's tokio runtime, like [`crate::receiver`]; tests that block
//! a thread (`Gateway::start`, `wait_for_log`) use `#[tokio::test(flavor = "multi_thread")]`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::Response;
use serde_json::{Map, Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cl::new_id;

/// One request the fake got.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    pub method: String,
    /// The path, without the query.
    pub path: String,
    pub idempotency_key: Option<String>,
    /// The form fields, decoded, in order.
    pub form: Vec<(String, String)>,
    pub received_at: Instant,
    /// The status answered (sent after the hold, if any).
    pub status: u16,
    /// Whether the answer was a stored one replayed for the idempotency key.
    pub replayed: bool,
}

/// A stored answer of an idempotency key.
struct Saved {
    /// Method, path and body of the first request: a reuse must match them.
    fingerprint: String,
    status: u16,
    body: Bytes,
    /// Until then the first request is in flight (held): duplicates get 409.
    ready_at: Instant,
}

#[derive(Default)]
struct Store {
    requests: Vec<ApiRequest>,
    objects: HashMap<String, Value>,
    /// Every PaymentIntent and Refund created, with the key of the request that made it.
    created: Vec<(Option<String>, String)>,
    refunded: HashMap<String, u64>,
    saved: HashMap<String, Saved>,
    hold: Option<Duration>,
}

struct Shared {
    store: Mutex<Store>,
    /// Bumped on every request, so waiters wake without polling.
    arrivals: watch::Sender<usize>,
}

/// A running fake Stripe. Dropping it stops the server.
pub struct FakeStripe {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl FakeStripe {
    /// Starts on a free port of 127.0.0.1. Any `Bearer sk_...` / `rk_...` key is accepted.
    pub async fn start() -> FakeStripe {
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::default()),
            arrivals: watch::channel(0).0,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake Stripe");
        let addr = listener.local_addr().expect("fake Stripe address");
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeStripe { addr, shared, task }
    }

    /// `http://127.0.0.1:PORT`: the plugin's `api_base` and the gateway's allowed host.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    /// The next new POST (not a replay, not a 409) is processed at once but answered only
    /// after `ms` milliseconds; a client hanging up meanwhile changes nothing.
    pub fn hold_next_ms(&self, ms: u64) {
        self.store().hold = Some(Duration::from_millis(ms));
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<ApiRequest> {
        self.store().requests.clone()
    }

    /// Whether a request whose path starts with `prefix` has arrived (or arrives in time).
    pub async fn wait_for_request(&self, prefix: &str, timeout: Duration) -> bool {
        self.wait_for(|r| r.path.starts_with(prefix), timeout).await
    }

    /// Whether a request matching `pred` has arrived, or arrives within `timeout`.
    pub async fn wait_for(&self, pred: impl Fn(&ApiRequest) -> bool, timeout: Duration) -> bool {
        let mut arrivals = self.shared.arrivals.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Subscribing before looking means no arrival slips between the two.
            arrivals.mark_unchanged();
            if self.store().requests.iter().any(&pred) {
                return true;
            }
            match tokio::time::timeout_at(deadline, arrivals.changed()).await {
                Ok(Ok(())) => continue,
                _ => return false,
            }
        }
    }

    /// How many requests carried `Idempotency-Key: key` (replays and 409s included).
    pub fn requests_with_key(&self, key: &str) -> usize {
        let requests = self.requests().into_iter();
        requests
            .filter(|r| r.idempotency_key.as_deref() == Some(key))
            .count()
    }

    /// The distinct idempotency keys seen, in first-seen order.
    pub fn keys(&self) -> Vec<String> {
        let mut keys = Vec::new();
        for key in self
            .requests()
            .into_iter()
            .filter_map(|r| r.idempotency_key)
        {
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        keys
    }

    /// How many PaymentIntents requests with `key` created.
    pub fn charges_for_key(&self, key: &str) -> usize {
        self.created_count("pi_", Some(key))
    }

    /// How many PaymentIntents were created in all.
    pub fn charges_total(&self) -> usize {
        self.created_count("pi_", None)
    }

    /// How many Refunds were created in all.
    pub fn refunds_total(&self) -> usize {
        self.created_count("re_", None)
    }

    /// A PaymentIntent, PaymentMethod or Refund as it is now.
    pub fn object(&self, id: &str) -> Option<Value> {
        self.store().objects.get(id).cloned()
    }

    fn created_count(&self, prefix: &str, key: Option<&str>) -> usize {
        let store = self.store();
        let matching = store.created.iter().filter(|(k, id)| {
            id.starts_with(prefix) && key.is_none_or(|key| k.as_deref() == Some(key))
        });
        matching.count()
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.shared.store.lock().expect("fake Stripe store")
    }
}

impl Drop for FakeStripe {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let arrived = Instant::now();
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let key = text("idempotency-key");
    let authorized = text("authorization").is_some_and(|a| {
        a.strip_prefix("Bearer ")
            .is_some_and(|k| k.starts_with("sk_") || k.starts_with("rk_"))
    });
    let form = decode_form(&body);
    let (status, answer, replayed, ready_at) = {
        let mut store = shared.store.lock().expect("fake Stripe store");
        let answered = if authorized {
            store.answer(&method, uri.path(), key.as_deref(), &form, &body)
        } else {
            plain(fail(
                401,
                "invalid_request_error",
                "",
                "",
                "Invalid API key.",
            ))
        };
        let (status, _, replayed, _) = &answered;
        store.requests.push(ApiRequest {
            method: method.to_string(),
            path: uri.path().to_owned(),
            idempotency_key: key.clone(),
            form,
            received_at: arrived,
            status: *status,
            replayed: *replayed,
        });
        answered
    };
    shared.arrivals.send_modify(|n| *n += 1);
    // Everything is stored already: a client hanging up during the hold undoes nothing.
    tokio::time::sleep_until(ready_at.into()).await;
    let mut response = Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, "application/json")
        .header("Request-Id", format!("req_{}", new_id()));
    if replayed {
        response = response.header("Idempotent-Replayed", "true");
    }
    response
        .body(Body::from(answer))
        .expect("fake Stripe response")
}

type Form = [(String, String)];
/// Status, JSON body.
type Answer = (u16, Value);
/// Status, body, replayed, when to send it.
type Reply = (u16, Bytes, bool, Instant);

/// An answer sent at once, not replayed.
fn plain((status, value): Answer) -> Reply {
    let body = Bytes::from(value.to_string());
    (status, body, false, Instant::now())
}

impl Store {
    /// Replays a finished key, refuses a key in flight or a reused one, or processes.
    fn answer(
        &mut self,
        method: &Method,
        path: &str,
        key: Option<&str>,
        form: &Form,
        raw: &[u8],
    ) -> Reply {
        let now = Instant::now();
        let key = key.filter(|_| method == Method::POST);
        let fingerprint = format!("{method} {path}\n{}", String::from_utf8_lossy(raw));
        if let Some(k) = key
            && let Some(saved) = self.saved.get(k)
        {
            if saved.fingerprint != fingerprint {
                let message = format!("Key '{k}' was first used with other parameters.");
                return plain(fail(400, "idempotency_error", "", "", &message));
            }
            if now < saved.ready_at {
                let message = format!("Another request using key '{k}' is in progress.");
                let code = "idempotency_key_in_use";
                return plain(fail(409, "idempotency_error", code, "", &message));
            }
            return (saved.status, saved.body.clone(), true, now);
        }
        let (status, value) = self.route(method, path, form, key);
        let body = Bytes::from(value.to_string());
        let hold = if method == Method::POST {
            self.hold.take()
        } else {
            None
        };
        let ready_at = now + hold.unwrap_or_default();
        if let Some(k) = key {
            let saved = Saved {
                fingerprint,
                status,
                body: body.clone(),
                ready_at,
            };
            self.saved.insert(k.to_owned(), saved);
        }
        (status, body, false, ready_at)
    }

    fn route(&mut self, method: &Method, path: &str, form: &Form, key: Option<&str>) -> Answer {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (method.as_str(), segments.as_slice()) {
            ("POST", ["v1", "payment_intents"]) => self.create_intent(form, key),
            ("GET", ["v1", "payment_intents", id]) => self.find(id, "payment_intent"),
            ("POST", ["v1", "payment_intents", id, "capture"]) => self.capture(id, form),
            ("POST", ["v1", "payment_intents", id, "cancel"]) => self.cancel(id, form),
            ("GET", ["v1", "payment_methods", id]) => self.payment_method(id),
            ("POST", ["v1", "refunds"]) => self.refund(form, key),
            ("GET", ["v1", "refunds", id]) => self.find(id, "refund"),
            _ => {
                let message = format!("Unrecognized request URL ({method}: {path}).");
                fail(404, "invalid_request_error", "", "", &message)
            }
        }
    }

    fn find(&self, id: &str, object: &str) -> Answer {
        match self.objects.get(id).filter(|o| o["object"] == object) {
            Some(found) => (200, found.clone()),
            None => missing(404, object, id, "id"),
        }
    }

    fn payment_method(&self, id: &str) -> Answer {
        if self.objects.contains_key(id) || !id.starts_with("pm_card_") {
            return self.find(id, "payment_method");
        }
        // Stripe's test PaymentMethods (`pm_card_visa`, ...): cards attached to no customer.
        let card = json!({"brand": "visa", "last4": "4242", "exp_month": 12, "exp_year": 2034});
        let pm = json!({"id": id, "object": "payment_method", "type": "card", "card": card,
            "customer": null, "created": unix_now(), "livemode": false, "metadata": {}});
        (200, pm)
    }

    fn create_intent(&mut self, form: &Form, key: Option<&str>) -> Answer {
        let (Some(amount), Some(currency)) = (number(form, "amount"), field(form, "currency"))
        else {
            return invalid("parameter_missing", "amount", "Missing amount or currency.");
        };
        if let Some(pm) = field(form, "payment_method")
            && self.payment_method(pm).0 != 200
        {
            return missing(400, "payment_method", pm, "payment_method");
        }
        // `payment_method_data` (a legacy `tok_...`) makes a PaymentMethod on the fly.
        let payment_method = field(form, "payment_method")
            .map(str::to_owned)
            .or_else(|| {
                field(form, "payment_method_data[type]").map(|_| format!("pm_{}", long_id()))
            });
        let id = format!("pi_{}", long_id());
        let mut pi = json!({
            "id": id, "object": "payment_intent", "amount": amount, "amount_capturable": 0,
            "amount_received": 0, "currency": currency,
            "capture_method": field(form, "capture_method").unwrap_or("automatic"),
            "client_secret": format!("{id}_secret_{}", long_id()),
            "confirmation_method": "automatic", "created": unix_now(),
            "customer": field(form, "customer"), "last_payment_error": null,
            "latest_charge": null, "livemode": false, "metadata": metadata(form),
            "payment_method": payment_method, "payment_method_types": ["card"],
            "canceled_at": null, "cancellation_reason": null,
            "status": "requires_payment_method",
        });
        match (payment_method, field(form, "confirm")) {
            (None, _) => {}
            (Some(_), Some("true")) => {
                pi["latest_charge"] = json!(format!("ch_{}", long_id()));
                let manual = pi["capture_method"] == "manual";
                let (status, amount_field) = if manual {
                    ("requires_capture", "amount_capturable")
                } else {
                    ("succeeded", "amount_received")
                };
                pi["status"] = json!(status);
                pi[amount_field] = json!(amount);
            }
            (Some(_), _) => pi["status"] = json!("requires_confirmation"),
        }
        self.created.push((key.map(str::to_owned), id.clone()));
        self.objects.insert(id, pi.clone());
        (200, pi)
    }

    fn capture(&mut self, id: &str, form: &Form) -> Answer {
        let Some(pi) = self.intent(id) else {
            return missing(404, "payment_intent", id, "intent");
        };
        if pi["status"] != "requires_capture" {
            return unexpected_state(pi, "captured");
        }
        let capturable = pi["amount_capturable"].as_u64().unwrap_or_default();
        let amount = number(form, "amount_to_capture").unwrap_or(capturable);
        if amount == 0 || amount > capturable {
            let message = format!("The amount_to_capture must be between 1 and {capturable}.");
            return invalid("amount_too_large", "amount_to_capture", &message);
        }
        pi["status"] = json!("succeeded");
        pi["amount_received"] = json!(amount);
        pi["amount_capturable"] = json!(0);
        (200, pi.clone())
    }

    fn cancel(&mut self, id: &str, form: &Form) -> Answer {
        let Some(pi) = self.intent(id) else {
            return missing(404, "payment_intent", id, "intent");
        };
        if pi["status"] == "succeeded" || pi["status"] == "canceled" {
            return unexpected_state(pi, "canceled");
        }
        pi["status"] = json!("canceled");
        pi["canceled_at"] = json!(unix_now());
        pi["cancellation_reason"] = json!(field(form, "cancellation_reason"));
        pi["amount_capturable"] = json!(0);
        (200, pi.clone())
    }

    fn refund(&mut self, form: &Form, key: Option<&str>) -> Answer {
        let intent = field(form, "payment_intent").unwrap_or_default();
        let Some(pi) = self
            .objects
            .get(intent)
            .filter(|o| o["object"] == "payment_intent")
        else {
            return missing(400, "payment_intent", intent, "payment_intent");
        };
        // Only what was captured and not refunded yet can be refunded.
        let received = pi["amount_received"].as_u64().unwrap_or_default();
        let refundable = received - self.refunded.get(intent).copied().unwrap_or_default();
        let amount = number(form, "amount").unwrap_or(refundable);
        if amount == 0 || amount > refundable {
            let message = format!("Refund amount ({amount}) is above the refundable {refundable}.");
            return invalid("amount_too_large", "amount", &message);
        }
        let id = format!("re_{}", long_id());
        let refund = json!({
            "id": id, "object": "refund", "amount": amount, "charge": pi["latest_charge"],
            "created": unix_now(), "currency": pi["currency"], "metadata": metadata(form),
            "payment_intent": intent, "reason": field(form, "reason"), "status": "succeeded",
        });
        *self.refunded.entry(intent.to_owned()).or_default() += amount;
        self.created.push((key.map(str::to_owned), id.clone()));
        self.objects.insert(id, refund.clone());
        (200, refund)
    }

    fn intent(&mut self, id: &str) -> Option<&mut Value> {
        self.objects
            .get_mut(id)
            .filter(|o| o["object"] == "payment_intent")
    }
}

/// Stripe's error body: `{"error": {"type", "code", "param", "message"}}`.
fn fail(status: u16, kind: &str, code: &str, param: &str, message: &str) -> Answer {
    let mut error = json!({"type": kind, "message": message});
    for (name, value) in [("code", code), ("param", param)] {
        if !value.is_empty() {
            error[name] = json!(value);
        }
    }
    (status, json!({ "error": error }))
}

fn invalid(code: &str, param: &str, message: &str) -> Answer {
    fail(400, "invalid_request_error", code, param, message)
}

fn missing(status: u16, object: &str, id: &str, param: &str) -> Answer {
    let message = format!("No such {object}: '{id}'");
    fail(
        status,
        "invalid_request_error",
        "resource_missing",
        param,
        &message,
    )
}

fn unexpected_state(pi: &Value, verb: &str) -> Answer {
    let message = format!(
        "This PaymentIntent could not be {verb}: its status is {}.",
        pi["status"]
    );
    invalid("payment_intent_unexpected_state", "intent", &message)
}

fn number(form: &Form, name: &str) -> Option<u64> {
    field(form, name).and_then(|n| n.parse().ok())
}

fn field<'a>(form: &'a Form, name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// `metadata[k]=v` fields as an object.
fn metadata(form: &Form) -> Value {
    let entries = form.iter().filter_map(|(k, v)| {
        let name = k.strip_prefix("metadata[")?.strip_suffix(']')?;
        Some((name.to_owned(), Value::String(v.clone())))
    });
    Value::Object(entries.collect::<Map<_, _>>())
}

/// Decodes `application/x-www-form-urlencoded`, with the `url` crate's parser (reqwest's).
fn decode_form(body: &[u8]) -> Vec<(String, String)> {
    let query = format!("http://form/?{}", String::from_utf8_lossy(body));
    let url = reqwest::Url::parse(&query).expect("any query parses");
    url.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// 24 base62 characters, like the part after `pi_` in Stripe's ids.
fn long_id() -> String {
    let mut id = format!("{}{}{}", new_id(), new_id(), new_id());
    id.truncate(24);
    id
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests;
