//! The shopper's way back from the PSP. With `[server] public_url`, an authorization or
//! sale tells the plugin to send the shopper back to the host
//! (`/psp/{gateway}/return/{transaction id}`) and keeps the platform's own return URLs
//! beside the transaction. When the shopper arrives, the host calls the plugin's
//! `complete` with what the return carried, records a final outcome (and its callback, for
//! a payment answered 202), and says where to send the shopper on.
//!
//! Crash points: the return changes nothing until `complete` answers with a final outcome,
//! which is recorded with its callback in one write; a crash before that leaves the
//! payment pending, and the reconciler's `sync` or a notification settles it as before. An
//! answer that is not final (still pending, a failure, a timeout) changes nothing either.

use serde::{Deserialize, Serialize};

use super::settle::recovered;
use super::*;
use crate::plugins::types::{CompleteRequest, Money, Pair, Shopper};

/// Where the platform wants the shopper back, stored with the transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformReturn {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_url: Option<String>,
}

/// What became of a shopper's return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShopperReturned {
    /// The payment's status after the return (`pending` when the PSP has not decided).
    pub status: Status,
    /// Where to send the shopper on, when the platform said.
    pub next: Option<String>,
}

/// The shopper context a plugin gets when the host routes the return through itself, and
/// the platform's own return URLs to keep (JSON), if any.
pub(super) fn route_through_host(
    public_base: &str,
    gateway: &str,
    txn_id: &str,
    shopper: Option<&Shopper>,
) -> (Shopper, Option<String>) {
    let platform = PlatformReturn {
        return_url: shopper.and_then(|s| s.return_url.clone()),
        cancel_url: shopper.and_then(|s| s.cancel_url.clone()),
    };
    let url = return_url(public_base, gateway, txn_id);
    let routed = Shopper {
        return_url: Some(url.clone()),
        // A shopper who gives up comes back the same way: the PSP says what happened.
        cancel_url: Some(url),
        ..shopper.cloned().unwrap_or(Shopper {
            return_url: None,
            cancel_url: None,
            ip_address: None,
            user_agent: None,
            accept_header: None,
        })
    };
    let kept = (platform != PlatformReturn::default())
        .then(|| serde_json::to_string(&platform).expect("return URLs serialise"));
    (routed, kept)
}

/// The host's return address for one transaction.
pub fn return_url(public_base: &str, gateway: &str, txn_id: &str) -> String {
    format!("{public_base}/psp/{gateway}/return/{txn_id}")
}

impl Payments {
    /// The shopper came back from the PSP for transaction `txn_id` of `gateway`, carrying
    /// `parameters` (query and form). `None` when no such payment of that gateway exists.
    pub async fn shopper_returned(
        &self,
        gateway: &str,
        txn_id: &str,
        parameters: Vec<Pair>,
    ) -> Result<Option<ShopperReturned>, PaymentError> {
        let store = &self.inner.store;
        let Some(txn) = store.get(txn_id).await? else {
            return Ok(None);
        };
        if txn.gateway != gateway || !matches!(txn.action, Action::Authorize | Action::Sale) {
            return Ok(None);
        }
        let status = if txn.status == Status::Pending {
            self.complete_pending(&txn, parameters).await?
        } else {
            txn.status
        };
        let platform: PlatformReturn = txn
            .shopper_return
            .as_deref()
            .and_then(|j| serde_json::from_str(j).ok())
            .unwrap_or_default();
        let next = match status {
            Status::Declined | Status::Failed => platform.cancel_url.or(platform.return_url),
            _ => platform.return_url,
        };
        Ok(Some(ShopperReturned { status, next }))
    }

    /// `complete` for a pending payment; records the outcome when it is final. Returns the
    /// payment's status afterwards.
    async fn complete_pending(
        &self,
        txn: &Transaction,
        parameters: Vec<Pair>,
    ) -> Result<Status, PaymentError> {
        let Some(operation) = settle::operation_of(txn.action) else {
            return Ok(txn.status);
        };
        let token = txn
            .psp_token
            .clone()
            .unwrap_or_else(|| txn.transaction_token.clone());
        let call = Call::Complete(CompleteRequest {
            operation,
            idempotency_key: format!("{}:complete", txn.idempotency_key),
            psp_reference: txn.psp_reference.clone().unwrap_or_else(|| token.clone()),
            transaction_token: token,
            amount: Money {
                amount_cents: txn.amount_cents as u64,
                currency: txn.currency.clone(),
            },
            return_parameters: parameters,
            details_json: None,
        });
        let reply = self.inner.plugins.call(&txn.gateway, call).await;
        if let Ok(Reply::Outcome(Err(failure))) = &reply {
            tracing::warn!(gateway = %txn.gateway, txn = %txn.id, failure = %crate::plugins::json::failure(failure), "complete on the shopper's return failed: the payment stays pending");
        }
        let Some(settled) = recovered(txn, reply, &self.inner.config.reconciler) else {
            return Ok(txn.status);
        };
        let Some(outcome) = final_outcome(&settled.result) else {
            return Ok(txn.status);
        };
        // A pending payment was answered (202, or PGM's redirect): the outcome follows as
        // a callback, as for a notification.
        let callback = self.callback(txn, &outcome);
        let status = settled.completion.status;
        let changed = self
            .record(txn, settled.completion, callback, Some(Status::Pending))
            .await?;
        if changed {
            log_result(txn, &settled.result);
            tracing::info!(gateway = %txn.gateway, action = txn.action.as_str(), txn = %txn.id, action_id = ?txn.action_id, succeeded = outcome.succeeded, "completed on the shopper's return");
            return Ok(status);
        }
        // Settled meanwhile (a notification, the reconciler): that outcome stands.
        Ok(self
            .inner
            .store
            .get(&txn.id)
            .await?
            .map_or(txn.status, |t| t.status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shopper(ret: Option<&str>, cancel: Option<&str>) -> Shopper {
        Shopper {
            return_url: ret.map(Into::into),
            cancel_url: cancel.map(Into::into),
            ip_address: Some("203.0.113.7".into()),
            user_agent: None,
            accept_header: None,
        }
    }

    #[test]
    fn the_plugin_gets_the_hosts_return_and_the_platforms_is_kept() {
        let given = shopper(
            Some("https://shop.example/ok"),
            Some("https://shop.example/ko"),
        );
        let (routed, kept) =
            route_through_host("https://pay.example.com", "gw", "txn_1", Some(&given));
        let url = "https://pay.example.com/psp/gw/return/txn_1";
        assert_eq!(routed.return_url.as_deref(), Some(url));
        assert_eq!(routed.cancel_url.as_deref(), Some(url));
        assert_eq!(routed.ip_address.as_deref(), Some("203.0.113.7"));
        let kept: PlatformReturn = serde_json::from_str(&kept.unwrap()).unwrap();
        assert_eq!(kept.return_url.as_deref(), Some("https://shop.example/ok"));
        assert_eq!(kept.cancel_url.as_deref(), Some("https://shop.example/ko"));

        // A platform that gives no return URL (Commerce Layer's external gateway): the
        // plugin still gets the host's, and nothing is kept.
        let (routed, kept) = route_through_host("https://pay.example.com", "gw", "txn_2", None);
        assert_eq!(
            routed.return_url.as_deref(),
            Some("https://pay.example.com/psp/gw/return/txn_2")
        );
        assert_eq!(kept, None);
    }
}
