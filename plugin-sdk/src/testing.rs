//! Native unit testing for plugins: a [`Harness`] stands in for the host (settings, scripted
//! HTTP replies, recorded requests and logs, the gateway's cache), plus builders for typical
//! requests.
//!
//! ```
//! use psp_plugin_sdk::http::{Method, Request};
//! use psp_plugin_sdk::testing::{Harness, Reply};
//! use serde_json::json;
//!
//! let harness = Harness::new()
//!     .setting("api_key", "sk_test")
//!     .on(Method::Post, "https://api.example/v1/things", Reply::json(200, json!({"id": "t_1"})));
//! let status = harness.run(|| {
//!     let key = psp_plugin_sdk::settings::require("api_key").unwrap();
//!     Request::post("https://api.example/v1/things").bearer_auth(&key).send().unwrap().status
//! });
//! assert_eq!(status, 200);
//! assert_eq!(harness.requests()[0].header_value("authorization"), Some("Bearer sk_test"));
//! ```
//!
//! Only compiled natively: on `wasm32` the real host answers.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

use serde_json::Value;

use crate::http::{HttpError, Method, Request, Response};
use crate::log::Level;
use crate::types::{
    AuthorizeRequest, CaptureRequest, CompleteRequest, FollowUpRequest, Money, Operation, Pair,
    SyncRequest, TokenizeRequest, WebhookRequest,
};

const NO_HARNESS: &str = "no psp_plugin_sdk::testing::Harness is installed: natively, plugin \
     code that uses http or settings must run inside `Harness::new()...run(|| ...)`";

/// A scripted answer to one outbound request.
#[derive(Debug, Clone)]
pub struct Reply {
    result: Result<Response, HttpError>,
}

impl Reply {
    /// A JSON body with `Content-Type: application/json`.
    pub fn json(status: u16, body: Value) -> Self {
        Self::text(status, body.to_string()).header("Content-Type", "application/json")
    }

    /// A text body, no headers.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Reply {
            result: Ok(Response {
                status,
                headers: Vec::new(),
                body: body.into().into_bytes(),
            }),
        }
    }

    /// An empty body with `status`.
    pub fn status(status: u16) -> Self {
        Self::text(status, "")
    }

    /// The host fails the request with `error` (timeout, denied host, ...).
    pub fn error(error: HttpError) -> Self {
        Reply { result: Err(error) }
    }

    /// Adds a response header (no effect on an [`error`](Reply::error) reply).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        if let Ok(resp) = &mut self.result {
            resp.headers.push((name.into(), value.into()));
        }
        self
    }
}

/// A log line the plugin wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Its severity.
    pub level: Level,
    /// Its text.
    pub message: String,
}

struct Route {
    method: Method,
    url_prefix: String,
    replies: VecDeque<Reply>,
}

#[derive(Default)]
struct State {
    settings: BTreeMap<String, String>,
    routes: Vec<Route>,
    requests: Vec<Request>,
    logs: Vec<LogLine>,
    /// The gateway's cache: value and the TTL it was set with (a harness has no clock,
    /// so entries never expire; drop one with `forget` to test a miss).
    cache: BTreeMap<String, (Vec<u8>, u32)>,
}

thread_local! {
    static CURRENT: RefCell<Option<Rc<RefCell<State>>>> = const { RefCell::new(None) };
}

/// A fake host for one test: settings, scripted HTTP replies, and a record of what the plugin
/// sent and logged.
///
/// Requests match a route by method and URL prefix (the longest matching prefix wins); the
/// replies of a route are used once each, in the order they were scripted. A request with no
/// reply left fails with [`HttpError::Connect`].
#[derive(Default)]
pub struct Harness {
    state: Rc<RefCell<State>>,
}

impl Harness {
    /// An empty harness: no settings, no routes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a gateway setting.
    pub fn setting(self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.state
            .borrow_mut()
            .settings
            .insert(name.into(), value.into());
        self
    }

    /// Scripts `reply` for the next request with `method` whose URL starts with `url_prefix`.
    /// Scripting the same route again queues another reply behind the first.
    pub fn on(self, method: Method, url_prefix: impl Into<String>, reply: Reply) -> Self {
        let url_prefix = url_prefix.into();
        {
            let mut state = self.state.borrow_mut();
            match state
                .routes
                .iter_mut()
                .find(|r| r.method == method && r.url_prefix == url_prefix)
            {
                Some(route) => route.replies.push_back(reply),
                None => state.routes.push(Route {
                    method,
                    url_prefix,
                    replies: VecDeque::from([reply]),
                }),
            }
        }
        self
    }

