//! The operator's `config.toml`: its shape, `${VAR}` interpolation of secrets from the
//! environment, and the structural checks that need no plugin (unknown keys, missing keys,
//! duplicate gateway ids, malformed host patterns).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Errors that make a config unusable. Each names the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: key `{key}`: environment variable `{var}` is not set")]
    MissingVar {
        path: PathBuf,
        key: String,
        var: String,
    },
    #[error("{path}: key `{key}`: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
    /// Every problem found, so an operator fixes them in one go, one per line.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Several(Vec<ConfigError>),
}

impl ConfigError {
    /// Ok if `problems` is empty, else the one problem or all of them.
    fn from_problems(mut problems: Vec<ConfigError>) -> Result<(), ConfigError> {
        match problems.len() {
            0 => Ok(()),
            1 => Err(problems.remove(0)),
            _ => Err(ConfigError::Several(problems)),
        }
    }

    /// Each problem on its own (one for a single error).
    pub fn problems(&self) -> Vec<&ConfigError> {
        match self {
            ConfigError::Several(all) => all.iter().collect(),
            one => vec![one],
        }
    }
}

/// A value that must never be printed: shared secrets, API keys, tokens.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret's text, for signing and comparing only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub store: StoreConfig,
    pub plugins: PluginsConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub outbox: OutboxConfig,
    #[serde(default)]
    pub reconciler: ReconcilerConfig,
    #[serde(default)]
    pub gateways: Vec<GatewayConfig>,
}

/// Delivery of callbacks: exponential backoff with jitter, capped, for at least a day.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxConfig {
    /// Delay before the first retry; each retry doubles it.
    #[serde(default = "default_first_retry_ms")]
    pub first_retry_ms: u64,
    /// The longest delay between two attempts.
    #[serde(default = "default_max_retry_ms")]
    pub max_retry_ms: u64,
    /// Give up on a callback this long after it was queued.
    #[serde(default = "default_give_up_after_ms")]
    pub give_up_after_ms: u64,
    /// Timeout of one delivery attempt.
    #[serde(default = "default_delivery_timeout_ms")]
    pub delivery_timeout_ms: u64,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            first_retry_ms: default_first_retry_ms(),
            max_retry_ms: default_max_retry_ms(),
            give_up_after_ms: default_give_up_after_ms(),
            delivery_timeout_ms: default_delivery_timeout_ms(),
        }
    }
}

fn default_first_retry_ms() -> u64 {
    1_000
}
fn default_max_retry_ms() -> u64 {
    3_600_000
}
fn default_give_up_after_ms() -> u64 {
    72 * 3_600_000
}
fn default_delivery_timeout_ms() -> u64 {
    5_000
}

/// Re-checks transactions left pending (a PSP notification that never came).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcilerConfig {
    /// A transaction pending this long is first asked about with the plugin's `sync`
    /// (0 = pending transactions are never checked; unknown outcomes always are).
    #[serde(default = "default_reconcile_after_ms")]
    pub after_ms: u64,
    /// The longest the reconciler sleeps between two looks for due checks.
    #[serde(default = "default_reconcile_interval_ms")]
    pub interval_ms: u64,
    /// Delay before the first re-check of an unknown outcome; each further check of a
    /// row doubles its delay.
    #[serde(default = "default_check_first_retry_ms")]
    pub first_retry_ms: u64,
    /// The longest delay between two checks of one row.
    #[serde(default = "default_check_max_retry_ms")]
    pub max_retry_ms: u64,
    /// A row still unresolved this long after it was created is escalated to an operator
    /// (error log, metric, admin listing). It keeps being checked; it is never failed.
    #[serde(default = "default_check_give_up_after_ms")]
    pub give_up_after_ms: u64,
}

impl Default for ReconcilerConfig {
    fn default() -> Self {
        ReconcilerConfig {
            after_ms: default_reconcile_after_ms(),
            interval_ms: default_reconcile_interval_ms(),
            first_retry_ms: default_check_first_retry_ms(),
            max_retry_ms: default_check_max_retry_ms(),
            give_up_after_ms: default_check_give_up_after_ms(),
        }
    }
}

