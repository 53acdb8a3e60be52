//! Test support for end-to-end tests: builds the real `psp-gateway` binary and the real
//! `.wasm` plugins (once per test process), runs the gateway on a free port with a config
//! written for the test, and records its JSON log lines.

pub mod cl;
pub mod fake_stripe;
pub mod localstripe;
pub mod receiver;

/// The throwaway PostgreSQL cluster the host's store tests use, shared from one source.
#[path = "../../host/src/store/pg_test_cluster.rs"]
pub mod pg_cluster;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_owned()
}

/// The Python interpreter of the repository's venv (`scripts/setup-fakes`), with
/// localstripe and the official `stripe` and `Adyen` packages.
pub fn venv_python() -> PathBuf {
    let python = workspace_root().join(".venv/bin/python");
    assert!(
        python.exists(),
        "run scripts/setup-fakes first (missing {})",
        python.display()
    );
    python
}

/// Prism (`@stoplight/prism-cli`), installed by `scripts/setup-fakes`.
pub fn prism_binary() -> PathBuf {
    let prism = workspace_root().join("tests/fakes/node_modules/.bin/prism");
    assert!(
        prism.exists(),
        "run scripts/setup-fakes first (missing {})",
        prism.display()
    );
    prism
}

/// A PSP's published API spec vendored in `tests/fakes/specs/` (with its licence).
pub fn psp_spec(file: &str) -> PathBuf {
    let path = workspace_root().join("tests/fakes/specs").join(file);
    assert!(path.exists(), "missing PSP spec {}", path.display());
    path
}

/// A free TCP port on 127.0.0.1 (bound then released: good enough for a test fake).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Cargo's target directory (honours `CARGO_TARGET_DIR`).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace_root().join(dir)
            }
        }
        None => workspace_root().join("target"),
    }
}

/// A command run from a test without cargo's per-test variables, which would change
/// build-script inputs (ring's, for one) and make a nested build redo work the outer
/// build already did. `CARGO_HOME` and `CARGO_TARGET_DIR` are kept.
pub fn nested_command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        let keep = matches!(key.as_ref(), "CARGO_HOME" | "CARGO_TARGET_DIR");
        if (key.starts_with("CARGO_") && !keep) || key == "OUT_DIR" {
            cmd.env_remove(key.as_ref());
        }
    }
    cmd
}

/// Builds the gateway binary (dev profile) and the plugins (wasm32-wasip2, `plugin` profile) once
/// per process, so the tests never run against stale artifacts.
pub fn ensure_built() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let run = |args: &[&str]| {
            let status = nested_command(&cargo)
                .args(args)
                .current_dir(workspace_root())
                .status()
                .expect("run cargo");
            assert!(status.success(), "cargo {args:?} failed");
        };
        run(&["build", "-p", "psp-gateway", "--bin", "psp-gateway"]);
        let mut args = vec!["build", "--profile", "plugin", "--target", "wasm32-wasip2"];
        let crates = plugin_crates();
        for c in &crates {
            args.extend(["-p", c.package.as_str()]);
        }
        run(&args);
    });
}

/// The gateway binary.
pub fn gateway_binary() -> PathBuf {
    ensure_built();
    target_dir().join("debug").join("psp-gateway")
}

/// A plugin crate of the workspace, found as `scripts/plugin-crates` finds them.
pub struct PluginCrate {
    /// Its folder's name (`sandbox`, `echo-v1`).
    pub dir: String,
    pub package: String,
}

/// Every crate under `plugins/` and `tests/fixtures/plugins/`.
pub fn plugin_crates() -> Vec<PluginCrate> {
    let mut found = Vec::new();
    for parent in ["plugins", "tests/fixtures/plugins"] {
        let Ok(entries) = std::fs::read_dir(workspace_root().join(parent)) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(manifest) = std::fs::read_to_string(entry.path().join("Cargo.toml")) else {
                continue;
            };
            let package = manifest
                .lines()
                .find_map(|l| l.strip_prefix("name = \""))
                .and_then(|rest| rest.strip_suffix('"'))
                .unwrap_or_else(|| panic!("no package name in {}", entry.path().display()));
            found.push(PluginCrate {
                dir: entry.file_name().to_string_lossy().into_owned(),
                package: package.to_owned(),
            });
        }
    }
    found
}

/// A built plugin component by its folder's name, `-` or `_` alike: `sandbox`, `stripe`,
/// `adyen`, or a fixture (`misbehave`, `echo_v1`, `echo_v2`).
pub fn plugin_wasm(name: &str) -> PathBuf {
    ensure_built();
    let wanted = name.replace('_', "-");
    let krate = plugin_crates()
        .into_iter()
        .find(|c| c.dir == wanted)
        .unwrap_or_else(|| {
            panic!("no plugin crate `{name}` under plugins/ or tests/fixtures/plugins/")
        });
    let path = target_dir()
        .join("wasm32-wasip2")
        .join("plugin")
        .join(format!("{}.wasm", krate.package.replace('-', "_")));
    assert!(path.exists(), "missing plugin build {}", path.display());
    path
}

/// Installs a plugin the way operators are told to: write a dotfile, rename into place.
pub fn deploy(plugins_dir: &Path, name: &str, bytes: &[u8]) {
    let tmp = plugins_dir.join(format!(".{name}.wasm.part"));
    std::fs::write(&tmp, bytes).expect("write plugin");
    std::fs::rename(&tmp, plugins_dir.join(format!("{name}.wasm"))).expect("rename plugin");
}

