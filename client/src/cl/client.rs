//! Sending CL's calls: the five [`Action`]s, the gateway's [`Response`] as received, and
//! [`ClClient`], which signs a document's exact bytes and POSTs them to the host's
//! `/commercelayer/{gateway}/{action}` route. It records nothing: what CL would record
//! from the answers is the caller's (the tests' simulator, the trigger command).

use std::time::{Duration, Instant};

use serde_json::Value;

use super::{JSON_API, SIGNATURE_HEADER, sign};

/// The five calls CL makes to an external gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Authorize,
    Capture,
    Void,
    Refund,
    Token,
}

impl Action {
    /// The last path segment of the host's route for this action.
    pub fn path(self) -> &'static str {
        match self {
            Action::Authorize => "authorize",
            Action::Capture => "capture",
            Action::Void => "void",
            Action::Refund => "refund",
            Action::Token => "token",
        }
    }
}

/// The gateway's answer to one call, as received.
#[derive(Debug, Clone)]
pub struct Response {
    /// HTTP status; `0` when no answer came (connection refused, timeout): what CL records
    /// as a failed call.
    pub status: u16,
    /// The body parsed as JSON, `Null` when it is not JSON.
    pub body: Value,
    /// The body bytes (the transport error's text when `status` is 0).
    pub raw: Vec<u8>,
    pub elapsed: Duration,
}

impl Response {
    /// 200 with `success: true`: CL records a succeeded transaction.
    pub fn is_success(&self) -> bool {
        self.status == 200 && self.body["success"] == true
    }

    /// 202 with `success: true` and an `action_id`: CL records a pending transaction.
    pub fn is_pending(&self) -> bool {
        self.status == 202 && self.body["success"] == true && self.action_id().is_some()
    }

    /// `data.transaction_token`.
    pub fn transaction_token(&self) -> Option<&str> {
        self.body["data"]["transaction_token"].as_str()
    }

    /// `data.amount_cents`.
    pub fn amount_cents(&self) -> Option<i64> {
        self.body["data"]["amount_cents"].as_i64()
    }

    /// `data.action_id` (asynchronous answers).
    pub fn action_id(&self) -> Option<&str> {
        self.body["data"]["action_id"].as_str()
    }

    /// `error.code`, or `data.error.code` as an older version of CL's docs put it.
    pub fn error_code(&self) -> Option<&str> {
        self.body["error"]["code"]
            .as_str()
            .or_else(|| self.body["data"]["error"]["code"].as_str())
    }

    /// The body as text, for assertion messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }
}

impl std::fmt::Display for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.text())
    }
}

/// CL's HTTP side for one external gateway of one host: where to send, how to sign.
#[derive(Clone)]
pub struct ClClient {
    http: reqwest::Client,
    base_url: String,
    gateway_id: String,
    shared_secret: String,
    content_type: String,
}

impl ClClient {
    /// A client for gateway `gateway_id` of the host at `base_url` (`http://127.0.0.1:PORT`),
    /// signing with `shared_secret`, sending `application/vnd.api+json`, waiting up to 15 s.
    pub fn new(base_url: &str, gateway_id: &str, shared_secret: &str) -> ClClient {
        ClClient {
            http: http_client(Duration::from_secs(15)),
            base_url: base_url.trim_end_matches('/').to_owned(),
            gateway_id: gateway_id.to_owned(),
            shared_secret: shared_secret.to_owned(),
            content_type: JSON_API.to_owned(),
        }
    }

    /// Sends `content_type` (e.g. [`super::JSON`]) instead of `application/vnd.api+json`.
    pub fn with_content_type(mut self, content_type: &str) -> ClClient {
        self.content_type = content_type.to_owned();
        self
    }

    /// How long CL waits for an answer before recording a failed call (status 0).
    pub fn with_timeout(mut self, timeout: Duration) -> ClClient {
        self.http = http_client(timeout);
        self
    }

    /// The content type sent.
    pub fn content_type(&self) -> &str {
        &self.content_type
    }

    /// The host's route for `action`, without the base URL.
    pub fn path(&self, action: Action) -> String {
        format!("/commercelayer/{}/{}", self.gateway_id, action.path())
    }

    /// The host's route for `action`.
    pub fn url(&self, action: Action) -> String {
        format!("{}{}", self.base_url, self.path(action))
    }

    /// The signature of `body` with this gateway's shared secret.
    pub fn sign(&self, body: &[u8]) -> String {
        sign(&self.shared_secret, body)
    }

    /// Serialises a document once and signs exactly those bytes.
    pub fn encode(&self, doc: &Value) -> (Vec<u8>, String) {
        // A `Value` has string keys only: serialising it cannot fail.
        let body = serde_json::to_vec(doc).expect("serialise document");
        let signature = self.sign(&body);
        (body, signature)
    }

    /// Sends `doc` to `action`, signed, with the client's content type.
    pub async fn send(&self, action: Action, doc: &Value) -> Response {
        let (body, signature) = self.encode(doc);
        self.post_raw(action, body, Some(signature), &self.content_type)
            .await
    }

    /// Sends exactly `body` with `signature` (or no signature header) and `content_type`:
    /// for negative tests.
    pub async fn post_raw(
        &self,
        action: Action,
        body: Vec<u8>,
        signature: Option<String>,
        content_type: &str,
    ) -> Response {
        let mut request = self
            .http
            .post(self.url(action))
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        if let Some(signature) = signature {
            request = request.header(SIGNATURE_HEADER, signature);
        }
        let started = Instant::now();
        let reply = match request.send().await {
            Ok(reply) => reply,
            Err(e) => return transport_error(e, started),
        };
        let status = reply.status().as_u16();
        match reply.bytes().await {
            Ok(raw) => Response {
                status,
                body: serde_json::from_slice(&raw).unwrap_or(Value::Null),
                raw: raw.to_vec(),
                elapsed: started.elapsed(),
            },
            Err(e) => transport_error(e, started),
        }
    }
}

fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .build()
        // Only a TLS backend that cannot initialise fails here: nothing a caller could do.
        .expect("reqwest client")
}

/// A call that got no answer, as CL records it (status 0), with the whole error chain
/// (reqwest's own text leaves out the cause, e.g. "connection refused").
fn transport_error(e: reqwest::Error, started: Instant) -> Response {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    Response {
        status: 0,
        body: Value::Null,
        raw: text.into_bytes(),
        elapsed: started.elapsed(),
    }
}