fn default_check_first_retry_ms() -> u64 {
    1_000
}
fn default_check_max_retry_ms() -> u64 {
    10 * 60_000
}
fn default_check_give_up_after_ms() -> u64 {
    24 * 3_600_000
}
fn default_reconcile_after_ms() -> u64 {
    15 * 60_000
}
fn default_reconcile_interval_ms() -> u64 {
    60_000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// On SIGTERM, how long deferred calls, the reconciler and the outbox may take to finish
    /// what they started before the process exits anyway (start-up recovery resolves what
    /// was still running). Below the orchestrator's kill timeout (Kubernetes: 30 s).
    #[serde(default = "default_shutdown_grace_ms")]
    pub shutdown_grace_ms: u64,
    /// The address shoppers reach this gateway at (`https://pay.example.com`). With it,
    /// a shopper sent to the PSP comes back to `/psp/{gateway}/return/{id}`, where the host
    /// completes the payment and sends the shopper on to the platform's return URL.
    #[serde(default)]
    pub public_url: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: default_listen(),
            shutdown_grace_ms: default_shutdown_grace_ms(),
            public_url: None,
        }
    }
}

impl ServerConfig {
    /// `public_url` without a trailing slash.
    pub fn public_base(&self) -> Option<&str> {
        self.public_url.as_deref().map(|u| u.trim_end_matches('/'))
    }
}

fn default_shutdown_grace_ms() -> u64 {
    25_000
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite://FILE` (embedded, default) or `postgres://...`.
    #[serde(default = "default_store_url")]
    pub url: Secret,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: default_store_url(),
        }
    }
}

fn default_store_url() -> Secret {
    Secret::new("sqlite://psp-gateway.db")
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginsConfig {
    /// Directory holding `<name>.wasm` files; relative paths are taken from the config
    /// file's directory.
    pub dir: PathBuf,
    /// Where compiled plugins are cached; default `<dir>/.cache`.
    pub cache_dir: Option<PathBuf>,
    /// Watch `dir` for changes and hot-reload (default true).
    #[serde(default = "yes")]
    pub watch: bool,
    /// Also rescan every N ms, for filesystems that send no change events (0 = off).
    #[serde(default)]
    pub poll_interval_ms: u64,
    /// Linear memory cap of one plugin instance, in MiB.
    #[serde(default = "default_memory_limit_mb")]
    pub memory_limit_mb: u64,
    /// Hard deadline of one plugin call, in ms (a gateway may lower or raise it).
    #[serde(default = "default_call_timeout_ms")]
    pub call_timeout_ms: u64,
    /// Plugin instances alive at once, all gateways together; more calls wait their turn.
    #[serde(default = "default_max_instances")]
    pub max_instances: u32,
}

fn yes() -> bool {
    true
}
fn default_memory_limit_mb() -> u64 {
    64
}
fn default_call_timeout_ms() -> u64 {
    10_000
}
fn default_max_instances() -> u32 {
    256
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Bearer token for `/admin/*`. When unset the admin routes are read-only and the
    /// plugin diagnostics route is off.
    pub token: Option<Secret>,
    /// When set, `/admin/*` and `/metrics` are served only on this address (e.g.
    /// `127.0.0.1:9091`), and answer 404 on `server.listen`.
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// The `{gateway}` path segment of the protocol routes.
    pub id: String,
    /// The plugin file stem: `plugin = "sandbox"` uses `<plugins.dir>/sandbox.wasm`.
    pub plugin: String,
    /// Commerce Layer's shared secret for this external gateway.
    pub shared_secret: Option<Secret>,
    /// Where asynchronous outcomes are delivered (Commerce Layer's webhook endpoint URL).
    pub webhook_endpoint_url: Option<String>,
    /// Hosts the plugin may call: `api.psp.com`, `api.psp.com:8443`, `*.psp.com`, or
    /// `http://127.0.0.1:12111` to allow plain HTTP to that authority (local fakes).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Timeout of one outbound HTTP request made for the plugin.
    #[serde(default = "default_http_timeout_ms")]
    pub http_timeout_ms: u64,
    /// Largest PSP response body the plugin may receive.
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: u64,
    /// Overrides `plugins.call_timeout_ms` for this gateway.
    pub call_timeout_ms: Option<u64>,
    /// A plugin call still running after this long is answered 202 and finished in the
    /// background, so a slow PSP never trips the platform's circuit breaker.
    #[serde(default = "default_async_after_ms")]
    pub async_after_ms: u64,
    /// A payment the PSP keeps pending longer than this is ended as failed (`expired`),
    /// through the same callback as any final outcome. Unset: pending until the PSP says.
    pub pending_expiry_ms: Option<u64>,
    /// Mia-Platform PGM: where payment status changes are pushed (its PAYMENT_CALLBACK_URL).
    pub pgm_callback_url: Option<String>,
    /// Mia-Platform PGM: a bearer token required on `/v3/{gateway}/...`. Without it (or
    /// `pgm_auth = "none"`) the gateway serves no PGM route at all.
    pub pgm_auth_token: Option<Secret>,
    /// Mia-Platform PGM: `"none"` serves `/v3/{gateway}/...` without authentication (PGM
    /// documents none; protect the route at the network level). Warned about at start.
    pub pgm_auth: Option<String>,
    /// The PSP issues numeric payment source tokens (e.g. Adyen's recurring references): a
    /// token of bare digits is then not taken for a card number.
    #[serde(default)]
    pub numeric_tokens: bool,
    /// Settings handed to the plugin (`settings.get`); values may use `${VAR}`.
    #[serde(default)]
    pub settings: BTreeMap<String, Secret>,
}

fn default_async_after_ms() -> u64 {
    3_000
}
fn default_http_timeout_ms() -> u64 {
    8_000
}
fn default_max_response_bytes() -> u64 {
    4 * 1024 * 1024
}

/// Who may use a gateway's PGM front.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgmAccess<'a> {
    /// Neither `pgm_auth_token` nor `pgm_auth = "none"`: the routes answer 404.
    Closed,
    /// `pgm_auth = "none"`.
    Open,
    Bearer(&'a Secret),
}

impl GatewayConfig {
    pub fn pgm_access(&self) -> PgmAccess<'_> {
        match (&self.pgm_auth_token, self.pgm_auth.as_deref()) {
            (Some(token), _) => PgmAccess::Bearer(token),
            (None, Some("none")) => PgmAccess::Open,
            (None, _) => PgmAccess::Closed,
        }
    }

    pub fn call_timeout(&self, plugins: &PluginsConfig) -> Duration {
        Duration::from_millis(self.call_timeout_ms.unwrap_or(plugins.call_timeout_ms))
    }
}

