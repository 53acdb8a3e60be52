//! The callback listener: a small HTTP server on 127.0.0.1 standing in for Commerce Layer's
//! `webhook_endpoint_url` (or PGM's callback URL), bound before the first call so a fast
//! callback is not refused. Every POST, whatever its path, is recorded; a Commerce Layer
//! callback's `X-CommerceLayer-Signature` is verified over the exact bytes received and
//! answered 200 when valid, 401 when not, as Commerce Layer would.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::cl::{SIGNATURE_HEADER, verify};

/// One POST the listener got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    /// The body parsed as JSON, `Null` when it is not JSON.
    pub json: Value,
    pub raw: Vec<u8>,
    /// `Some(valid)` when a secret was given to verify with; `None` otherwise (PGM
    /// callbacks carry no signature).
    pub signature_valid: Option<bool>,
}

#[derive(Clone)]
struct Shared {
    secret: Option<String>,
    sink: mpsc::UnboundedSender<Received>,
}

/// A running listener; dropping it stops the server.
pub struct Listener {
    addr: SocketAddr,
    received: mpsc::UnboundedReceiver<Received>,
    task: tokio::task::JoinHandle<()>,
}

impl Listener {
    /// Listens on `port` of 127.0.0.1 (0: any free port), verifying Commerce Layer
    /// signatures with `secret` when given.
    pub async fn bind(port: u16, secret: Option<&str>) -> std::io::Result<Listener> {
        let socket = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = socket.local_addr()?;
        let (sink, received) = mpsc::unbounded_channel();
        let shared = Shared {
            secret: secret.map(str::to_owned),
            sink,
        };
        let app = Router::new().fallback(receive).with_state(shared);
        let task = tokio::spawn(async move {
            let _ = axum::serve(socket, app).await;
        });
        Ok(Listener {
            addr,
            received,
            task,
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The URL to point the gateway's webhook endpoint at.
    pub fn url(&self) -> String {
        format!("http://{}/callback", self.addr)
    }

    /// The next POST received within `wait`, `None` when none came.
    pub async fn next(&mut self, wait: Duration) -> Option<Received> {
        tokio::time::timeout(wait, self.received.recv())
            .await
            .ok()
            .flatten()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive(
    State(shared): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let signature_valid = shared.secret.as_deref().map(|secret| {
        headers
            .get(SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|signature| verify(secret, &body, signature))
    });
    let received = Received {
        path: uri.path().to_owned(),
        json: serde_json::from_slice(&body).unwrap_or(Value::Null),
        raw: body.to_vec(),
        signature_valid,
    };
    // The command may have stopped waiting: a late callback is simply not printed.
    let _ = shared.sink.send(received);
    if signature_valid == Some(false) {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    }
}
