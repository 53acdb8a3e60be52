//! `psp-gateway check` accepts a good config and rejects, with a message naming the key:
//! an unknown key, a missing `${VAR}`, a gateway naming a plugin that does not exist, and a
//! missing setting the plugin declares as required.

use std::process::Command;

use psp_gateway_e2e::{Workspace, gateway_binary};

const GOOD: &str = r#"
[plugins]
dir = "plugins"
[[gateways]]
id = "sandbox"
plugin = "sandbox"
shared_secret = "${CL_SHARED_SECRET}"
[gateways.settings]
webhook_secret = "${SANDBOX_WEBHOOK_SECRET}"
"#;

/// Runs `check` on a config; returns (success, stderr + stdout).
fn check(ws: &Workspace, body: &str) -> (bool, String) {
    let path = ws.write_config(body);
    let out = Command::new(gateway_binary())
        .args(["check", "--config"])
        .arg(&path)
        .env("CL_SHARED_SECRET", "x")
        .env("SANDBOX_WEBHOOK_SECRET", "y")
        .env_remove("NOT_SET_ANYWHERE")
        .env_remove("NOT_SET_EITHER")
        .output()
        .expect("run check");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    (out.status.success(), text)
}

#[test]
fn check_accepts_good_and_names_what_is_wrong() {
    let ws = Workspace::new();
    ws.install("sandbox", "sandbox");

    let (ok, text) = check(&ws, GOOD);
    assert!(ok, "{text}");
    assert!(
        text.contains("ok (1 gateway(s), 1 plugin(s) loaded)"),
        "{text}"
    );

    let (ok, text) = check(&ws, &GOOD.replace("[plugins]", "[plugins]\nwatsh = true"));
    assert!(!ok);
    assert!(text.contains("unknown field `watsh`"), "{text}");

    let (ok, text) = check(
        &ws,
        &GOOD.replace("SANDBOX_WEBHOOK_SECRET", "NOT_SET_ANYWHERE"),
    );
    assert!(!ok);
    assert!(
        text.contains("gateways[0].settings.webhook_secret"),
        "{text}"
    );
    assert!(text.contains("`NOT_SET_ANYWHERE` is not set"), "{text}");

    // Every missing variable at once, one `error:` line each.
    let (ok, text) = check(
        &ws,
        &GOOD
            .replace("SANDBOX_WEBHOOK_SECRET", "NOT_SET_ANYWHERE")
            .replace("CL_SHARED_SECRET", "NOT_SET_EITHER"),
    );
    assert!(!ok);
    assert!(text.contains("`NOT_SET_ANYWHERE` is not set"), "{text}");
    assert!(text.contains("`NOT_SET_EITHER` is not set"), "{text}");
    assert_eq!(text.matches("error: ").count(), 2, "{text}");

    let (ok, text) = check(
        &ws,
        &GOOD.replace("plugin = \"sandbox\"", "plugin = \"stripe\""),
    );
    assert!(!ok);
    assert!(text.contains("gateways[0].plugin"), "{text}");
    assert!(text.contains("stripe.wasm does not exist"), "{text}");

    let no_setting = GOOD.replace("webhook_secret = \"${SANDBOX_WEBHOOK_SECRET}\"", "");
    let (ok, text) = check(&ws, &no_setting);
    assert!(!ok);
    assert!(
        text.contains("gateways[0].settings.webhook_secret"),
        "{text}"
    );
    assert!(text.contains("requires setting `webhook_secret`"), "{text}");

    let typo = GOOD.replace("webhook_secret =", "webhook_secert =");
    let (ok, text) = check(&ws, &typo);
    assert!(!ok);
    assert!(text.contains("has no setting `webhook_secert`"), "{text}");

    let (ok, text) = check(&ws, &GOOD.replace("plugin = \"sandbox\"\n", ""));
    assert!(!ok);
    assert!(text.contains("missing field `plugin`"), "{text}");
}
