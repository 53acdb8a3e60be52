//! Signed-callback receiver: a small HTTP server on 127.0.0.1 standing in for Commerce
//! Layer's `webhook_endpoint_url`, where the gateway POSTs the outcomes of asynchronous
//! (202) payments. It verifies `X-CommerceLayer-Signature` over the exact bytes received,
//! records every callback (valid or not) and answers the way CL would: 200 to a valid one,
//! 401 to a bad signature. Tests can make it answer another status and headers (to exercise
//! retries, dead letters and `Retry-After`), verify with another secret (a rotation), stop
//! it (so connections are refused) and bring it back on the same port.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::post;
use serde_json::Value;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::cl::{SIGNATURE_HEADER, verify};

/// The path the receiver serves.
const PATH: &str = "/webhook";

/// One POST the receiver got.
#[derive(Debug, Clone)]
pub struct Callback {
    /// The body exactly as received.
    pub raw: Vec<u8>,
    /// The body parsed as JSON, `Null` when it is not JSON.
    pub json: Value,
    /// Whether `X-CommerceLayer-Signature` was present and valid for `raw`.
    pub signature_valid: bool,
    /// The signature header as received.
    pub signature: Option<String>,
    pub content_type: Option<String>,
    pub received_at: Instant,
    /// The status the receiver answered.
    pub answered: u16,
}

/// State shared by the handler and the [`Receiver`] handle; it outlives restarts.
struct Shared {
    secret: Mutex<String>,
    callbacks: Mutex<Vec<Callback>>,
    /// Status answered to validly signed callbacks.
    status: AtomicU16,
    /// Headers added to that answer (e.g. `Retry-After`).
    reply_headers: Mutex<Vec<(String, String)>>,
    /// Bumped on every callback, so waiters wake without polling.
    arrivals: watch::Sender<usize>,
}

/// A running receiver. Dropping it stops the server.
pub struct Receiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: Option<Server>,
}

struct Server {
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Receiver {
    /// Starts on a free port of 127.0.0.1, verifying with `shared_secret`.
    pub async fn start(shared_secret: &str) -> Receiver {
        Receiver::start_on(0, shared_secret).await
    }

    /// Starts on `port` of 127.0.0.1 (0: any free port).
    pub async fn start_on(port: u16, shared_secret: &str) -> Receiver {
        let shared = Arc::new(Shared {
            secret: Mutex::new(shared_secret.to_owned()),
            callbacks: Mutex::new(Vec::new()),
            status: AtomicU16::new(200),
            reply_headers: Mutex::new(Vec::new()),
            arrivals: watch::channel(0).0,
        });
        let (addr, server) = serve(port, shared.clone()).await;
        Receiver {
            addr,
            shared,
            server: Some(server),
        }
    }

    /// The webhook URL to configure as the gateway's `webhook_endpoint_url`.
    pub fn url(&self) -> String {
        format!("http://{}{PATH}", self.addr)
    }

    /// The port it listens on (kept across [`Receiver::restart`]).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Answers `status` to validly signed callbacks from now on (e.g. 500 to test retries).
    pub fn set_status(&self, status: u16) {
        self.set_reply(status, &[]);
    }

    /// Answers `status` with `headers` to validly signed callbacks from now on (e.g. 429
    /// with `Retry-After`).
    pub fn set_reply(&self, status: u16, headers: &[(&str, &str)]) {
        *self.shared.reply_headers.lock().expect("reply headers") = headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.shared.status.store(status, Ordering::SeqCst);
    }

    /// Verifies with `shared_secret` from now on (Commerce Layer after a rotation).
    pub fn set_secret(&self, shared_secret: &str) {
        *self.shared.secret.lock().expect("secret") = shared_secret.to_owned();
    }

    /// Stops listening: new connections are refused and open ones are closed once their
    /// in-flight request is answered. Recorded callbacks stay readable.
    pub async fn stop(&mut self) {
        let Some(server) = self.server.take() else {
            return;
        };
        let _ = server.shutdown.send(());
        let mut task = server.task;
        // Graceful shutdown waits for open connections; a peer that holds one open must
        // not hang the test, so give up on waiting after a moment.
        if tokio::time::timeout(Duration::from_secs(2), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }

    /// Listens again on the same port, keeping the callbacks recorded so far.
    pub async fn restart(&mut self) {
        self.stop().await;
        let (addr, server) = serve(self.addr.port(), self.shared.clone()).await;
        self.addr = addr;
        self.server = Some(server);
    }

    /// Every callback so far, in arrival order.
    pub fn callbacks(&self) -> Vec<Callback> {
        self.shared.callbacks.lock().expect("callbacks").clone()
    }

    /// The first callback (past or future) matching `pred`, or `None` after `timeout`.
    pub async fn wait_for(
        &self,
        pred: impl Fn(&Callback) -> bool,
        timeout: Duration,
    ) -> Option<Callback> {
        let mut arrivals = self.shared.arrivals.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Subscribing before looking means no arrival slips between the two.
            arrivals.mark_unchanged();
            if let Some(found) = self.callbacks().into_iter().find(|c| pred(c)) {
                return Some(found);
            }
            match tokio::time::timeout_at(deadline, arrivals.changed()).await {
                Ok(Ok(())) => continue,
                _ => return None,
            }
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            let _ = server.shutdown.send(());
            server.task.abort();
        }
    }
}

/// Binds 127.0.0.1:`port` and serves the webhook route until told to shut down.
async fn serve(port: u16, shared: Arc<Shared>) -> (SocketAddr, Server) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap_or_else(|e| panic!("bind receiver on 127.0.0.1:{port}: {e}"));
    let addr = listener.local_addr().expect("receiver address");
    let app = Router::new().route(PATH, post(receive)).with_state(shared);
    let (shutdown, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        // With graceful shutdown axum drops the listener as soon as the signal fires.
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
    });
    (addr, Server { shutdown, task })
}

