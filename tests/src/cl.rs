//! Commerce Layer simulator: what Commerce Layer (CL) does on its side of the external payment
//! gateway protocol, for end-to-end tests.
//!
//! The documents, signatures and HTTP calls are the client crate's (`psp_gateway_client::cl`,
//! re-exported here so tests keep writing `psp_gateway_e2e::cl::*`); this module adds the
//! **CL-side state**: [`ClSimulator`] sends the calls and records what CL would record from
//! the answers (authorizations, captures, voids, refunds with their balances, pending
//! transactions settled later by a callback), so a test can run a whole payment lifecycle.
//!
//! The contract is `shared/reference/commerce-layer.md`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;

pub use psp_gateway_client::cl::*;

#[derive(Debug, Clone)]
struct Pending {
    action: Action,
    id: String,
}

/// CL's records, as a test can inspect them.
#[derive(Debug, Default)]
struct State {
    orders: HashMap<String, Order>,
    authorizations: HashMap<String, Authorization>,
    captures: HashMap<String, Capture>,
    settlements: HashMap<String, Settlement>,
    pending: HashMap<String, Pending>,
    /// Next transaction sequence per order number (`42/T/001`, `42/T/002`...).
    sequences: HashMap<String, u32>,
    wallet: Vec<SavedSource>,
    consecutive_failures: u32,
}

impl State {
    fn next_number(&mut self, order: &Order) -> String {
        let n = self.sequences.entry(order.number.clone()).or_insert(0);
        *n += 1;
        format!("{}/T/{:03}", order.number, n)
    }

    /// The current copy of an order (CL moves its statuses along).
    fn order(&self, snapshot: &Order) -> Order {
        self.orders
            .get(&snapshot.id)
            .cloned()
            .unwrap_or_else(|| snapshot.clone())
    }

    fn set_payment_status(&mut self, order: &Order, status: &str, payment_status: &str) {
        let entry = self
            .orders
            .entry(order.id.clone())
            .or_insert_with(|| order.clone());
        entry.status = status.into();
        entry.payment_status = payment_status.into();
    }

    /// Circuit-breaker bookkeeping: timeouts and 5xx count as failures, a success resets.
    /// Whether CL counts 4xx is not documented, so they leave the count alone.
    fn count(&mut self, resp: &Response) {
        if resp.status == 0 || resp.status >= 500 {
            self.consecutive_failures += 1;
        } else if resp.is_success() || resp.is_pending() {
            self.consecutive_failures = 0;
        }
    }

    fn track_pending(&mut self, resp: &Response, action: Action, id: &str) -> Option<String> {
        let action_id = resp.action_id()?.to_owned();
        self.pending.insert(
            action_id.clone(),
            Pending {
                action,
                id: id.to_owned(),
            },
        );
        Some(action_id)
    }

    fn after_authorize(&mut self, p: &ExternalPayment, resp: &Response) -> Option<Authorization> {
        self.count(resp);
        let order = self.order(&p.order);
        let number = self.next_number(&order);
        if !resp.is_success() && !resp.is_pending() {
            return None;
        }
        let payment_status = if resp.is_success() {
            "authorized"
        } else {
            "unpaid"
        };
        self.set_payment_status(&order, "placed", payment_status);
        let auth = Authorization::from_answer(p, self.order(&order), number, resp);
        let id = auth.id.clone();
        self.track_pending(resp, Action::Authorize, &id);
        self.authorizations.insert(id, auth.clone());
        Some(auth)
    }

    fn after_capture(
        &mut self,
        auth: &Authorization,
        asked: i64,
        resp: &Response,
    ) -> Option<Capture> {
        self.count(resp);
        let number = self.next_number(&auth.order);
        if !resp.is_success() && !resp.is_pending() {
            return None;
        }
        let succeeded = resp.is_success();
        let capture = Capture::from_answer(auth, self.order(&auth.order), number, asked, resp);
        let id = capture.id.clone();
        self.track_pending(resp, Action::Capture, &id);
        self.captures.insert(id.clone(), capture);
        if succeeded {
            self.settle_capture(&id);
        }
        self.captures.get(&id).cloned()
    }

