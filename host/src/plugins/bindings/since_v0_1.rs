//! Contract 0.1 (`plugin-sdk/wit/0.1`, frozen): its bindings, its imports served by the
//! latest ones, and the conversion of a call to its shape and of its answers to the
//! latest's. What 0.1 cannot say is filled in plainly: an approved 0.1 outcome's token is
//! its PSP reference (0.1 plugins answered the PSP's id), a capture loses its final flag
//! and sequence, and what 0.1 has no operation for (`complete`, `sync` without a token)
//! is unsupported.

use serde::Serialize;
use serde::de::DeserializeOwned;
use wasmtime::Store;
use wasmtime::component::Instance;

use super::types as latest;
use crate::plugins::runtime::{Call, Reply, export};
use crate::plugins::state::PluginState;

wasmtime::component::bindgen!({
    world: "plugin",
    path: "../plugin-sdk/wit/0.1",
    imports: { default: async },
    exports: { default: async },
    // Calls stored by a host that spoke only 0.1 are read back in this shape.
    additional_derives: [serde::Serialize, serde::Deserialize],
});

use psp::plugin::{http, log, settings, types};

pub const CONTRACT_VERSION: &str = "0.1.0";
pub const ADAPTER_EXPORT: &str = "psp:plugin/adapter@0.1.0";

/// Runs `call` on a 0.1 instance.
pub(crate) async fn invoke(
    instance: &Instance,
    store: &mut Store<PluginState>,
    call: Call,
) -> wasmtime::Result<Reply> {
    let name = call.name();
    let unsupported = |what: &str| {
        Reply::Outcome(Err(latest::Failure::Unsupported(format!(
            "{what}: the plugin was built for contract 0.1"
        ))))
    };
    let outcome = |r: Result<types::Outcome, types::Failure>| {
        Reply::Outcome(r.map(outcome_up).map_err(failure_up))
    };
    Ok(match call {
        Call::Info => {
            let plugin = Plugin::new(&mut *store, instance)?;
            let info = plugin.psp_plugin_adapter().call_info(&mut *store).await?;
            Reply::Info(recast(&info)?)
        }
        Call::Authorize(r) | Call::Sale(r) => {
            let r: types::AuthorizeRequest = recast(&r)?;
            outcome(export(instance, store, ADAPTER_EXPORT, name, (&r,)).await?)
        }
        Call::Capture(r) => {
            let r: types::FollowUpRequest = recast(&r)?;
            outcome(export(instance, store, ADAPTER_EXPORT, name, (&r,)).await?)
        }
        Call::Void(r) | Call::Refund(r) => {
            let r: types::FollowUpRequest = recast(&r)?;
            outcome(export(instance, store, ADAPTER_EXPORT, name, (&r,)).await?)
        }
        Call::Tokenize(r) => {
            let r: types::TokenizeRequest = recast(&r)?;
            let reply: Result<types::Tokenized, types::Failure> =
                export(instance, store, ADAPTER_EXPORT, name, (&r,)).await?;
            Reply::Tokenized(
                reply
                    .map(|t| latest::Tokenized {
                        customer_token: t.customer_token,
                        payment_source_token: t.payment_source_token,
                    })
                    .map_err(failure_up),
            )
        }
        Call::Sync(r) => {
            let (Some(token), Ok(operation)) = (r.transaction_token, recast(&r.operation)) else {
                return Ok(unsupported("sync without a transaction token"));
            };
            let r = types::SyncRequest {
                operation,
                transaction_token: token,
                psp_reference: r.psp_reference,
                amount: types::Money {
                    amount_cents: r.amount.amount_cents,
                    currency: r.amount.currency,
                },
            };
            outcome(export(instance, store, ADAPTER_EXPORT, name, (&r,)).await?)
        }
        Call::Complete(_) => unsupported("complete"),
        Call::HandleWebhook(r) => {
            let r: types::WebhookRequest = recast(&r)?;
            let reply: Result<types::WebhookReply, types::Failure> =
                export(instance, store, ADAPTER_EXPORT, name, (&r,)).await?;
            Reply::Webhook(reply.map(webhook_up).map_err(failure_up))
        }
    })
}