impl Config {
    /// Reads, interpolates and checks a config file. Relative paths in it are resolved
    /// against the file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let raw = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::from_toml(&raw, path, base, &|name| std::env::var(name).ok())
    }

    /// Parses config text; `env` resolves `${VAR}` references.
    pub fn from_toml(
        raw: &str,
        path: &Path,
        base_dir: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let parse_err = |e: toml::de::Error| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        };
        // First pass on the raw text: unknown and missing keys are reported with their
        // line, which a second pass over an interpolated tree could not do. A value that
        // is wrong only before interpolation (`listen = "${PSP_LISTEN}"`) is left to the
        // second pass.
        if let Err(e) = toml::from_str::<Config>(raw) {
            let message = e.message();
            if message.contains("unknown field") || message.contains("missing field") {
                return Err(parse_err(e));
            }
        }
        let mut tree: toml::Value = toml::from_str(raw).map_err(parse_err)?;
        let mut problems = Vec::new();
        interpolate(&mut tree, &mut String::new(), path, env, &mut problems);
        ConfigError::from_problems(problems)?;
        let mut config: Config = tree.try_into().map_err(parse_err)?;
        config.resolve_paths(base_dir);
        config.validate(path)?;
        Ok(config)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let abs = |p: &Path| {
            if p.is_absolute() {
                p.to_owned()
            } else {
                base.join(p)
            }
        };
        self.plugins.dir = abs(&self.plugins.dir);
        self.plugins.cache_dir = Some(match &self.plugins.cache_dir {
            Some(dir) => abs(dir),
            None => self.plugins.dir.join(".cache"),
        });
        if let Some(file) = self.store.url.expose().strip_prefix("sqlite://")
            && !file.starts_with('/')
            && !file.starts_with(":memory:")
        {
            let joined = base.join(file);
            self.store.url = Secret::new(format!("sqlite://{}", joined.display()));
        }
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: String, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            key,
            message,
        };
        let mut problems = Vec::new();
        if self.plugins.memory_limit_mb == 0 || self.plugins.memory_limit_mb > 4096 {
            problems.push(invalid(
                "plugins.memory_limit_mb".into(),
                "must be between 1 and 4096".into(),
            ));
        }
        if self.plugins.call_timeout_ms == 0 {
            problems.push(invalid(
                "plugins.call_timeout_ms".into(),
                "must be positive".into(),
            ));
        }
        if self.plugins.max_instances == 0 {
            problems.push(invalid(
                "plugins.max_instances".into(),
                "must be positive".into(),
            ));
        }
        if self.outbox.first_retry_ms == 0 || self.outbox.max_retry_ms < self.outbox.first_retry_ms
        {
            problems.push(invalid(
                "outbox.first_retry_ms".into(),
                "must be positive and at most outbox.max_retry_ms".into(),
            ));
        }
        if let Some(public) = &self.server.public_url {
            let ok = url::Url::parse(public).is_ok_and(|u| {
                matches!(u.scheme(), "http" | "https")
                    && u.host().is_some()
                    && u.query().is_none()
                    && u.fragment().is_none()
            });
            if !ok {
                problems.push(invalid(
                    "server.public_url".into(),
                    format!("`{public}` must be an http(s) URL without query or fragment"),
                ));
            }
        }
        if self.reconciler.interval_ms == 0 {
            problems.push(invalid(
                "reconciler.interval_ms".into(),
                "must be positive".into(),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, gw) in self.gateways.iter().enumerate() {
            let key = |field: &str| format!("gateways[{i}].{field}");
            if gw.id.is_empty()
                || !gw
                    .id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                problems.push(invalid(
                    key("id"),
                    format!("`{}` must be non-empty letters, digits, - or _", gw.id),
                ));
            }
            if !seen.insert(gw.id.as_str()) {
                problems.push(invalid(
                    key("id"),
                    format!("gateway id `{}` is used twice", gw.id),
                ));
            }
            for (j, pattern) in gw.allowed_hosts.iter().enumerate() {
                if let Err(m) = crate::plugins::outbound::HostPattern::parse(pattern) {
                    problems.push(invalid(key(&format!("allowed_hosts[{j}]")), m));
                }
            }
            for (field, url) in [
                ("webhook_endpoint_url", &gw.webhook_endpoint_url),
                ("pgm_callback_url", &gw.pgm_callback_url),
            ] {
                if let Some(url) = url
                    && let Err(e) = url::Url::parse(url)
                {
                    problems.push(invalid(key(field), e.to_string()));
                }
            }
            if gw.async_after_ms == 0 {
                problems.push(invalid(key("async_after_ms"), "must be positive".into()));
            }
            if gw.call_timeout_ms == Some(0) {
                problems.push(invalid(key("call_timeout_ms"), "must be positive".into()));
            }
            match (gw.pgm_auth.as_deref(), &gw.pgm_auth_token) {
                (None, _) | (Some("none"), None) => {}
                (Some("none"), Some(_)) => {
                    problems.push(invalid(
                        key("pgm_auth"),
                        "`none` contradicts pgm_auth_token: set one or the other".into(),
                    ));
                }
                (Some(other), _) => {
                    problems.push(invalid(
                        key("pgm_auth"),
                        format!("unknown value `{other}` (use \"none\", or set pgm_auth_token)"),
                    ));
                }
            }
        }
        ConfigError::from_problems(problems)
    }

    pub fn gateway(&self, id: &str) -> Option<&GatewayConfig> {
        self.gateways.iter().find(|g| g.id == id)
    }
}