async fn receive(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, HeaderMap) {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let signature = text(SIGNATURE_HEADER);
    let secret = shared.secret.lock().expect("secret").clone();
    let signature_valid = signature
        .as_deref()
        .is_some_and(|s| verify(&secret, &body, s));
    let (answered, reply_headers) = if signature_valid {
        (
            shared.status.load(Ordering::SeqCst),
            shared.reply_headers.lock().expect("reply headers").clone(),
        )
    } else {
        (401, Vec::new())
    };
    let callback = Callback {
        json: serde_json::from_slice(&body).unwrap_or(Value::Null),
        raw: body.to_vec(),
        signature_valid,
        signature,
        content_type: text(header::CONTENT_TYPE.as_str()),
        received_at: Instant::now(),
        answered,
    };
    shared.callbacks.lock().expect("callbacks").push(callback);
    shared.arrivals.send_modify(|n| *n += 1);
    let mut reply = HeaderMap::new();
    for (name, value) in reply_headers {
        reply.insert(
            axum::http::HeaderName::try_from(name).expect("header name"),
            axum::http::HeaderValue::try_from(value).expect("header value"),
        );
    }
    (
        StatusCode::from_u16(answered).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        reply,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cl::sign;

    const SECRET: &str = "1c0994cc4e996e8c6ee56a2198f66f3c";

    async fn post(url: &str, body: &[u8], signature: Option<&str>) -> Result<u16, reqwest::Error> {
        let mut req = reqwest::Client::new()
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(s) = signature {
            req = req.header(SIGNATURE_HEADER, s);
        }
        Ok(req.send().await?.status().as_u16())
    }

    #[tokio::test]
    async fn verifies_records_and_answers() {
        let receiver = Receiver::start(SECRET).await;
        let body =
            br#"{"success":true,"data":{"action_id":"tr_abc123","message":"Payment authorized"}}"#;

        let good = sign(SECRET, body);
        assert_eq!(post(&receiver.url(), body, Some(&good)).await.unwrap(), 200);
        let bad = sign("wrong secret", body);
        assert_eq!(post(&receiver.url(), body, Some(&bad)).await.unwrap(), 401);
        assert_eq!(post(&receiver.url(), body, None).await.unwrap(), 401);

        let seen = receiver.callbacks();
        assert_eq!(seen.len(), 3);
        assert!(seen[0].signature_valid);
        assert_eq!(seen[0].raw, body);
        assert_eq!(seen[0].json["data"]["action_id"], "tr_abc123");
        assert_eq!(seen[0].answered, 200);
        assert!(!seen[1].signature_valid && !seen[2].signature_valid);
        assert_eq!(seen[1].answered, 401);

        // A valid signature over different bytes (re-serialised JSON) is not valid.
        let spaced = br#"{"success": true, "data": {"action_id": "tr_abc123", "message": "Payment authorized"}}"#;
        assert_eq!(
            post(&receiver.url(), spaced, Some(&good)).await.unwrap(),
            401
        );

        receiver.set_status(500);
        assert_eq!(post(&receiver.url(), body, Some(&good)).await.unwrap(), 500);
        let last = receiver.callbacks().pop().unwrap();
        assert!(last.signature_valid);
        assert_eq!(last.answered, 500);
    }

    #[tokio::test]
    async fn wait_for_sees_past_and_future_callbacks() {
        let receiver = Receiver::start(SECRET).await;
        let url = receiver.url();
        let later = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let body = br#"{"success":true,"data":{"action_id":"late"}}"#;
            post(&url, body, Some(&sign(SECRET, body))).await.unwrap()
        });
        let found = receiver
            .wait_for(
                |c| c.json["data"]["action_id"] == "late",
                Duration::from_secs(5),
            )
            .await
            .expect("callback arrives");
        assert!(found.signature_valid);
        assert_eq!(later.await.unwrap(), 200);
        // Already there: found at once.
        assert!(
            receiver
                .wait_for(|c| c.signature_valid, Duration::ZERO)
                .await
                .is_some()
        );
        assert!(
            receiver
                .wait_for(
                    |c| c.json["data"]["action_id"] == "never",
                    Duration::from_millis(50)
                )
                .await
                .is_none()
        );
    }

    #[tokio::test]
    async fn stop_refuses_connections_and_restart_keeps_the_port() {
        let mut receiver = Receiver::start(SECRET).await;
        let (url, port) = (receiver.url(), receiver.port());
        let body = br#"{"success":true,"data":{"action_id":"a"}}"#;
        let signature = sign(SECRET, body);
        assert_eq!(post(&url, body, Some(&signature)).await.unwrap(), 200);

        receiver.stop().await;
        let refused = post(&url, body, Some(&signature)).await.unwrap_err();
        assert!(refused.is_connect(), "{refused}");

        receiver.restart().await;
        assert_eq!(receiver.port(), port);
        assert_eq!(post(&url, body, Some(&signature)).await.unwrap(), 200);
        assert_eq!(receiver.callbacks().len(), 2);

        // A fresh receiver can take a stopped one's port too.
        receiver.stop().await;
        let again = Receiver::start_on(port, SECRET).await;
        assert_eq!(again.url(), url);
        assert_eq!(post(&url, body, Some(&signature)).await.unwrap(), 200);
        assert_eq!(again.callbacks().len(), 1);
    }
}
