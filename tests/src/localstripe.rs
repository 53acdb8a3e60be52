//! localstripe (a stateful fake Stripe, installed by `scripts/setup-fakes`) run for one
//! test on a free port, killed on drop, with the few calls tests make to it directly: what
//! a browser would (card PaymentMethods) and localstripe's own configuration API.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use psp_plugin_sdk::http::Form;
use serde_json::Value;

use crate::{free_port, venv_python, workspace_root};

/// Test cards localstripe knows (see its `PaymentMethod` class).
pub const CARD_OK: &str = "4242424242424242";
/// Declined when charged (`card_declined`).
pub const CARD_DECLINED: &str = "4000000000000341";
/// Needs 3-D Secure: the PaymentIntent stops in `requires_action`.
pub const CARD_3DS: &str = "4000002760003184";
/// Needs 3-D Secure, then is declined when charged.
pub const CARD_3DS_DECLINED: &str = "4000008260003178";

/// A running localstripe.
pub struct LocalStripe {
    child: Child,
    port: u16,
    http: reqwest::Client,
    secret_key: String,
    _cwd: tempfile::TempDir,
}

impl LocalStripe {
    /// Starts localstripe and waits until it answers `secret_key` (it accepts any `sk_...`).
    pub async fn start(secret_key: &str) -> LocalStripe {
        let bin = workspace_root().join(".venv/bin/localstripe");
        assert!(
            bin.exists(),
            "run scripts/setup-fakes first (missing {})",
            bin.display()
        );
        let port = free_port();
        let cwd = tempfile::tempdir().expect("tempdir");
        let child = Command::new(venv_python())
            .arg(&bin)
            .args(["--port", &port.to_string(), "--from-scratch"])
            .current_dir(cwd.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start localstripe");
        let ls = LocalStripe {
            child,
            port,
            http: reqwest::Client::new(),
            secret_key: secret_key.to_owned(),
            _cwd: cwd,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(resp) = ls
                .http
                .get(ls.url("/v1/customers"))
                .bearer_auth(&ls.secret_key)
                .send()
                .await
                && resp.status().is_success()
            {
                return ls;
            }
            assert!(
                Instant::now() < deadline,
                "localstripe did not answer on port {port}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `http://127.0.0.1:PORT`: the plugin's `api_base` and the gateway's allowed host.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    /// A form POST with the secret key: (status, JSON body).
    pub async fn post(&self, path: &str, form: &Form) -> (u16, Value) {
        let resp = self
            .http
            .post(self.url(path))
            .bearer_auth(&self.secret_key)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form.encode())
            .send()
            .await
            .expect("localstripe POST");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// A GET with the secret key that must succeed: its JSON body.
    pub async fn get(&self, path: &str) -> Value {
        let resp = self
            .http
            .get(self.url(path))
            .bearer_auth(&self.secret_key)
            .send()
            .await
            .expect("localstripe GET");
        assert!(resp.status().is_success(), "GET {path}: {}", resp.status());
        resp.json().await.expect("JSON")
    }

    /// Creates a card PaymentMethod the way Stripe.js would from a card form (localstripe
    /// only takes the secret key on this route) and returns its `pm_...` id.
    pub async fn card(&self, number: &str) -> String {
        let mut form = Form::new();
        form.push("type", "card")
            .push("card[number]", number)
            .push("card[exp_month]", "12")
            .push("card[exp_year]", "2034")
            .push("card[cvc]", "123");
        let (status, pm) = self.post("/v1/payment_methods", &form).await;
        assert_eq!(status, 200, "{pm}");
        pm["id"].as_str().expect("pm id").to_owned()
    }

    /// Registers a webhook endpoint with localstripe's `/_config/webhooks/{id}` API.
    pub async fn register_webhook(&self, url: &str, secret: &str) {
        let mut form = Form::new();
        form.push("url", url).push("secret", secret);
        let status = self.post_keyless("/_config/webhooks/gateway", &form).await;
        assert!((200..300).contains(&status), "configure webhook: {status}");
    }

    /// The shopper completes (or fails) 3-D Secure on a PaymentIntent: what Stripe.js does
    /// with its client secret and the publishable key. Returns localstripe's status.
    pub async fn authenticate(&self, payment_intent: &str, success: bool) -> u16 {
        let pi = self
            .get(&format!("/v1/payment_intents/{payment_intent}"))
            .await;
        let secret = pi["client_secret"].as_str().expect("client secret");
        self.authenticate_with(payment_intent, secret, success)
            .await
    }

    /// As the shopper's browser does it with Stripe.js: `_authenticate` with the client
    /// secret it was handed.
    pub async fn authenticate_with(
        &self,
        payment_intent: &str,
        client_secret: &str,
        success: bool,
    ) -> u16 {
        let mut form = Form::new();
        form.push("client_secret", client_secret)
            .push("success", success.to_string())
            .push("key", "pk_test_e2e");
        self.post_keyless(
            &format!("/v1/payment_intents/{payment_intent}/_authenticate"),
            &form,
        )
        .await
    }

    /// A form POST without the secret key (routes a browser or localstripe's config use).
    async fn post_keyless(&self, path: &str, form: &Form) -> u16 {
        self.http
            .post(self.url(path))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form.encode())
            .send()
            .await
            .expect("localstripe POST")
            .status()
            .as_u16()
    }
}

impl Drop for LocalStripe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
