//! `psp-gateway plugin new`, as a plugin author meets it: in a copy of the repository,
//! scaffold `acme`, run the build script and the new crate's tests and lints, and load the
//! component in the real host. No file outside `plugins/acme/` is edited for it (Cargo.lock
//! gains the crate, as cargo records any new member).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use psp_gateway_e2e::{
    Gateway, Workspace, gateway_binary, nested_command, target_dir, workspace_root,
};

/// The working tree's files (tracked, and new ones not ignored), as `git` lists them.
fn tree_files(root: &Path) -> Vec<PathBuf> {
    let out = Command::new("git")
        .args(["ls-files", "-co", "--exclude-standard", "-z"])
        .current_dir(root)
        .output()
        .expect("run git ls-files");
    assert!(out.status.success());
    out.stdout
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| PathBuf::from(String::from_utf8_lossy(p).into_owned()))
        .filter(|p| root.join(p).is_file())
        .collect()
}

/// A command in `dir` building into the suite's own target directory (so dependencies are
/// compiled once).
fn command(program: impl AsRef<std::ffi::OsStr>, dir: &Path) -> Command {
    let mut cmd = nested_command(program);
    cmd.env("CARGO_TARGET_DIR", target_dir()).current_dir(dir);
    cmd
}

fn run(mut cmd: Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what} failed:\n{text}");
    text
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scaffolded_plugin_builds_passes_its_tests_and_loads_with_no_other_edit() {
    let source = workspace_root();
    let copy = tempfile::tempdir().unwrap();
    let files = tree_files(&source);
    for file in &files {
        let to = copy.path().join(file);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(source.join(file), &to).unwrap();
    }

    let mut new = command(gateway_binary(), copy.path());
    new.args(["plugin", "new", "acme"]);
    let said = run(new, "plugin new acme");
    assert!(said.contains("plugins/acme"), "{said}");

    let built = run(
        command(copy.path().join("scripts/build-plugins"), copy.path()),
        "scripts/build-plugins",
    );
    assert!(built.contains("plugins/dist/acme.wasm"), "{built}");
    let wasm = std::fs::read(copy.path().join("plugins/dist/acme.wasm")).unwrap();
    assert_eq!(&wasm[..8], b"\0asm\x0d\0\x01\0", "a component");

    let mut test = command("cargo", copy.path());
    test.args(["test", "-p", "psp-plugin-acme"]);
    let tested = run(test, "cargo test -p psp-plugin-acme");
    assert!(tested.contains("test result: ok. 3 passed"), "{tested}");
    for target in [None, Some("wasm32-wasip2")] {
        let mut clippy = command("cargo", copy.path());
        clippy.args(["clippy", "-p", "psp-plugin-acme"]);
        match target {
            Some(t) => clippy.args(["--target", t]),
            None => clippy.arg("--all-targets"),
        };
        clippy.args(["--", "-D", "warnings"]);
        run(clippy, "cargo clippy -p psp-plugin-acme");
    }
    let listed = run(
        command(copy.path().join("scripts/plugin-crates"), copy.path()),
        "scripts/plugin-crates",
    );
    assert!(listed.contains("psp acme psp-plugin-acme"), "{listed}");

    // Nothing else was edited: every file of the copy is as it was, but the lock file.
    for file in &files {
        if file == Path::new("Cargo.lock") {
            continue;
        }
        let before = std::fs::read(source.join(file)).unwrap();
        let after = std::fs::read(copy.path().join(file)).unwrap();
        assert!(before == after, "{} was edited", file.display());
    }

    // The real host loads it.
    let ws = Workspace::new();
    std::fs::copy(
        copy.path().join("plugins/dist/acme.wasm"),
        ws.plugins().join("acme.wasm"),
    )
    .unwrap();
    let config = ws.write_config(
        "[plugins]\ndir = \"plugins\"\n[[gateways]]\nid = \"acme\"\nplugin = \"acme\"\n\
         [gateways.settings]\napi_key = \"sk_test_acme\"\n",
    );
    let gw = Gateway::start(&config, &[]);
    let loaded = gw
        .wait_for_log(Duration::from_secs(30), |l| {
            l["message"] == "plugin loaded" && l["plugin"] == "acme"
        })
        .unwrap_or_else(|| panic!("acme not loaded:\n{}", gw.dump_logs()));
    assert_eq!(loaded["version"], "0.1.0");
    let plugins: serde_json::Value = reqwest::get(gw.url("/admin/plugins"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(plugins.to_string().contains("\"acme\""), "{plugins}");
}