    /// A capture succeeded: the authorization has that much less to capture (and to void).
    fn settle_capture(&mut self, capture_id: &str) {
        let Some(capture) = self.captures.get_mut(capture_id) else {
            return;
        };
        capture.succeeded = true;
        let (auth_id, amount) = (capture.authorization_id.clone(), capture.amount_cents);
        let Some(auth) = self.authorizations.get_mut(&auth_id) else {
            return;
        };
        auth.capture_balance_cents = (auth.capture_balance_cents - amount).max(0);
        // What is captured can no longer be voided.
        auth.void_balance_cents = auth.capture_balance_cents;
        let paid = if auth.capture_balance_cents == 0 {
            "paid"
        } else {
            "partially_paid"
        };
        let order = auth.order.clone();
        self.set_payment_status(&order, "approved", paid);
    }

    fn after_void(&mut self, auth: &Authorization, resp: &Response) -> Option<Settlement> {
        self.count(resp);
        let number = self.next_number(&auth.order);
        if !resp.is_success() && !resp.is_pending() {
            return None;
        }
        let id = new_id();
        let void = Settlement {
            id: id.clone(),
            number,
            token: resp.transaction_token().unwrap_or_default().to_owned(),
            amount_cents: resp.amount_cents().unwrap_or(auth.void_balance_cents),
            succeeded: resp.is_success(),
            action_id: self.track_pending(resp, Action::Void, &id),
            parent_id: auth.id.clone(),
        };
        self.settlements.insert(id.clone(), void);
        if resp.is_success() {
            self.settle_void(&id);
        }
        self.settlements.get(&id).cloned()
    }

    /// A void succeeded: nothing is left to capture or void.
    fn settle_void(&mut self, void_id: &str) {
        let Some(void) = self.settlements.get_mut(void_id) else {
            return;
        };
        void.succeeded = true;
        let auth_id = void.parent_id.clone();
        let Some(auth) = self.authorizations.get_mut(&auth_id) else {
            return;
        };
        auth.capture_balance_cents = 0;
        auth.void_balance_cents = 0;
        let order = auth.order.clone();
        self.set_payment_status(&order, "cancelled", "voided");
    }

    fn after_refund(
        &mut self,
        capture: &Capture,
        asked: i64,
        resp: &Response,
    ) -> Option<Settlement> {
        self.count(resp);
        let number = self.next_number(&capture.order);
        if !resp.is_success() && !resp.is_pending() {
            return None;
        }
        let id = new_id();
        let refund = Settlement {
            id: id.clone(),
            number,
            token: resp.transaction_token().unwrap_or_default().to_owned(),
            amount_cents: resp.amount_cents().unwrap_or(asked),
            succeeded: resp.is_success(),
            action_id: self.track_pending(resp, Action::Refund, &id),
            parent_id: capture.id.clone(),
        };
        self.settlements.insert(id.clone(), refund);
        if resp.is_success() {
            self.settle_refund(&id);
        }
        self.settlements.get(&id).cloned()
    }

    /// A refund succeeded: the capture has that much less to refund.
    fn settle_refund(&mut self, refund_id: &str) {
        let Some(refund) = self.settlements.get_mut(refund_id) else {
            return;
        };
        refund.succeeded = true;
        let (capture_id, amount) = (refund.parent_id.clone(), refund.amount_cents);
        let Some(capture) = self.captures.get_mut(&capture_id) else {
            return;
        };
        capture.refund_balance_cents = (capture.refund_balance_cents - amount).max(0);
        let order = capture.order.clone();
        let all_refunded = self
            .captures
            .values()
            .filter(|c| c.order.id == order.id && c.succeeded)
            .all(|c| c.refund_balance_cents == 0);
        let status = if all_refunded {
            "refunded"
        } else {
            "partially_refunded"
        };
        self.set_payment_status(&order, "approved", status);
    }