/// Hex HMAC-SHA256, as the sandbox plugin's `Sandbox-Signature` header.
pub fn hex_hmac(key: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("any key");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// A running `psp-gateway serve`, killed on drop.
pub struct Gateway {
    child: Child,
    pub addr: String,
    logs: Arc<Mutex<Vec<Value>>>,
    pub dir: PathBuf,
    config: PathBuf,
}

/// A temp directory with `plugins/` inside, for one test.
pub struct Workspace {
    pub root: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Workspace {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(root.path().join("plugins")).expect("plugins dir");
        Workspace { root }
    }

    pub fn plugins(&self) -> PathBuf {
        self.root.path().join("plugins")
    }

    /// Copies a built plugin in as `<as_name>.wasm`.
    pub fn install(&self, built: &str, as_name: &str) {
        let bytes = std::fs::read(plugin_wasm(built)).expect("read plugin");
        deploy(&self.plugins(), as_name, &bytes);
    }

    /// Writes `config.toml` (listening on a free port) and returns its path.
    pub fn write_config(&self, body: &str) -> PathBuf {
        self.write_config_with("", "sqlite://gateway.db", body)
    }

    /// `write_config` with more `[server]` keys and another store URL.
    pub fn write_config_with(&self, server: &str, store_url: &str, body: &str) -> PathBuf {
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n{server}\n[store]\nurl = \"{store_url}\"\n{body}"
        );
        let path = self.root.path().join("config.toml");
        std::fs::write(&path, text).expect("write config");
        path
    }
}

impl Default for Workspace {
    fn default() -> Self {
        Workspace::new()
    }
}

impl Gateway {
    /// Starts `serve` on a config and waits until it listens.
    pub fn start(config: &Path, env: &[(&str, &str)]) -> Gateway {
        let mut cmd = Command::new(gateway_binary());
        cmd.args(["--log-format", "json", "serve", "--config"])
            .arg(config)
            .current_dir(config.parent().expect("config dir"))
            .env("PSP_GATEWAY_LOG", "info,tower_http=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start psp-gateway");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("stdout");
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let value =
                    serde_json::from_str(&line).unwrap_or_else(|_| Value::String(line.clone()));
                sink.lock().expect("logs").push(value);
            }
        });
        let mut gateway = Gateway {
            child,
            addr: String::new(),
            logs,
            dir: config.parent().expect("config dir").to_owned(),
            config: config.to_owned(),
        };
        let listening = gateway
            .wait_for_log(Duration::from_secs(60), |l| l["message"] == "listening")
            .unwrap_or_else(|| panic!("gateway did not start; logs:\n{}", gateway.dump_logs()));
        gateway.addr = listening["addr"].as_str().expect("addr").to_owned();
        gateway
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// Every log line so far.
    pub fn logs(&self) -> Vec<Value> {
        self.logs.lock().expect("logs").clone()
    }

    pub fn dump_logs(&self) -> String {
        self.logs()
            .iter()
            .map(|l| l.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits for a log line matching `pred` (looking at past lines too).
    pub fn wait_for_log(&self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        let start = Instant::now();
        loop {
            if let Some(found) = self.logs().into_iter().find(|l| pred(l)) {
                return Some(found);
            }
            if start.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Fails naming every log line (so far) that contains one of `needles`: secrets,
    /// tokens, card numbers that must never be logged.
    pub fn assert_no_leaks(&self, needles: &[&str]) {
        let lines: Vec<String> = self.logs().iter().map(Value::to_string).collect();
        assert!(!lines.is_empty(), "no log lines were captured");
        let mut leaks = Vec::new();
        for needle in needles {
            for line in lines.iter().filter(|l| l.contains(needle)) {
                leaks.push(format!("`{needle}` in: {line}"));
            }
        }
        assert!(leaks.is_empty(), "log lines leak:\n{}", leaks.join("\n"));
    }

    /// `GET /metrics`, the Prometheus text.
    pub async fn metrics(&self) -> String {
        let resp = reqwest::get(self.url("/metrics"))
            .await
            .expect("GET /metrics");
        assert_eq!(resp.status(), 200);
        resp.text().await.expect("metrics text")
    }

    /// `psp_plugin_calls_total` of one gateway and operation, every result together.
    pub async fn plugin_calls(&self, gateway: &str, operation: &str) -> u64 {
        let prefix =
            format!("psp_plugin_calls_total{{gateway=\"{gateway}\",operation=\"{operation}\",");
        self.metrics()
            .await
            .lines()
            .filter(|l| l.starts_with(&prefix))
            .map(|l| {
                l.rsplit(' ')
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or_else(|| panic!("bad metrics line {l}"))
            })
            .sum()
    }

    /// SIGTERM, then waits up to `within` for the process to exit: its exit status (None
    /// if it was still running, then killed) and how long it took.
    pub fn terminate(&mut self, within: Duration) -> (Option<std::process::ExitStatus>, Duration) {
        let started = Instant::now();
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM failed");
        while started.elapsed() < within {
            if let Some(status) = self.child.try_wait().expect("wait for the gateway") {
                return (Some(status), started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        (None, started.elapsed())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no graceful anything.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill();
    }
}