/// Replaces `${VAR}` in every string of the tree. `$${` stands for a literal `${`.
fn interpolate(
    value: &mut toml::Value,
    key: &mut String,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<ConfigError>,
) {
    match value {
        toml::Value::String(s) => match interpolate_str(s, key, path, env) {
            Ok(done) => *s = done,
            Err(e) => problems.extend(e),
        },
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = key.len();
                key.push_str(&format!("[{i}]"));
                interpolate(item, key, path, env, problems);
                key.truncate(len);
            }
        }
        toml::Value::Table(table) => {
            for (name, item) in table.iter_mut() {
                let len = key.len();
                if !key.is_empty() {
                    key.push('.');
                }
                key.push_str(name);
                interpolate(item, key, path, env, problems);
                key.truncate(len);
            }
        }
        _ => {}
    }
}

/// The string with its variables replaced, or every problem in it.
fn interpolate_str(
    s: &str,
    key: &str,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, Vec<ConfigError>> {
    let mut missing = Vec::new();
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let end = tail.find('}').ok_or_else(|| {
                vec![ConfigError::Invalid {
                    path: path.to_owned(),
                    key: key.to_owned(),
                    message: "unterminated `${`".into(),
                }]
            })?;
            let var = &tail[..end];
            let valid = !var.is_empty()
                && !var.starts_with(|c: char| c.is_ascii_digit())
                && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(vec![ConfigError::Invalid {
                    path: path.to_owned(),
                    key: key.to_owned(),
                    message: format!("`${{{var}}}` is not a valid environment variable name"),
                }]);
            }
            match env(var) {
                Some(value) => out.push_str(&value),
                None => missing.push(ConfigError::MissingVar {
                    path: path.to_owned(),
                    key: key.to_owned(),
                    var: var.to_owned(),
                }),
            }
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(missing)
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