    fn after_token(&mut self, resp: &Response) -> Option<SavedSource> {
        self.count(resp);
        if !resp.is_success() {
            return None;
        }
        let saved = SavedSource {
            customer_token: resp.body["data"]["customer_token"]
                .as_str()
                .map(str::to_owned),
            payment_source_token: resp.body["data"]["payment_source_token"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        };
        self.wallet.push(saved.clone());
        Some(saved)
    }

    /// Applies an asynchronous outcome: `Some(true)` when the pending transaction named by
    /// `data.action_id` is now succeeded, `Some(false)` when the callback reported a
    /// failure (CL leaves the order as it is), `None` for an unknown action id.
    fn apply_callback(&mut self, body: &Value) -> Option<bool> {
        let action_id = body["data"]["action_id"].as_str()?;
        let pending = self.pending.get(action_id)?.clone();
        if body["success"] != true {
            return Some(false);
        }
        self.pending.remove(action_id);
        let message = body["data"]["message"].as_str().map(str::to_owned);
        match pending.action {
            Action::Authorize => {
                let auth = self.authorizations.get_mut(&pending.id)?;
                auth.succeeded = true;
                auth.message = message;
                let order = auth.order.clone();
                self.set_payment_status(&order, "placed", "authorized");
            }
            Action::Capture => {
                if let Some(c) = self.captures.get_mut(&pending.id) {
                    c.message = message;
                }
                self.settle_capture(&pending.id);
            }
            Action::Void => self.settle_void(&pending.id),
            Action::Refund => self.settle_refund(&pending.id),
            Action::Token => return None,
        }
        Some(true)
    }
}

/// Commerce Layer, as far as one external gateway is concerned: it sends signed calls to the
/// host's `/commercelayer/{gateway}/{action}` routes and records what CL would record.
///
/// Methods take `&self` (state sits behind a mutex), so one simulator can be shared by
/// concurrent tasks through an `Arc`.
pub struct ClSimulator {
    client: ClClient,
    state: Mutex<State>,
}

impl ClSimulator {
    /// A simulator for gateway `gateway_id` of the host at `base_url` (`http://127.0.0.1:PORT`),
    /// signing with `shared_secret`, sending `application/vnd.api+json`, waiting up to 15 s.
    pub fn new(base_url: &str, gateway_id: &str, shared_secret: &str) -> ClSimulator {
        ClSimulator {
            client: ClClient::new(base_url, gateway_id, shared_secret),
            state: Mutex::new(State::default()),
        }
    }

    /// The HTTP side, shared with the `load` and `trigger` commands.
    pub fn client(&self) -> &ClClient {
        &self.client
    }

    /// Sends `content_type` (e.g. [`JSON`]) instead of `application/vnd.api+json`.
    pub fn with_content_type(mut self, content_type: &str) -> ClSimulator {
        self.client = self.client.with_content_type(content_type);
        self
    }

    /// How long CL waits for an answer before recording a failed call (status 0).
    pub fn with_timeout(mut self, timeout: Duration) -> ClSimulator {
        self.client = self.client.with_timeout(timeout);
        self
    }

    /// The host's route for `action`.
    pub fn url(&self, action: Action) -> String {
        self.client.url(action)
    }

    /// The signature of `body` with this gateway's shared secret.
    pub fn sign(&self, body: &[u8]) -> String {
        self.client.sign(body)
    }

    /// Serialises a document once and signs exactly those bytes.
    pub fn encode(&self, doc: &Value) -> (Vec<u8>, String) {
        self.client.encode(doc)
    }

    /// Sends `doc` to `action`, signed, with the simulator's content type. Records nothing.
    pub async fn send(&self, action: Action, doc: &Value) -> Response {
        self.client.send(action, doc).await
    }

    /// Sends exactly `body` with `signature` (or no signature header) and `content_type`:
    /// for negative tests. Records nothing.
    pub async fn post_raw(
        &self,
        action: Action,
        body: Vec<u8>,
        signature: Option<String>,
        content_type: &str,
    ) -> Response {
        self.client
            .post_raw(action, body, signature, content_type)
            .await
    }

    /// Authorizes `order`'s `total_amount_with_taxes_cents` with a new external payment
    /// carrying `payment_source_token`. On 200 (or 202) CL records the authorization.
    pub async fn authorize(
        &self,
        order: &Order,
        payment_source_token: &str,
    ) -> (Response, Option<Authorization>) {
        let order = self.current_order(order);
        self.authorize_payment(&ExternalPayment::new(&order, payment_source_token))
            .await
    }