    /// Runs `f` with this harness standing in for the host on the current thread.
    pub fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        let previous = CURRENT.with(|c| c.replace(Some(Rc::clone(&self.state))));
        // Restores the previous harness even if `f` panics (a test expecting a panic).
        struct Restore(Option<Rc<RefCell<State>>>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let previous = self.0.take();
                CURRENT.with(|c| *c.borrow_mut() = previous);
            }
        }
        let _restore = Restore(previous);
        f()
    }

    /// What the plugin keeps in the gateway's cache under `key`, and the TTL (ms) it asked
    /// for. The harness is shared by every `run`, as the host's cache is by every call.
    pub fn cached(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.state.borrow().cache.get(key).cloned()
    }

    /// Drops a cache entry, as the host may at any time.
    pub fn forget(&self, key: &str) {
        self.state.borrow_mut().cache.remove(key);
    }

    /// Every request the plugin sent, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.state.borrow().requests.clone()
    }

    /// The last request the plugin sent.
    pub fn last_request(&self) -> Option<Request> {
        self.state.borrow().requests.last().cloned()
    }

    /// Every log line the plugin wrote, in order.
    pub fn logs(&self) -> Vec<LogLine> {
        self.state.borrow().logs.clone()
    }

    /// Scripted replies no request consumed, as `METHOD url_prefix` (assert it is empty to
    /// check the plugin made every call you expected).
    pub fn unused_replies(&self) -> Vec<String> {
        self.state
            .borrow()
            .routes
            .iter()
            .flat_map(|r| {
                r.replies
                    .iter()
                    .map(move |_| format!("{} {}", r.method, r.url_prefix))
            })
            .collect()
    }
}

fn with_state<R>(f: impl FnOnce(&mut State) -> R) -> Option<R> {
    CURRENT.with(|c| c.borrow().as_ref().map(|s| f(&mut s.borrow_mut())))
}

pub(crate) fn send(req: &Request) -> Result<Response, HttpError> {
    with_state(|state| {
        state.requests.push(req.clone());
        let route = state
            .routes
            .iter_mut()
            .filter(|r| {
                r.method == req.method()
                    && req.url().starts_with(&r.url_prefix)
                    && !r.replies.is_empty()
            })
            .max_by_key(|r| r.url_prefix.len());
        match route.and_then(|r| r.replies.pop_front()) {
            Some(reply) => reply.result,
            None => Err(HttpError::Connect(format!(
                "no scripted reply for {} {}",
                req.method(),
                req.url()
            ))),
        }
    })
    .unwrap_or_else(|| panic!("{NO_HARNESS}"))
}

pub(crate) fn setting(name: &str) -> Option<String> {
    with_state(|state| state.settings.get(name).cloned()).unwrap_or_else(|| panic!("{NO_HARNESS}"))
}

pub(crate) fn cache_get(key: &str) -> Option<Vec<u8>> {
    with_state(|state| state.cache.get(key).map(|(v, _)| v.clone()))
        .unwrap_or_else(|| panic!("{NO_HARNESS}"))
}

pub(crate) fn cache_set(key: &str, value: &[u8], ttl_ms: u32) {
    with_state(|state| {
        if ttl_ms > 0 {
            state.cache.insert(key.to_owned(), (value.to_vec(), ttl_ms));
        }
    })
    .unwrap_or_else(|| panic!("{NO_HARNESS}"))
}

pub(crate) fn cache_remove(key: &str) {
    with_state(|state| state.cache.remove(key)).unwrap_or_else(|| panic!("{NO_HARNESS}"));
}

pub(crate) fn write_log(level: Level, message: &str) {
    let line = LogLine {
        level,
        message: message.to_owned(),
    };
    if with_state(|state| state.logs.push(line)).is_none() {
        // Logging outside a harness is harmless; show it rather than fail the test.
        eprintln!("[{level}] {message}");
    }
}

/// `Money` with `amount_cents` in `currency`.
pub fn money(amount_cents: u64, currency: &str) -> Money {
    Money::new(amount_cents, currency)
}

