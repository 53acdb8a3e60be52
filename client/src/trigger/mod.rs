//! The `psp-gateway trigger` command: one operator test call (or the few calls an action
//! needs: a capture first authorizes) against a gateway's Commerce Layer or PGM front,
//! printing each request's path and the answer (status and JSON). When an answer is
//! asynchronous (202, or PGM's `PENDING`) it waits on a local [`listener::Listener`] for
//! the callback the gateway sends once the payment settles, and prints it.

mod commerce_layer;
pub mod listener;
mod pgm;

use std::io::Write;
use std::time::Duration;

use serde_json::Value;

use listener::{Listener, Received};

/// Which protocol front to call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Front {
    /// `/commercelayer/{gateway}/{action}`, signed with the shared secret.
    CommerceLayer,
    /// `/v3/{gateway}/...`, with the secret (if any) as a bearer token.
    Pgm,
}

/// What to do. Commerce Layer: authorize, capture, void, refund, token; PGM: pay, refund,
/// status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerAction {
    Authorize,
    Capture,
    Void,
    Refund,
    Token,
    Pay,
    Status,
}

impl TriggerAction {
    pub fn name(self) -> &'static str {
        match self {
            TriggerAction::Authorize => "authorize",
            TriggerAction::Capture => "capture",
            TriggerAction::Void => "void",
            TriggerAction::Refund => "refund",
            TriggerAction::Token => "token",
            TriggerAction::Pay => "pay",
            TriggerAction::Status => "status",
        }
    }
}

/// What `trigger` was asked to do.
#[derive(Debug, Clone)]
pub struct TriggerOptions {
    /// The gateway's base URL, `http://HOST:PORT`.
    pub url: String,
    pub gateway: String,
    /// Commerce Layer's shared secret (required for that front); PGM's bearer token.
    pub secret: Option<String>,
    pub front: Front,
    pub action: TriggerAction,
    /// Amount to authorize (or pay) in cents; `None`: the sample order's total.
    pub amount_cents: Option<i64>,
    pub currency: String,
    /// The payment source token (`tok_pending` makes the sandbox answer 202).
    pub card_token: String,
    /// Where to listen for callbacks (0: a free port).
    pub callback_port: u16,
    /// How long to wait for a callback.
    pub wait: Duration,
}

/// Why a trigger failed. Every answer received was printed before.
#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    #[error("`{url}` is not an http:// or https:// URL")]
    InvalidUrl { url: String },
    #[error("cannot reach the gateway at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error(
        "the gateway refused the call ({status}): the secret does not match the gateway `{gateway}`'s"
    )]
    Unauthorized { status: u16, gateway: String },
    #[error("{step} answered {status}")]
    Failed { step: &'static str, status: u16 },
    #[error("{step}'s answer has no `{field}`")]
    Incomplete {
        step: &'static str,
        field: &'static str,
    },
    #[error("`{action}` is not an action of the {front} front (it has {allowed})")]
    WrongFront {
        action: &'static str,
        front: &'static str,
        allowed: &'static str,
    },
    #[error("the Commerce Layer front needs the shared secret (--secret-env)")]
    NoSecret,
    #[error("cannot listen for callbacks on 127.0.0.1:{port}: {source}")]
    Bind {
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "no callback for {what} within {wait:?} (is the gateway's callback URL http://127.0.0.1:{port}/...?)"
    )]
    NoCallback {
        what: String,
        wait: Duration,
        port: u16,
    },
    #[error("the callback's signature does not verify with the shared secret")]
    BadCallbackSignature,
    #[error("the callback reports a failure")]
    CallbackFailed,
    #[error("writing the output: {0}")]
    Output(#[from] std::io::Error),
}

