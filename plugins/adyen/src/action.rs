//! Adyen's `action` (an answer's "the shopper must act first") as the contract's shopper
//! action: a redirect Adyen describes by URL and method becomes a link or a form post, and
//! anything else (3-D Secure 2 fingerprint and challenge, QR codes, vouchers) goes whole to
//! Adyen's client SDK.

use psp_plugin_sdk::types::{Pair, ShopperAction};
use serde_json::Value;

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
