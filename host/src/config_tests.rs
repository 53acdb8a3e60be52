//! The configuration file: parsing, defaults, validation and `${VAR}` expansion.

use super::*;

const BASE: &str = r#"
[server]
listen = "127.0.0.1:8080"
[store]
url = "sqlite://psp-gateway.db"
[plugins]
dir = "plugins/dist"
[[gateways]]
id = "sandbox"
plugin = "sandbox"
shared_secret = "${CL_SHARED_SECRET}"
webhook_endpoint_url = "http://127.0.0.1:9000/webhook"
allowed_hosts = ["api.stripe.com", "http://127.0.0.1:12111"]
[gateways.settings]
webhook_secret = "whsec_${SUFFIX}"
"#;

fn env(name: &str) -> Option<String> {
    match name {
        "CL_SHARED_SECRET" => Some("s3cr3t".into()),
        "SUFFIX" => Some("abc".into()),
        _ => None,
    }
}

fn parse(raw: &str) -> Result<Config, ConfigError> {
    Config::from_toml(raw, Path::new("config.toml"), Path::new("/etc/psp"), &env)
}

#[test]
fn parses_and_interpolates() {
    let c = parse(BASE).unwrap();
    let gw = c.gateway("sandbox").unwrap();
    assert_eq!(gw.shared_secret.as_ref().unwrap().expose(), "s3cr3t");
    assert_eq!(gw.settings["webhook_secret"].expose(), "whsec_abc");
    assert_eq!(c.plugins.dir, PathBuf::from("/etc/psp/plugins/dist"));
    assert_eq!(
        c.plugins.cache_dir.as_deref(),
        Some(Path::new("/etc/psp/plugins/dist/.cache"))
    );
    assert_eq!(c.store.url.expose(), "sqlite:///etc/psp/psp-gateway.db");
    assert_eq!(gw.call_timeout(&c.plugins), Duration::from_secs(10));
}

#[test]
fn unknown_key_is_named() {
    let raw = BASE.replace("[plugins]", "[plugins]\nwatsh = true");
    let err = parse(&raw).unwrap_err().to_string();
    assert!(err.contains("unknown field `watsh`"), "{err}");
}

#[test]
fn missing_required_key_is_named() {
    let raw = BASE.replace("plugin = \"sandbox\"\n", "");
    let err = parse(&raw).unwrap_err().to_string();
    assert!(err.contains("missing field `plugin`"), "{err}");
}

#[test]
fn missing_variable_names_key_and_variable() {
    let raw = BASE.replace("${SUFFIX}", "${NOT_SET_ANYWHERE}");
    let err = parse(&raw).unwrap_err().to_string();
    assert!(err.contains("gateways[0].settings.webhook_secret"), "{err}");
    assert!(err.contains("NOT_SET_ANYWHERE"), "{err}");
}

#[test]
fn dollar_escape_and_lone_dollar() {
    let raw = BASE.replace("whsec_${SUFFIX}", "a$$${b}c$d");
    let c = parse(&raw).unwrap();
    assert_eq!(
        c.gateway("sandbox").unwrap().settings["webhook_secret"].expose(),
        "a$${b}c$d"
    );
}

#[test]
fn duplicate_gateway_and_bad_host_pattern() {
    let dup = format!("{BASE}\n[[gateways]]\nid = \"sandbox\"\nplugin = \"x\"\n");
    assert!(parse(&dup).unwrap_err().to_string().contains("used twice"));
    let bad = BASE.replace("api.stripe.com", "ftp://x");
    let err = parse(&bad).unwrap_err().to_string();
    assert!(err.contains("gateways[0].allowed_hosts[0]"), "{err}");
}

#[test]
fn pgm_front_is_closed_unless_configured() {
    let gw = |extra: &str| {
        let raw = BASE.replace(
            "plugin = \"sandbox\"\n",
            &format!("plugin = \"sandbox\"\n{extra}\n"),
        );
        parse(&raw).map(|c| c.gateways[0].clone())
    };
    assert_eq!(gw("").unwrap().pgm_access(), PgmAccess::Closed);
    assert_eq!(
        gw("pgm_auth = \"none\"").unwrap().pgm_access(),
        PgmAccess::Open
    );
    let locked = gw("pgm_auth_token = \"t\"").unwrap();
    assert!(matches!(locked.pgm_access(), PgmAccess::Bearer(_)));
    let err = gw("pgm_auth = \"nobody\"").unwrap_err().to_string();
    assert!(
        err.contains("gateways[0].pgm_auth") && err.contains("nobody"),
        "{err}"
    );
    let err = gw("pgm_auth = \"none\"\npgm_auth_token = \"t\"")
        .unwrap_err()
        .to_string();
    assert!(err.contains("contradicts"), "{err}");
}

#[test]
fn secrets_do_not_debug_print() {
    let c = parse(BASE).unwrap();
    let dump = format!("{c:?}");
    assert!(
        !dump.contains("s3cr3t") && !dump.contains("whsec_abc"),
        "{dump}"
    );
}

#[test]
fn every_missing_variable_and_every_invalid_value_is_reported_at_once() {
    let raw = BASE
        .replace("${CL_SHARED_SECRET}", "${FIRST_UNSET}")
        .replace("whsec_${SUFFIX}", "${SECOND_UNSET}-${THIRD_UNSET}");
    let err = parse(&raw).unwrap_err();
    let found: Vec<String> = err.problems().iter().map(|p| p.to_string()).collect();
    assert_eq!(found.len(), 3, "{found:?}");
    for var in ["FIRST_UNSET", "SECOND_UNSET", "THIRD_UNSET"] {
        assert!(found.iter().any(|p| p.contains(var)), "{var}: {found:?}");
    }

    let raw = BASE.replace(
        "[plugins]\ndir = \"plugins/dist\"",
        "[plugins]\ndir = \"plugins/dist\"\nmax_instances = 0\nmemory_limit_mb = 0",
    ) + "async_after_ms = 0\n";
    let raw = raw.replace(
        "[gateways.settings]\nwebhook_secret = \"whsec_${SUFFIX}\"\nasync_after_ms = 0\n",
        "async_after_ms = 0\n[gateways.settings]\nwebhook_secret = \"whsec_${SUFFIX}\"\n",
    );
    let err = parse(&raw).unwrap_err();
    let text = err.to_string();
    for key in [
        "plugins.memory_limit_mb",
        "plugins.max_instances",
        "gateways[0].async_after_ms",
    ] {
        assert!(text.contains(key), "{key}: {text}");
    }
    assert_eq!(err.problems().len(), 3, "{text}");
}

#[test]
fn the_listen_address_can_come_from_the_environment() {
    let raw = BASE.replace("listen = \"127.0.0.1:8080\"", "listen = \"${PSP_LISTEN}\"");
    let env = |name: &str| match name {
        "PSP_LISTEN" => Some("10.0.0.11:8081".to_owned()),
        other => env(other),
    };
    let c = Config::from_toml(&raw, Path::new("config.toml"), Path::new("/etc/psp"), &env).unwrap();
    assert_eq!(c.server.listen.to_string(), "10.0.0.11:8081");
}