/// An authorize (or sale) request on `payment_source_token`, idempotency key `idem-test-1`,
/// reference `ref-test-1`, no customer, order or options.
pub fn authorize_request(
    payment_source_token: &str,
    amount_cents: u64,
    currency: &str,
) -> AuthorizeRequest {
    AuthorizeRequest {
        idempotency_key: "idem-test-1".into(),
        amount: money(amount_cents, currency),
        payment_source_token: payment_source_token.into(),
        customer_token: None,
        reference: "ref-test-1".into(),
        order: None,
        options_json: None,
        shopper: None,
    }
}

/// A capture of `amount_cents` on the authorization `transaction_token`: the first and not
/// the final one (set `sequence` and `final_capture` for others); idempotency key
/// `idem-test-2`, reference `ref-test-2`.
pub fn capture_request(
    transaction_token: &str,
    amount_cents: u64,
    currency: &str,
) -> CaptureRequest {
    CaptureRequest {
        idempotency_key: "idem-test-2".into(),
        amount: money(amount_cents, currency),
        transaction_token: transaction_token.into(),
        psp_reference: None,
        reference: "ref-test-2".into(),
        order: None,
        final_capture: false,
        sequence: 1,
    }
}

/// A void / refund request on `transaction_token`, idempotency key `idem-test-2`,
/// reference `ref-test-2`.
pub fn follow_up_request(
    transaction_token: &str,
    amount_cents: u64,
    currency: &str,
) -> FollowUpRequest {
    FollowUpRequest {
        idempotency_key: "idem-test-2".into(),
        amount: money(amount_cents, currency),
        transaction_token: transaction_token.into(),
        psp_reference: None,
        reference: "ref-test-2".into(),
        order: None,
    }
}

/// A tokenize request for `payment_source_token`, idempotency key `idem-test-3`, no customer.
pub fn tokenize_request(payment_source_token: &str) -> TokenizeRequest {
    TokenizeRequest {
        idempotency_key: "idem-test-3".into(),
        payment_source_token: payment_source_token.into(),
        customer_token: None,
        customer_email: None,
        reference: "ref-test-3".into(),
        order: None,
    }
}

/// A sync request for the `operation` that produced `transaction_token`.
pub fn sync_request(
    operation: Operation,
    transaction_token: &str,
    amount_cents: u64,
    currency: &str,
) -> SyncRequest {
    SyncRequest {
        operation,
        transaction_token: Some(transaction_token.into()),
        psp_reference: None,
        idempotency_key: "idem-test-1".into(),
        reference: "ref-test-1".into(),
        amount: money(amount_cents, currency),
    }
}

/// A `complete` of the authorization `transaction_token` / `psp_reference` after the shopper
/// acted, with the parameters of the shopper's return.
pub fn complete_request(
    transaction_token: &str,
    psp_reference: &str,
    amount_cents: u64,
    currency: &str,
    return_parameters: &[(&str, &str)],
) -> CompleteRequest {
    CompleteRequest {
        operation: Operation::Authorize,
        idempotency_key: "idem-test-1".into(),
        transaction_token: transaction_token.into(),
        psp_reference: psp_reference.into(),
        amount: money(amount_cents, currency),
        return_parameters: return_parameters
            .iter()
            .map(|(k, v)| Pair::new(*k, *v))
            .collect(),
        details_json: None,
    }
}

