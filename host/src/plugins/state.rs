//! What one plugin instance can reach: its per-call store data and the host imports it
//! calls (`http`, `settings`, `log`, `cache`), scoped to the gateway the call is made for.
//! These are the latest contract's imports; `bindings::since_v0_1` serves 0.1's through them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::psp::plugin::{cache, http, log, settings, types};
use super::gateway_cache::GatewayCache;
use super::outbound::{self, OutboundError, OutboundPolicy, OutboundRequest};
use crate::config::Secret;

/// A gateway as its plugin sees it: settings, network policy, deadline.
#[derive(Debug)]
pub struct GatewayContext {
    pub id: String,
    pub plugin: String,
    pub settings: BTreeMap<String, Secret>,
    pub policy: OutboundPolicy,
    pub call_timeout: Duration,
    /// The `cache` import's entries, shared by every call of this gateway.
    pub cache: GatewayCache,
}

impl GatewayContext {
    /// The context used to load a plugin: no settings, no network.
    pub fn loader(plugin: &str) -> Arc<GatewayContext> {
        Arc::new(GatewayContext {
            id: String::new(),
            plugin: plugin.to_owned(),
            settings: BTreeMap::new(),
            policy: OutboundPolicy {
                allowed: Vec::new(),
                timeout: Duration::from_secs(1),
                max_response_bytes: 0,
            },
            call_timeout: Duration::from_secs(2),
            cache: GatewayCache::default(),
        })
    }

    /// Hides the gateway's setting values (secrets among them) from text a plugin logs.
    fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for value in self.settings.values() {
            if value.expose().len() >= 6 {
                out = out.replace(value.expose(), "***");
            }
        }
        out
    }
}

/// Whether a call's outbound requests may have reached the PSP: set once a request got past
/// connecting (an answer came, or it failed after its bytes may have left). Shared with the
/// caller, so it survives a deadline that drops the instance: a failed call that never made
/// contact did nothing at the PSP, one that did has an unknown outcome.
#[derive(Debug, Clone, Default)]
pub struct PspContact(Arc<AtomicBool>);

impl PspContact {
    pub fn made(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    fn record(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Store data of one plugin call.
pub struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) memory: MemoryCap,
    pub(crate) deadline: Instant,
    pub(crate) stderr: MemoryOutputPipe,
    gateway: Arc<GatewayContext>,
    client: reqwest::Client,
    contact: PspContact,
}

impl PluginState {
    pub fn new(
        gateway: Arc<GatewayContext>,
        client: reqwest::Client,
        memory_limit: usize,
        deadline: Instant,
        contact: PspContact,
    ) -> PluginState {
        // No preopens, no environment, no arguments, no sockets: only clocks and random.
        let stderr = MemoryOutputPipe::new(4096);
        let wasi = WasiCtx::builder().stderr(stderr.clone()).build();
        PluginState {
            wasi,
            table: ResourceTable::new(),
            memory: MemoryCap {
                limit: memory_limit,
                exceeded: false,
            },
            deadline,
            stderr,
            gateway,
            client,
            contact,
        }
    }

    /// The tail of what the plugin wrote to stderr (a panic message, usually).
    pub fn stderr_tail(&self) -> String {
        let bytes = self.stderr.contents();
        let text = String::from_utf8_lossy(&bytes);
        let text = text.trim();
        let start = text.char_indices().rev().nth(400).map_or(0, |(i, _)| i);
        self.gateway.redact(&text[start..])
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Linear memory cap of one instance; remembers that it refused growth so that the
/// resulting trap is reported as memory exhaustion.
pub struct MemoryCap {
    limit: usize,
    pub(crate) exceeded: bool,
}

impl wasmtime::ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.exceeded = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

impl types::Host for PluginState {}

impl http::Host for PluginState {
    async fn send(&mut self, req: http::Request) -> Result<http::Response, http::HttpError> {
        let method = match req.method {
            http::Method::Get => reqwest::Method::GET,
            http::Method::Post => reqwest::Method::POST,
            http::Method::Put => reqwest::Method::PUT,
            http::Method::Patch => reqwest::Method::PATCH,
            http::Method::Delete => reqwest::Method::DELETE,
        };
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        let requested = req.timeout_ms.map(|ms| Duration::from_millis(ms.into()));
        let timeout = Some(requested.map_or(remaining, |t| t.min(remaining)));
        let request = OutboundRequest {
            method,
            url: req.url,
            headers: req.headers.into_iter().map(|p| (p.key, p.value)).collect(),
            body: req.body,
            timeout,
        };
        let result = outbound::send(&self.client, &self.gateway.policy, request).await;
        match &result {
            Err(OutboundError::Denied(why)) => {
                tracing::warn!(gateway = %self.gateway.id, plugin = %self.gateway.plugin, "plugin request refused: {why}");
            }
            // Nothing left the host: the PSP saw nothing.
            Err(OutboundError::InvalidUrl(_) | OutboundError::Connect(_)) => {}
            Ok(_) | Err(_) => self.contact.record(),
        }
        result
            .map(|r| http::Response {
                status: r.status,
                headers: r
                    .headers
                    .into_iter()
                    .map(|(key, value)| types::Pair { key, value })
                    .collect(),
                body: r.body,
            })
            .map_err(|e| match e {
                OutboundError::Denied(m) => http::HttpError::Denied(m),
                OutboundError::InvalidUrl(m) => http::HttpError::InvalidUrl(m),
                OutboundError::Timeout => http::HttpError::Timeout,
                OutboundError::Connect(m) => http::HttpError::Connect(m),
                OutboundError::TooLarge(n) => http::HttpError::TooLarge(n),
                OutboundError::Other(m) => http::HttpError::Other(m),
            })
    }
}

impl settings::Host for PluginState {
    async fn get(&mut self, name: String) -> Option<String> {
        self.gateway
            .settings
            .get(&name)
            .map(|v| v.expose().to_owned())
    }
}

impl log::Host for PluginState {
    async fn write(&mut self, level: log::Level, message: String) {
        let mut message = self.gateway.redact(&message);
        if message.len() > 2048 {
            let mut cut = 2048;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        let (gateway, plugin) = (&self.gateway.id, &self.gateway.plugin);
        match level {
            log::Level::Trace => tracing::trace!(%gateway, %plugin, "{message}"),
            log::Level::Debug => tracing::debug!(%gateway, %plugin, "{message}"),
            log::Level::Info => tracing::info!(%gateway, %plugin, "{message}"),
            log::Level::Warn => tracing::warn!(%gateway, %plugin, "{message}"),
            log::Level::Error => tracing::error!(%gateway, %plugin, "{message}"),
        }
    }
}

impl cache::Host for PluginState {
    async fn get(&mut self, key: String) -> Option<Vec<u8>> {
        self.gateway.cache.get(&key)
    }

    async fn set(&mut self, key: String, value: Vec<u8>, ttl_ms: u32) {
        self.gateway
            .cache
            .set(key, value, Duration::from_millis(ttl_ms.into()))
    }

    async fn remove(&mut self, key: String) {
        self.gateway.cache.remove(&key)
    }
}