/// One contract's record as the other's, through their shared field names: 0.1's records
/// are 0.2's without the fields 0.2 added, which serde drops.
fn recast<A: Serialize, B: DeserializeOwned>(value: &A) -> wasmtime::Result<B> {
    up(value).map_err(|e| wasmtime::format_err!("contract 0.1 conversion: {e}"))
}

/// `recast` for stored calls, whose errors are serde's.
fn up<A: Serialize, B: DeserializeOwned>(value: &A) -> Result<B, serde_json::Error> {
    serde_json::to_value(value).and_then(serde_json::from_value)
}

fn pairs_up(pairs: Vec<types::Pair>) -> Vec<latest::Pair> {
    pairs
        .into_iter()
        .map(|p| latest::Pair {
            key: p.key,
            value: p.value,
        })
        .collect()
}

fn outcome_up(o: types::Outcome) -> latest::Outcome {
    match o {
        types::Outcome::Approved(a) => latest::Outcome::Approved(latest::Approved {
            psp_reference: a.transaction_token.clone(),
            transaction_token: a.transaction_token,
            amount_cents: a.amount_cents,
            messages: a.messages,
            metadata: pairs_up(a.metadata),
        }),
        types::Outcome::Pending(p) => latest::Outcome::Pending(latest::Pending {
            transaction_token: p.transaction_token,
            amount_cents: p.amount_cents,
            psp_reference: p.psp_reference,
            metadata: pairs_up(p.metadata),
        }),
        types::Outcome::Declined(d) => latest::Outcome::Declined(latest::Declined {
            code: d.code,
            message: d.message,
            psp_reference: d.transaction_token.clone(),
            transaction_token: d.transaction_token,
        }),
    }
}

fn failure_up(f: types::Failure) -> latest::Failure {
    use latest::Failure as F;
    match f {
        types::Failure::Unsupported(m) => F::Unsupported(m),
        types::Failure::Unreachable(m) => F::Unreachable(m),
        types::Failure::Timeout(m) => F::Timeout(m),
        types::Failure::Misconfigured(m) => F::Misconfigured(m),
        types::Failure::BadResponse(m) => F::BadResponse(m),
        types::Failure::InvalidRequest(m) => F::InvalidRequest(m),
        types::Failure::Unauthenticated(m) => F::Unauthenticated(m),
        types::Failure::Internal(m) => F::Internal(m),
    }
}

fn webhook_up(w: types::WebhookReply) -> latest::WebhookReply {
    latest::WebhookReply {
        events: w.events.into_iter().map(event_up).collect(),
        status: w.status,
        content_type: w.content_type,
        body: w.body,
    }
}

/// A 0.1 event named the operation it reports on; 0.2 names the kind of news. A 0.1
/// amount has no currency: it is kept out rather than guessed.
fn event_up(e: types::PspEvent) -> latest::PspEvent {
    use latest::EventKind as K;
    let kind = e.operation.and_then(|op| match op {
        types::Operation::Authorize => Some(K::Authorized),
        types::Operation::Capture | types::Operation::Sale => Some(K::Captured),
        types::Operation::Void => Some(K::Voided),
        types::Operation::Refund => Some(K::Refunded),
        types::Operation::Tokenize | types::Operation::Sync | types::Operation::HandleWebhook => {
            None
        }
    });
    latest::PspEvent {
        psp_reference: e.psp_reference,
        transaction_token: None,
        status: match e.status {
            types::FinalStatus::Succeeded => latest::FinalStatus::Succeeded,
            types::FinalStatus::Failed => latest::FinalStatus::Failed,
        },
        kind,
        code: e.code,
        message: e.message,
        amount: None,
    }
}

