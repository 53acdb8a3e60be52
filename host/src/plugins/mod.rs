//! PSP plugins: WebAssembly components run by wasmtime under per-call limits, loaded and
//! hot-reloaded from a directory. `Plugins` is what the protocol fronts use: it calls a
//! gateway's plugin by gateway id.

pub mod bindings;
pub mod cache;
pub mod gateway_cache;
pub mod json;
pub mod outbound;
pub mod registry;
pub mod runtime;
pub mod state;
pub mod watch;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub use bindings::types;
pub use registry::{LoadedPlugin, Registry};
pub use runtime::{Call, CallError, Reply, Runtime, RuntimeLimits};
pub use state::{GatewayContext, PspContact};

use crate::config::{Config, GatewayConfig};
use outbound::{HostPattern, OutboundPolicy};

/// Why a gateway's plugin could not be called.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum GatewayCallError {
    #[error("unknown gateway `{0}`")]
    UnknownGateway(String),
    #[error(transparent)]
    Call(#[from] CallError),
}

/// The gateways of the config and the registry of plugins they use.
pub struct Plugins {
    registry: Arc<Registry>,
    gateways: HashMap<String, Arc<GatewayContext>>,
}

impl Plugins {
    /// Builds the runtime and registry for a config and loads the plugins directory once.
    pub async fn start(config: &Config) -> anyhow::Result<Plugins> {
        let runtime = Runtime::new(RuntimeLimits {
            memory_bytes: (config.plugins.memory_limit_mb * 1024 * 1024) as usize,
            max_instances: config.plugins.max_instances,
        })?;
        let dir = config.plugins.dir.clone();
        std::fs::create_dir_all(&dir).map_err(|e| {
            anyhow::anyhow!("cannot create plugins directory {}: {e}", dir.display())
        })?;
        let cache_dir = config
            .plugins
            .cache_dir
            .clone()
            .unwrap_or_else(|| dir.join(".cache"));
        let registry = Registry::new(runtime, dir, cache_dir);
        registry.rescan().await;
        let gateways = config
            .gateways
            .iter()
            .map(|gw| (gw.id.clone(), Arc::new(gateway_context(gw, config))))
            .collect();
        Ok(Plugins { registry, gateways })
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn gateway(&self, id: &str) -> Option<&Arc<GatewayContext>> {
        self.gateways.get(id)
    }

    /// Calls the plugin of `gateway` on the version loaded now.
    pub async fn call(&self, gateway: &str, call: Call) -> Result<Reply, GatewayCallError> {
        self.call_watched(gateway, call, PspContact::default())
            .await
    }

    /// `call`, recording in `contact` whether the plugin's requests may have reached the PSP.
    pub async fn call_watched(
        &self,
        gateway: &str,
        call: Call,
        contact: PspContact,
    ) -> Result<Reply, GatewayCallError> {
        let ctx = self
            .gateways
            .get(gateway)
            .ok_or_else(|| GatewayCallError::UnknownGateway(gateway.to_owned()))?;
        let plugin = self
            .registry
            .get(&ctx.plugin)
            .ok_or_else(|| CallError::NotLoaded(ctx.plugin.clone()))?;
        let op = call.name();
        let started = std::time::Instant::now();
        let result = self
            .registry
            .runtime()
            .call(&plugin.pre, ctx, call, contact)
            .await;
        crate::telemetry::plugin_call(gateway, op, result_label(&result), started.elapsed());
        if let Err(e) = &result {
            tracing::warn!(gateway, plugin = %ctx.plugin, version = %plugin.info.version, op, "plugin call failed: {e}");
        }
        Ok(result?)
    }
}

/// `answered`, the failure the plugin reported, or `error` (the host could not finish the
/// call).
fn result_label(result: &Result<Reply, CallError>) -> &'static str {
    use types::Failure;
    let failure = match result {
        Err(_) => return "error",
        Ok(Reply::Info(_)) => None,
        Ok(Reply::Outcome(r)) => r.as_ref().err(),
        Ok(Reply::Tokenized(r)) => r.as_ref().err(),
        Ok(Reply::Webhook(r)) => r.as_ref().err(),
    };
    match failure {
        None => "answered",
        Some(Failure::Unsupported(_)) => "unsupported",
        Some(Failure::Unreachable(_)) => "unreachable",
        Some(Failure::Timeout(_)) => "timeout",
        Some(Failure::Misconfigured(_)) => "misconfigured",
        Some(Failure::BadResponse(_)) => "bad_response",
        Some(Failure::InvalidRequest(_)) => "invalid_request",
        Some(Failure::Unauthenticated(_)) => "unauthenticated",
        Some(Failure::Internal(_)) => "internal",
    }
}

fn gateway_context(gw: &GatewayConfig, config: &Config) -> GatewayContext {
    GatewayContext {
        id: gw.id.clone(),
        plugin: gw.plugin.clone(),
        settings: gw.settings.clone(),
        policy: OutboundPolicy {
            // Patterns were validated with the config.
            allowed: gw
                .allowed_hosts
                .iter()
                .filter_map(|p| HostPattern::parse(p).ok())
                .collect(),
            timeout: Duration::from_millis(gw.http_timeout_ms),
            max_response_bytes: gw.max_response_bytes,
        },
        call_timeout: gw.call_timeout(&config.plugins),
        cache: Default::default(),
    }
}
