//! The operator commands of the binary: `sign`.

use std::io::Write;
use std::process::{Command, Stdio};

use psp_gateway_e2e::cl::sign;
use psp_gateway_e2e::gateway_binary;

fn run_sign(secret: Option<&str>, body: &[u8]) -> (bool, String, String) {
    let mut cmd = Command::new(gateway_binary());
    cmd.args(["sign", "--secret-env", "PSP_SIGN_TEST_SECRET"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match secret {
        Some(s) => cmd.env("PSP_SIGN_TEST_SECRET", s),
        None => cmd.env_remove("PSP_SIGN_TEST_SECRET"),
    };
    let mut child = cmd.spawn().expect("run sign");
    child.stdin.take().unwrap().write_all(body).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn sign_matches_the_test_suites_signature_over_the_exact_bytes() {
    let secret = "0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a";
    // A trailing newline is part of the body: it must be signed, not trimmed.
    let body = b"{\"data\":{\"id\":\"x1\",\"type\":\"external_payments\"}}\n";
    let (ok, out, err) = run_sign(Some(secret), body);
    assert!(ok, "{err}");
    assert_eq!(out.trim_end(), sign(secret, body));
    assert_ne!(out.trim_end(), sign(secret, &body[..body.len() - 1]));
    assert!(!out.contains(secret) && !err.contains(secret));
}

#[test]
fn sign_without_the_secret_names_the_variable() {
    let (ok, out, err) = run_sign(None, b"{}");
    assert!(!ok);
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("PSP_SIGN_TEST_SECRET"), "{err}");
}
