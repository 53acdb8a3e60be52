//! The fuzz seeds (fuzz/seeds/<target>/) through the checks the fuzz targets run
//! (fuzz/src/lib.rs, included below), on stable and without libFuzzer, so a change to a
//! parser that makes a seed useless, or breaks a property on one, fails here and not only
//! in a fuzzing run. Each seed must also be accepted by the parser it is for: a seed the
//! parser refuses would only start the fuzzer from an error path.

use std::path::{Path, PathBuf};

use psp_gateway::config::Config;
use psp_gateway::protocol::commerce_layer::parse;
use psp_gateway::protocol::pgm;
use psp_gateway::store::Action;
use serde_json::Value;

#[path = "../../fuzz/src/lib.rs"]
mod fuzz_checks;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// `(file name, bytes)` of every seed of `target`; there must be some.
fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = fuzz_dir().join("seeds").join(target);
    let mut seeds: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    for (name, bytes) in &seeds {
        // Small seeds keep libFuzzer's default input size and its speed.
        assert!(
            bytes.len() <= 4096,
            "{target}/{name} is {} bytes",
            bytes.len()
        );
    }
    seeds
}

fn json(name: &str, bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn every_target_has_seeds() {
    let targets = std::fs::read_dir(fuzz_dir().join("fuzz_targets")).unwrap();
    let mut n = 0;
    for entry in targets {
        let path = entry.unwrap().path();
        let target = path.file_stem().unwrap().to_string_lossy().into_owned();
        seeds(&target);
        n += 1;
    }
    assert_eq!(n, 6, "a new target needs seeds and a test here");
}

#[test]
fn commerce_layer_seeds() {
    for (name, bytes) in seeds("commerce_layer") {
        fuzz_checks::commerce_layer::check(&bytes);
        // The file name starts with the action the document is for.
        let action = [
            ("authorize", Action::Authorize),
            ("capture", Action::Capture),
            ("void", Action::Void),
            ("refund", Action::Refund),
            ("token", Action::Token),
            ("sale", Action::Sale),
        ]
        .into_iter()
        .find_map(|(prefix, action)| name.starts_with(prefix).then_some(action))
        .unwrap_or_else(|| panic!("{name}: name it after its action"));
        if let Err(e) = parse::parse("gw", action, &bytes) {
            panic!("{name}: {e}");
        }
    }
}

#[test]
fn pgm_seeds() {
    for (name, bytes) in seeds("pgm") {
        fuzz_checks::pgm::check(&bytes);
        let body = pgm::parse::parse_json(&bytes).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let names_a_payment = pgm::parse::required_str(&body, "paymentId").is_ok();
        let pays = pgm::parse::amount(&body).is_ok()
            && pgm::parse::currency(&body).is_ok()
            && pgm::parse::source_token(&body).is_ok();
        assert!(
            names_a_payment || pays,
            "{name} is neither a payment nor a pay"
        );
    }
}

#[test]
fn config_seeds() {
    for (name, bytes) in seeds("config") {
        fuzz_checks::config::check(&bytes);
        let text = std::str::from_utf8(&bytes).unwrap();
        let env = |var: &str| (!var.starts_with("UNSET")).then(|| "127.0.0.1:8080".to_owned());
        let loaded = Config::from_toml(text, Path::new("c.toml"), Path::new("/c"), &env);
        // `refused*` seeds start the fuzzer on the validation errors.
        let refused = name.starts_with("refused");
        assert_eq!(loaded.is_err(), refused, "{name}: {:?}", loaded.err());
    }
}

#[test]
fn plugin_json_seeds() {
    use psp_gateway::plugins::types::{Failure, Outcome, Tokenized, WebhookReply};
    for (name, bytes) in seeds("plugin_json") {
        fuzz_checks::plugin_json::check(&bytes);
        let some_type = serde_json::from_slice::<Outcome>(&bytes).is_ok()
            || serde_json::from_slice::<Failure>(&bytes).is_ok()
            || serde_json::from_slice::<Tokenized>(&bytes).is_ok()
            || serde_json::from_slice::<WebhookReply>(&bytes).is_ok();
        assert!(some_type, "{name} is none of the plugin answers");
    }
}

#[test]
fn stripe_seeds() {
    use psp_plugin_sdk::types::Operation;
    use psp_plugin_stripe::{events_of, intent_outcome, refund_outcome};
    for (name, bytes) in seeds("stripe") {
        fuzz_checks::stripe::check(&bytes);
        let v = json(&name, &bytes);
        let understood = !events_of(&v).is_empty()
            || refund_outcome(&v, 1).is_ok()
            || Operation::ALL
                .into_iter()
                .any(|op| intent_outcome(&v, op, 1).is_ok());
        assert!(
            understood,
            "{name} is neither an event, a refund nor a PaymentIntent"
        );
    }
}

#[test]
fn adyen_seeds() {
    use psp_plugin_adyen::{modification_outcome, payment_outcome, tokenized};
    for (name, bytes) in seeds("adyen") {
        fuzz_checks::adyen::check(&bytes);
        let v = json(&name, &bytes);
        let understood = v["notificationItems"].is_array()
            || payment_outcome(&v, 1, "r").is_ok()
            || modification_outcome(&v, "P", 1).is_ok()
            || tokenized(&v, "s".into()).is_ok();
        assert!(understood, "{name} is neither a notification nor an answer");
    }
    // The signed seed verifies as sent, so the fuzzer starts past the signature check.
    let signed = std::fs::read(fuzz_dir().join("seeds/adyen/notification_signed.json")).unwrap();
    let key = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056";
    let events = psp_plugin_sdk::testing::Harness::new()
        .run(|| psp_plugin_adyen::handle_notifications(&signed, key))
        .unwrap();
    assert_eq!(events.len(), 2, "{events:?}");
}