/// A call as a host that spoke only 0.1 stored it (to re-send it when its outcome is not
/// known), read back into the latest shape. A capture stored then has no sequence (0) and
/// is not final: the re-sent call is the same request under the same idempotency key.
#[derive(Debug, serde::Deserialize)]
pub(crate) enum StoredCall {
    Info,
    Authorize(types::AuthorizeRequest),
    Capture(types::FollowUpRequest),
    Void(types::FollowUpRequest),
    Refund(types::FollowUpRequest),
    Tokenize(types::TokenizeRequest),
    Sale(types::AuthorizeRequest),
    Sync(types::SyncRequest),
    HandleWebhook(types::WebhookRequest),
}

impl StoredCall {
    pub(crate) fn upgrade(self) -> Result<Call, serde_json::Error> {
        // Fields 0.2 added to shared records: line items' tax and discount (0: not sent).
        fn authorize(
            r: types::AuthorizeRequest,
        ) -> Result<latest::AuthorizeRequest, serde_json::Error> {
            let order = r.order.as_ref().map(order_up).transpose()?;
            Ok(latest::AuthorizeRequest {
                order,
                shopper: None,
                ..up(&types::AuthorizeRequest { order: None, ..r })?
            })
        }
        fn follow_up(
            r: types::FollowUpRequest,
        ) -> Result<latest::FollowUpRequest, serde_json::Error> {
            let order = r.order.as_ref().map(order_up).transpose()?;
            Ok(latest::FollowUpRequest {
                order,
                ..up(&types::FollowUpRequest { order: None, ..r })?
            })
        }
        fn order_up(o: &types::Order) -> Result<latest::Order, serde_json::Error> {
            let mut value = serde_json::to_value(o)?;
            if let Some(items) = value["line_items"].as_array_mut() {
                for item in items {
                    item["tax_amount_cents"] = 0.into();
                    item["discount_amount_cents"] = 0.into();
                }
            }
            serde_json::from_value(value)
        }
        Ok(match self {
            StoredCall::Info => Call::Info,
            StoredCall::Authorize(r) => Call::Authorize(authorize(r)?),
            StoredCall::Sale(r) => Call::Sale(authorize(r)?),
            StoredCall::Capture(r) => {
                Call::Capture(latest::CaptureRequest::of(follow_up(r)?, false, 0))
            }
            StoredCall::Void(r) => Call::Void(follow_up(r)?),
            StoredCall::Refund(r) => Call::Refund(follow_up(r)?),
            StoredCall::Tokenize(r) => {
                let order = r.order.as_ref().map(order_up).transpose()?;
                Call::Tokenize(latest::TokenizeRequest {
                    order,
                    ..up(&types::TokenizeRequest { order: None, ..r })?
                })
            }
            StoredCall::Sync(r) => Call::Sync(latest::SyncRequest {
                operation: up(&r.operation)?,
                transaction_token: Some(r.transaction_token),
                psp_reference: r.psp_reference,
                idempotency_key: String::new(),
                reference: String::new(),
                amount: up(&r.amount)?,
            }),
            StoredCall::HandleWebhook(r) => Call::HandleWebhook(up(&r)?),
        })
    }
}

impl types::Host for PluginState {}

impl http::Host for PluginState {
    async fn send(&mut self, req: http::Request) -> Result<http::Response, http::HttpError> {
        use super::psp::plugin::http as now;
        let method = match req.method {
            http::Method::Get => now::Method::Get,
            http::Method::Post => now::Method::Post,
            http::Method::Put => now::Method::Put,
            http::Method::Patch => now::Method::Patch,
            http::Method::Delete => now::Method::Delete,
        };
        let req = now::Request {
            method,
            url: req.url,
            headers: req
                .headers
                .into_iter()
                .map(|p| latest::Pair {
                    key: p.key,
                    value: p.value,
                })
                .collect(),
            body: req.body,
            timeout_ms: req.timeout_ms,
        };
        match now::Host::send(self, req).await {
            Ok(r) => Ok(http::Response {
                status: r.status,
                headers: r
                    .headers
                    .into_iter()
                    .map(|p| types::Pair {
                        key: p.key,
                        value: p.value,
                    })
                    .collect(),
                body: r.body,
            }),
            Err(e) => Err(match e {
                now::HttpError::Denied(m) => http::HttpError::Denied(m),
                now::HttpError::InvalidUrl(m) => http::HttpError::InvalidUrl(m),
                now::HttpError::Timeout => http::HttpError::Timeout,
                now::HttpError::Connect(m) => http::HttpError::Connect(m),
                now::HttpError::TooLarge(n) => http::HttpError::TooLarge(n),
                now::HttpError::Other(m) => http::HttpError::Other(m),
            }),
        }
    }
}

