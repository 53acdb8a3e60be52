//! The OpenAPI document against the real binary: `/openapi.json` is served, and
//! schemathesis (PyPI, in the venv of `scripts/setup-fakes`) generates requests for every
//! operation for a bounded time. No answer may be a server error or break the document
//! (status, content type, headers, body schema).

use std::process::Command;

use psp_gateway_e2e::{Gateway, Workspace, target_dir, venv_python};
use serde_json::Value;

const TOKEN: &str = "openapi-test-token-for-admin-and-pgm";

fn start() -> (Workspace, Gateway) {
    let ws = Workspace::new();
    ws.install("sandbox", "sandbox");
    let config = ws.write_config(&format!(
        r#"
[plugins]
dir = "plugins"
[admin]
token = "{TOKEN}"
[[gateways]]
id = "sandbox"
plugin = "sandbox"
shared_secret = "6b2e0c4a8f1d3e5a7c9b0d2f4e6a8c1b"
webhook_endpoint_url = "http://127.0.0.1:9/unused"
pgm_auth_token = "{TOKEN}"
[gateways.settings]
webhook_secret = "sbx_whsec_openapi_1a2b3c"
"#
    ));
    let gw = Gateway::start(&config, &[]);
    (ws, gw)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_document_is_served_and_names_the_fronts() {
    let (_ws, gw) = start();
    let resp = reqwest::get(gw.url("/openapi.json")).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let doc: Value = resp.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/commercelayer/{gateway}/{action}",
        "/v3/{gateway}/pay",
        "/psp/{gateway}/webhook",
        "/admin/callbacks/{id}/replay",
        "/admin",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
}

#[test]
fn schemathesis_finds_no_server_error_and_no_answer_off_the_document() {
    let (_ws, gw) = start();
    let report = target_dir().join("schemathesis");
    let _ = std::fs::remove_dir_all(&report);
    std::fs::create_dir_all(&report).unwrap();
    let schemathesis = venv_python().with_file_name("schemathesis");
    // Every operation on the configured gateway: random gateway names would only meet the
    // 404 of an unknown gateway and never reach the fronts' parsers.
    let settings = report.with_extension("toml");
    std::fs::write(&settings, "[parameters]\n\"path.gateway\" = \"sandbox\"\n").unwrap();
    let out = Command::new(&schemathesis)
        .arg("--config-file")
        .arg(&settings)
        .arg("run")
        .arg(gw.url("/openapi.json"))
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_headers_conformance,response_schema_conformance",
            "--max-examples",
            "25",
            "--max-time",
            "60",
            "--max-redirects",
            "0",
            "--request-timeout",
            "10",
            "--workers",
            "2",
            "--seed",
            "20261202",
            "--header",
            &format!("Authorization: Bearer {TOKEN}"),
            "--report",
            "junit",
            "--report-dir",
        ])
        .arg(&report)
        .env("NO_COLOR", "1")
        .output()
        .unwrap_or_else(|e| panic!("run {} (scripts/setup-fakes): {e}", schemathesis.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "schemathesis failed:\n{stdout}\n{}\ngateway logs:\n{}",
        String::from_utf8_lossy(&out.stderr),
        gw.dump_logs()
    );
    // It really exercised the API: every operation was tested.
    assert!(!stdout.contains("No operations"), "{stdout}");
    assert!(stdout.contains("passed"), "{stdout}");
}