/// Runs the trigger, printing to `out`.
pub async fn run(options: &TriggerOptions, out: &mut dyn Write) -> Result<(), TriggerError> {
    let base = options.url.trim_end_matches('/');
    if !(base.starts_with("http://") || base.starts_with("https://"))
        || reqwest::Url::parse(base).is_err()
    {
        return Err(TriggerError::InvalidUrl {
            url: options.url.clone(),
        });
    }
    let verify_with = match options.front {
        Front::CommerceLayer => Some(
            options
                .secret
                .as_deref()
                .filter(|s| !s.is_empty())
                .ok_or(TriggerError::NoSecret)?,
        ),
        Front::Pgm => None,
    };
    // Bound before the first call: a callback can arrive right after the answer.
    let listener = Listener::bind(options.callback_port, verify_with)
        .await
        .map_err(|source| TriggerError::Bind {
            port: options.callback_port,
            source,
        })?;
    let mut session = Session {
        out,
        listener,
        wait: options.wait,
        base: base.to_owned(),
    };
    match options.front {
        Front::CommerceLayer => commerce_layer::run(options, &mut session).await,
        Front::Pgm => pgm::run(options, &mut session).await,
    }
}

/// What the steps of one trigger share: the output, the listener, the base URL.
struct Session<'a> {
    out: &'a mut dyn Write,
    listener: Listener,
    wait: Duration,
    base: String,
}

impl Session<'_> {
    /// `> POST /path  (note)`.
    fn request(&mut self, method: &str, path: &str, note: &str) -> Result<(), TriggerError> {
        if note.is_empty() {
            writeln!(self.out, "> {method} {path}")?;
        } else {
            writeln!(self.out, "> {method} {path}  ({note})")?;
        }
        Ok(())
    }

    /// `< STATUS` and the JSON body, pretty, then a blank line; a call that got no answer
    /// is an error naming why.
    fn answer(&mut self, status: u16, body: &Value, raw: &[u8]) -> Result<(), TriggerError> {
        if status == 0 {
            return Err(TriggerError::Unreachable {
                url: self.base.clone(),
                reason: String::from_utf8_lossy(raw).into_owned(),
            });
        }
        writeln!(self.out, "< {status}")?;
        self.json(body, raw)?;
        self.out.flush()?;
        Ok(())
    }

    fn json(&mut self, body: &Value, raw: &[u8]) -> Result<(), TriggerError> {
        match body {
            Value::Null => writeln!(self.out, "{}", String::from_utf8_lossy(raw))?,
            json => writeln!(
                self.out,
                "{}",
                serde_json::to_string_pretty(json).unwrap_or_default()
            )?,
        }
        writeln!(self.out)?;
        Ok(())
    }

    /// Waits for the callback `matches` accepts, printing every one received; others (a
    /// previous run's, another payment's) are printed and skipped.
    async fn callback(
        &mut self,
        what: &str,
        matches: impl Fn(&Value) -> bool,
    ) -> Result<Received, TriggerError> {
        writeln!(
            self.out,
            "waiting up to {:?} for the callback of {what} on http://127.0.0.1:{}/ (the gateway's callback URL must point to this port)",
            self.wait,
            self.listener.port()
        )?;
        self.out.flush()?;
        let deadline = tokio::time::Instant::now() + self.wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(got) = self.listener.next(left).await else {
                return Err(TriggerError::NoCallback {
                    what: what.to_owned(),
                    wait: self.wait,
                    port: self.listener.port(),
                });
            };
            let signature = match got.signature_valid {
                Some(true) => "signature valid",
                Some(false) => "signature INVALID",
                None => "unsigned",
            };
            let ours = matches(&got.json);
            let note = if ours {
                ""
            } else {
                ", not this call's: skipped"
            };
            writeln!(self.out, "< callback POST {} ({signature}{note})", got.path)?;
            self.json(&got.json, &got.raw)?;
            self.out.flush()?;
            if !ours {
                continue;
            }
            if got.signature_valid == Some(false) {
                return Err(TriggerError::BadCallbackSignature);
            }
            return Ok(got);
        }
    }
}

/// Fails on a 401/403 (the secret) or any other non-2xx answer of `step`.
fn check(step: &'static str, status: u16, gateway: &str) -> Result<(), TriggerError> {
    match status {
        200..=299 => Ok(()),
        401 | 403 => Err(TriggerError::Unauthorized {
            status,
            gateway: gateway.to_owned(),
        }),
        _ => Err(TriggerError::Failed { step, status }),
    }
}