    /// Authorizes a given external payment: send the same one twice to replay an authorize.
    pub async fn authorize_payment(
        &self,
        payment: &ExternalPayment,
    ) -> (Response, Option<Authorization>) {
        let resp = self.send(Action::Authorize, &authorize_body(payment)).await;
        let auth = self.state().after_authorize(payment, &resp);
        (resp, auth)
    }

    /// Captures `amount_cents` of an authorization (CL's current record of it, looked up by
    /// id, so a stale copy is fine). On success the capture balance goes down.
    pub async fn capture(
        &self,
        auth: &Authorization,
        amount_cents: i64,
    ) -> (Response, Option<Capture>) {
        let auth = self.current_authorization(auth);
        let resp = self
            .send(Action::Capture, &capture_body(&auth, amount_cents))
            .await;
        let capture = self.state().after_capture(&auth, amount_cents, &resp);
        (resp, capture)
    }

    /// Voids an authorization. On success nothing is left to capture or void.
    pub async fn void(&self, auth: &Authorization) -> (Response, Option<Settlement>) {
        let auth = self.current_authorization(auth);
        let resp = self.send(Action::Void, &void_body(&auth)).await;
        let void = self.state().after_void(&auth, &resp);
        (resp, void)
    }

    /// Refunds `amount_cents` of a capture. On success its refund balance goes down.
    pub async fn refund(
        &self,
        capture: &Capture,
        amount_cents: i64,
    ) -> (Response, Option<Settlement>) {
        let capture = self.current_capture(capture);
        let resp = self
            .send(Action::Refund, &refund_body(&capture, amount_cents))
            .await;
        let refund = self.state().after_refund(&capture, amount_cents, &resp);
        (resp, refund)
    }

    /// The customer token call: saves `payment`'s source to the customer's wallet.
    pub async fn save_to_wallet(
        &self,
        payment: &ExternalPayment,
    ) -> (Response, Option<SavedSource>) {
        let resp = self.send(Action::Token, &token_body(payment)).await;
        let saved = self.state().after_token(&resp);
        (resp, saved)
    }

    /// Applies a callback body received at the webhook endpoint the way CL does (find the
    /// pending transaction by `data.action_id`): `Some(true)` settled, `Some(false)` a
    /// failure outcome (nothing changes), `None` unknown action id.
    pub fn apply_callback(&self, body: &Value) -> Option<bool> {
        self.state().apply_callback(body)
    }

    /// CL's current record of an authorization.
    pub fn find_authorization(&self, id: &str) -> Option<Authorization> {
        self.state().authorizations.get(id).cloned()
    }

    /// CL's current record of a capture.
    pub fn find_capture(&self, id: &str) -> Option<Capture> {
        self.state().captures.get(id).cloned()
    }

    /// CL's current record of a void or refund.
    pub fn find_settlement(&self, id: &str) -> Option<Settlement> {
        self.state().settlements.get(id).cloned()
    }

    /// CL's current copy of an order (its `status` and `payment_status` move along).
    pub fn find_order(&self, id: &str) -> Option<Order> {
        self.state().orders.get(id).cloned()
    }

    /// Payment sources saved by successful customer token calls.
    pub fn wallet(&self) -> Vec<SavedSource> {
        self.state().wallet.clone()
    }

    /// Failed calls (timeouts, no answer, 5xx) in a row: what CL's circuit breaker counts.
    pub fn consecutive_failures(&self) -> u32 {
        self.state().consecutive_failures
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("simulator state")
    }

    fn current_order(&self, order: &Order) -> Order {
        self.state().order(order)
    }

    fn current_authorization(&self, auth: &Authorization) -> Authorization {
        let state = self.state();
        let mut current = state
            .authorizations
            .get(&auth.id)
            .cloned()
            .unwrap_or_else(|| auth.clone());
        current.order = state.order(&current.order);
        current
    }

    fn current_capture(&self, capture: &Capture) -> Capture {
        let state = self.state();
        let mut current = state
            .captures
            .get(&capture.id)
            .cloned()
            .unwrap_or_else(|| capture.clone());
        current.order = state.order(&current.order);
        current
    }
}

#[cfg(test)]
#[path = "cl_tests.rs"]
mod tests;