impl settings::Host for PluginState {
    async fn get(&mut self, name: String) -> Option<String> {
        super::psp::plugin::settings::Host::get(self, name).await
    }
}

impl log::Host for PluginState {
    async fn write(&mut self, level: log::Level, message: String) {
        use super::psp::plugin::log::Level as L;
        let level = match level {
            log::Level::Trace => L::Trace,
            log::Level::Debug => L::Debug,
            log::Level::Info => L::Info,
            log::Level::Warn => L::Warn,
            log::Level::Error => L::Error,
        };
        super::psp::plugin::log::Host::write(self, level, message).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_stored_by_a_0_1_host_reads_back_as_the_latest() {
        // As a 0.1 host serialised a capture with an order (line items without tax).
        let stored = r#"{"Capture":{"idempotency_key":"k1","amount":{"amount_cents":500,"currency":"EUR"},
            "transaction_token":"pi_1","psp_reference":null,"reference":"cap_1",
            "order":{"id":"o1","number":null,"customer_email":null,"language_code":null,
              "country_code":null,"billing_address":null,"shipping_address":null,
              "line_items":[{"sku_code":"A","name":null,"quantity":2,"unit_amount_cents":250,
                "total_amount_cents":500,"item_type":"skus"}],"metadata":[]}}}"#;
        let call = Call::from_stored(stored).expect("readable");
        let Call::Capture(c) = call else {
            panic!("{call:?}")
        };
        assert_eq!(c.idempotency_key, "k1");
        assert_eq!(c.transaction_token, "pi_1");
        assert_eq!((c.final_capture, c.sequence), (false, 0));
        let item = &c.order.expect("order").line_items[0];
        assert_eq!((item.quantity, item.total_amount_cents), (2, 500));
        assert_eq!((item.tax_amount_cents, item.discount_amount_cents), (0, 0));

        let sync = r#"{"Sync":{"operation":"Authorize","transaction_token":"t","psp_reference":"r","amount":{"amount_cents":1,"currency":"EUR"}}}"#;
        let Call::Sync(s) = Call::from_stored(sync).expect("readable") else {
            panic!()
        };
        assert_eq!(s.transaction_token.as_deref(), Some("t"));
        assert!(Call::from_stored(r#"{"Capture":{"nonsense":1}}"#).is_err());
    }

    #[test]
    fn a_0_1_approval_names_its_token_as_the_psp_reference() {
        let up = outcome_up(types::Outcome::Approved(types::Approved {
            transaction_token: "pi_9".into(),
            amount_cents: 7,
            messages: vec![],
            metadata: vec![types::Pair {
                key: "k".into(),
                value: "v".into(),
            }],
        }));
        let latest::Outcome::Approved(a) = up else {
            panic!("{up:?}")
        };
        assert_eq!(
            (a.transaction_token.as_str(), a.psp_reference.as_str()),
            ("pi_9", "pi_9")
        );
        assert_eq!(a.metadata[0].value, "v");
        let e = event_up(types::PspEvent {
            psp_reference: "r".into(),
            status: types::FinalStatus::Failed,
            operation: Some(types::Operation::Refund),
            code: None,
            message: None,
            amount_cents: Some(5),
        });
        assert_eq!(e.kind, Some(latest::EventKind::Refunded));
        assert_eq!(e.status, latest::FinalStatus::Failed);
    }
}
