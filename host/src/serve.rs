//! Starting the gateway: plugins, hot reload, the HTTP server, graceful shutdown.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::app::{AppState, router};
use crate::config::Config;
use crate::plugins::{Plugins, watch};

pub async fn run(config_path: &Path) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    let plugins = Plugins::start(&config)
        .await
        .context("starting the plugin runtime")?;
    let problems = crate::check::gateways(&config, &plugins);
    for p in problems.iter().filter(|p| p.plugin_missing) {
        tracing::warn!("{p} (its gateway answers `plugin not loaded` until the file is fixed)");
    }
    let fatal: Vec<_> = problems.iter().filter(|p| !p.plugin_missing).collect();
    if !fatal.is_empty() {
        for p in &fatal {
            tracing::error!("{p}");
        }
        bail!(
            "{} configuration problem(s); see `psp-gateway check`",
            fatal.len()
        );
    }
    let plugins = Arc::new(plugins);
    let _watch = watch::spawn(
        plugins.registry().clone(),
        config.plugins.watch,
        Duration::from_millis(config.plugins.poll_interval_ms),
    );
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("binding {}", config.server.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, gateways = config.gateways.len(), "listening");
    let state = AppState {
        config: Arc::new(config),
        plugins,
    };
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
