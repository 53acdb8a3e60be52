//! Adyen's `action` (an answer's "the shopper must act first") as the contract's shopper
//! action: a redirect Adyen describes by URL and method becomes a link or a form post, and
//! anything else (3-D Secure 2 fingerprint and challenge, QR codes, vouchers) goes whole to
//! Adyen's client SDK. Afterwards, `details_body` turns what the shopper's return (or the
//! Drop-in) produced into the `/payments/details` call that finishes the payment.

use psp_plugin_sdk::types::{CompleteRequest, Failure, Pair, ShopperAction};
use serde_json::{Map, Value, json};

pub fn shopper_action(action: &Value) -> ShopperAction {
    let kind = action["type"].as_str().unwrap_or("unknown");
    match (kind, action["url"].as_str()) {
        ("redirect", Some(url)) => {
            let post = action["method"]
                .as_str()
                .is_some_and(|m| m.eq_ignore_ascii_case("POST"));
            if post {
                let fields = action["data"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| match v {
                        Value::String(s) => Pair::new(k, s),
                        other => Pair::new(k, other.to_string()),
                    })
                    .collect();
                ShopperAction::post_form(url, fields)
            } else {
                ShopperAction::redirect(url)
            }
        }
        _ => ShopperAction::sdk(kind, action.to_string()),
    }
}

/// The return parameters Adyen's `PaymentCompletionDetails` knows (v71).
const COMPLETION_DETAILS: &[&str] = &[
    "MD",
    "PaReq",
    "PaRes",
    "authorization_token",
    "billingToken",
    "cupsecureplus.smscode",
    "facilitatorAccessToken",
    "oneTimePasscode",
    "orderID",
    "payerID",
    "payload",
    "paymentID",
    "paymentStatus",
    "redirectResult",
    "resultCode",
    "returnUrlQueryString",
    "threeDSResult",
    "threeds2.challengeResult",
    "threeds2.fingerprint",
    "vaultToken",
];

/// Builds the `/payments/details` body: the Drop-in's `state.data` as it is (its
/// `details`, `paymentData` and `authenticationData`), or else the shopper's return
/// parameters that Adyen defines (`redirectResult`, 3-D Secure 1's `MD` and `PaRes`, ...).
pub fn details_body(req: &CompleteRequest) -> Result<Value, Failure> {
    if let Some(text) = req.details_json.as_deref().filter(|t| !t.trim().is_empty()) {
        let data: Value = serde_json::from_str(text)
            .map_err(|_| Failure::InvalidRequest("details-json is not JSON".into()))?;
        let Some(details) = data.get("details").filter(|d| d.is_object()) else {
            return Err(Failure::InvalidRequest(
                "details-json has no `details` object (pass the Drop-in's state.data)".into(),
            ));
        };
        let mut body = json!({ "details": details });
        for key in ["paymentData", "authenticationData"] {
            if let Some(value) = data.get(key).filter(|v| !v.is_null()) {
                body[key] = value.clone();
            }
        }
        return Ok(body);
    }
    let details: Map<String, Value> = req
        .return_parameters
        .iter()
        .filter(|p| COMPLETION_DETAILS.contains(&p.key.as_str()) && !p.value.is_empty())
        .map(|p| (p.key.clone(), Value::String(p.value.clone())))
        .collect();
    if details.is_empty() {
        return Err(Failure::InvalidRequest(
            "the shopper's return carries none of Adyen's details (redirectResult, MD/PaRes, \
             payload, ...)"
                .into(),
        ));
    }
    Ok(json!({ "details": details }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use psp_plugin_sdk::types::{Redirect, RedirectMethod};
    use serde_json::json;

    #[test]
    fn redirects_become_links_or_form_posts_and_the_rest_goes_to_the_sdk() {
        let get = json!({"type": "redirect", "method": "GET", "url": "https://checkoutshopper-test.adyen.com/r?x=1"});
        assert_eq!(
            shopper_action(&get),
            ShopperAction::redirect("https://checkoutshopper-test.adyen.com/r?x=1")
        );
        let post = json!({"type": "redirect", "method": "POST", "url": "https://issuer.example/acs",
            "data": {"PaReq": "abc", "MD": "m1", "TermUrl": "https://shop.example/back"}});
        let ShopperAction::Redirect(Redirect {
            url,
            method: RedirectMethod::Post,
            form_fields,
        }) = shopper_action(&post)
        else {
            panic!("a form post")
        };
        assert_eq!(url, "https://issuer.example/acs");
        assert!(form_fields.contains(&Pair::new("PaReq", "abc")));
        assert_eq!(form_fields.len(), 3);
        let three_ds = json!({"type": "threeDS2", "subtype": "fingerprint", "token": "eyJ0"});
        let ShopperAction::Sdk(sdk) = shopper_action(&three_ds) else {
            panic!("an SDK action")
        };
        assert_eq!(sdk.kind, "threeDS2");
        assert_eq!(
            serde_json::from_str::<Value>(&sdk.data_json).unwrap(),
            three_ds
        );
    }
}