/// A PSP notification with `headers` and a raw `body`.
pub fn webhook_request(headers: &[(&str, &str)], body: impl Into<Vec<u8>>) -> WebhookRequest {
    WebhookRequest {
        headers: headers.iter().map(|(k, v)| Pair::new(*k, *v)).collect(),
        body: body.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Request;
    use crate::{log, settings};
    use serde_json::json;

    #[test]
    fn settings_and_logs() {
        let harness = Harness::new()
            .setting("api_key", "sk")
            .setting("blank", " ");
        harness.run(|| {
            assert_eq!(settings::get("api_key").as_deref(), Some("sk"));
            assert_eq!(settings::get("nope"), None);
            assert_eq!(settings::require("api_key").unwrap(), "sk");
            let missing = settings::require("nope").unwrap_err();
            assert!(matches!(missing, crate::types::Failure::Misconfigured(ref m) if m.contains("`nope`")));
            assert!(settings::require("blank").is_err());
            log::info("hello");
            log::error("boom");
        });
        let logs = harness.logs();
        assert_eq!(logs.len(), 2);
        assert_eq!(
            logs[0],
            LogLine {
                level: Level::Info,
                message: "hello".into()
            }
        );
        assert_eq!(logs[1].level, Level::Error);
    }

    #[test]
    fn scripted_replies_are_consumed_in_order_and_recorded() {
        let harness = Harness::new()
            .on(
                Method::Post,
                "https://api.example/v1/things",
                Reply::json(200, json!({"n": 1})),
            )
            .on(
                Method::Post,
                "https://api.example/v1/things",
                Reply::status(500),
            )
            .on(
                Method::Get,
                "https://api.example/",
                Reply::text(200, "root").header("X-A", "b"),
            )
            .on(
                Method::Get,
                "https://api.example/v1/slow",
                Reply::error(HttpError::Timeout),
            );
        harness.run(|| {
            let first = Request::post("https://api.example/v1/things/1")
                .json(&json!({"a": 1}))
                .send()
                .unwrap();
            assert_eq!(first.json::<Value>().unwrap()["n"], 1);
            assert_eq!(first.header("content-type"), Some("application/json"));
            let second = Request::post("https://api.example/v1/things")
                .send()
                .unwrap();
            assert_eq!(second.status, 500);
            let third = Request::post("https://api.example/v1/things")
                .send()
                .unwrap_err();
            assert_eq!(
                third,
                HttpError::Connect(
                    "no scripted reply for POST https://api.example/v1/things".into()
                )
            );
            // Longest prefix wins.
            assert_eq!(
                Request::get("https://api.example/v1/slow")
                    .send()
                    .unwrap_err(),
                HttpError::Timeout
            );
            let root = Request::get("https://api.example/v1/other").send().unwrap();
            assert_eq!(root.text(), "root");
            assert_eq!(root.header("x-a"), Some("b"));
        });
        let requests = harness.requests();
        assert_eq!(requests.len(), 5);
        assert_eq!(requests[0].method(), Method::Post);
        assert_eq!(requests[0].url(), "https://api.example/v1/things/1");
        assert_eq!(requests[0].body_text(), r#"{"a":1}"#);
        assert_eq!(
            harness.last_request().unwrap().url(),
            "https://api.example/v1/other"
        );
        assert!(harness.unused_replies().is_empty());
    }

    #[test]
    fn harness_is_removed_after_run() {
        let harness = Harness::new().setting("k", "v");
        harness.run(|| assert!(settings::get("k").is_some()));
        let outside = std::panic::catch_unwind(|| settings::get("k"));
        let message = *outside.unwrap_err().downcast::<String>().unwrap();
        assert!(message.contains("Harness"), "{message}");
    }

    #[test]
    fn the_cache_is_shared_by_runs_and_can_be_forgotten() {
        use std::time::Duration;
        let harness = Harness::new();
        harness.run(|| crate::cache::set("token", b"abc", Duration::from_secs(60)));
        assert_eq!(harness.cached("token"), Some((b"abc".to_vec(), 60_000)));
        let again = harness.run(|| crate::cache::get_text("token"));
        assert_eq!(again.as_deref(), Some("abc"));
        harness.forget("token");
        assert_eq!(harness.run(|| crate::cache::get("token")), None);
        harness.run(|| {
            crate::cache::set("t2", b"x", Duration::from_secs(1));
            crate::cache::remove("t2");
        });
        assert_eq!(harness.cached("t2"), None);
    }

    #[test]
    fn request_builders() {
        let req = authorize_request("tok_x", 1000, "EUR");
        assert_eq!(req.payment_source_token, "tok_x");
        assert_eq!(req.amount, Money::new(1000, "EUR"));
        assert_eq!(follow_up_request("t", 5, "USD").transaction_token, "t");
        let capture = capture_request("t", 5, "USD");
        assert_eq!((capture.sequence, capture.final_capture), (1, false));
        let complete = complete_request("t", "r", 5, "USD", &[("redirect_status", "succeeded")]);
        assert_eq!(
            complete.return_parameters,
            vec![Pair::new("redirect_status", "succeeded")]
        );
        assert_eq!(tokenize_request("pm").payment_source_token, "pm");
        assert_eq!(
            sync_request(Operation::Authorize, "t", 1, "EUR").operation,
            Operation::Authorize
        );
        let hook = webhook_request(&[("A", "b")], "{}");
        assert_eq!(hook.headers, vec![Pair::new("A", "b")]);
        assert_eq!(hook.body, b"{}");
    }
}
