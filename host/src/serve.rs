//! Starting the gateway: plugins, hot reload, the HTTP server, graceful shutdown.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::app::{AppState, admin_router, router};
use crate::config::Config;
use crate::config::PgmAccess;
use crate::outbox::Outbox;
use crate::payments::Payments;
use crate::plugins::{Plugins, watch};
use crate::protocol::commerce_layer::CommerceLayer;
use crate::protocol::pgm::Pgm;

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
    for gw in config
        .gateways
        .iter()
        .filter(|g| g.pgm_access() == PgmAccess::Open)
    {
        tracing::warn!(gateway = %gw.id, "PGM routes /v3/{}/... are served without authentication (pgm_auth = \"none\"): protect them at the network level", gw.id);
    }
    let plugins = Arc::new(plugins);
    let store = crate::store::open(config.store.url.expose())
        .await
        .context("opening the store")?;
    let config = Arc::new(config);
    let outbox_wake = Arc::new(tokio::sync::Notify::new());
    let commerce_layer = CommerceLayer::front();
    let pgm = Pgm::front();
    let payments = Payments::new(
        store.clone(),
        plugins.clone(),
        config.clone(),
        vec![commerce_layer.clone(), pgm.clone()],
        outbox_wake.clone(),
    );
    // Before any request: calls the last process was making when it stopped.
    payments
        .recover_interrupted()
        .await
        .context("recovering interrupted calls")?;
    tokio::spawn(
        Outbox::new(
            store.clone(),
            config.clone(),
            vec![commerce_layer.clone(), pgm.clone()],
            outbox_wake.clone(),
        )
        .run(),
    );
    tokio::spawn(crate::payments::reconcile_forever(
        payments.clone(),
        Duration::from_millis(config.reconciler.interval_ms),
    ));
    let waiting = store
        .callbacks_waiting()
        .await
        .context("reading the outbox")?;
    if waiting > 0 {
        tracing::info!(waiting, "resuming callback deliveries");
    }
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
        config,
        plugins,
        payments,
        commerce_layer,
        pgm,
        outbox_wake,
    };
    if let Some(admin_addr) = state.config.admin.listen {
        let admin = tokio::net::TcpListener::bind(admin_addr)
            .await
            .with_context(|| format!("binding admin.listen {admin_addr}"))?;
        let addr = admin.local_addr()?;
        tracing::info!(%addr, "admin listening");
        let app = admin_router(state.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(admin, app)
                .with_graceful_shutdown(shutdown_signal())
                .await
            {
                tracing::error!("admin server: {e}");
            }
        });
    }
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
