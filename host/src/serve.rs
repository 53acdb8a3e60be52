//! Starting the gateway (plugins, hot reload, recovery of interrupted calls, the HTTP
//! servers) and stopping it: on SIGTERM, draining what was started within the grace period.

use std::future::IntoFuture;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio_util::sync::CancellationToken;

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
    // Before the plugins load: their loads are counted.
    crate::telemetry::install();
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
    // Cancelled on SIGTERM. The outbox has its own token, cancelled only once the calls
    // being drained have queued their callbacks.
    let stop = CancellationToken::new();
    let outbox_stop = CancellationToken::new();
    let outbox = tokio::spawn(
        Outbox::new(
            store.clone(),
            config.clone(),
            vec![commerce_layer.clone(), pgm.clone()],
            outbox_wake.clone(),
        )
        .run(outbox_stop.clone()),
    );
    tokio::spawn(crate::payments::keep_leases(payments.clone()));
    let reconciler = tokio::spawn(crate::payments::reconcile_forever(
        payments.clone(),
        Duration::from_millis(config.reconciler.interval_ms),
        stop.clone(),
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
        payments: payments.clone(),
        commerce_layer,
        pgm,
        outbox_wake,
        stop: stop.clone(),
    };
    let mut servers = Vec::new();
    if let Some(admin_addr) = state.config.admin.listen {
        let admin = tokio::net::TcpListener::bind(admin_addr)
            .await
            .with_context(|| format!("binding admin.listen {admin_addr}"))?;
        let addr = admin.local_addr()?;
        tracing::info!(%addr, "admin listening");
        let app = admin_router(state.clone());
        servers.push(tokio::spawn(
            axum::serve(admin, app)
                .with_graceful_shutdown(stop.clone().cancelled_owned())
                .into_future(),
        ));
    }
    let grace = Duration::from_millis(state.config.server.shutdown_grace_ms);
    let mut main = tokio::spawn(
        axum::serve(listener, router(state))
            .with_graceful_shutdown(stop.clone().cancelled_owned())
            .into_future(),
    );
    tokio::select! {
        _ = shutdown_signal() => {}
        ended = &mut main => {
            ended.context("the HTTP server task")?.context("serving HTTP")?;
            bail!("the HTTP server stopped on its own");
        }
    }
    servers.push(main);
    drain(
        stop,
        grace,
        servers,
        &payments,
        reconciler,
        outbox_stop,
        outbox,
    )
    .await;
    Ok(())
}

/// SIGTERM: take nothing new (`/readyz` turns 503, listeners close) and let what was
/// started finish within `grace`: requests, the engine's calls (deferred ones included, so
/// their outcomes and callbacks are written), the reconciler's round, then one last outbox
/// round. Whatever is still running at the deadline is cut off where start-up recovery
/// resolves it: a `processing` row becomes `unknown` and is settled with the PSP, and a
/// queued callback is sent by the next process.
async fn drain(
    stop: CancellationToken,
    grace: Duration,
    servers: Vec<tokio::task::JoinHandle<std::io::Result<()>>>,
    payments: &Payments,
    reconciler: tokio::task::JoinHandle<()>,
    outbox_stop: CancellationToken,
    outbox: tokio::task::JoinHandle<()>,
) {
    let deadline = tokio::time::Instant::now() + grace;
    let tasks = payments.tasks();
    tracing::info!(
        grace_ms = grace.as_millis() as u64,
        calls_in_flight = tasks.len(),
        "shutting down: draining"
    );
    stop.cancel();
    tasks.close();
    let work = async {
        for server in servers {
            let _ = server.await;
        }
        tasks.wait().await;
        let _ = reconciler.await;
        outbox_stop.cancel();
        let _ = outbox.await;
    };
    match tokio::time::timeout_at(deadline, work).await {
        Ok(()) => tracing::info!("stopped: everything started was finished"),
        Err(_) => {
            // Another replica may take these over now rather than after the lease.
            let released = payments.store().release_leases().await.unwrap_or(0);
            tracing::warn!(
                calls_in_flight = tasks.len(),
                released,
                "stopped at the end of shutdown_grace_ms with work still running; the next start (or another replica) resolves it"
            );
        }
    }
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
