//! The application state shared by every handler and the router that mounts the
//! operator routes, the PSP webhook route and (next) the protocol fronts.

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

use crate::config::Config;
use crate::payments::{Front, Payments};
use crate::plugins::Plugins;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub plugins: Arc<Plugins>,
    pub payments: Payments,
    pub commerce_layer: Arc<dyn Front>,
    pub pgm: Arc<dyn Front>,
    /// Wakes the outbox worker when a callback is queued.
    pub outbox_wake: Arc<tokio::sync::Notify>,
    /// Cancelled on SIGTERM: the gateway is draining.
    pub stop: tokio_util::sync::CancellationToken,
}

/// Largest request body any route accepts.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// The main router. With `[admin] listen` the operator routes are not on it: they are on
/// `admin_router`'s own address, and 404 here.
pub fn router(state: AppState) -> Router {
    let mut app = Router::new()
        .route("/healthz", get(crate::ops::healthz))
        .route("/readyz", get(crate::ops::readyz))
        .route("/openapi.json", get(crate::openapi::document))
        .route("/psp/{gateway}/webhook", post(crate::psp_webhooks::receive))
        .route(
            "/psp/{gateway}/return/{id}",
            get(crate::shopper_return::receive).post(crate::shopper_return::receive),
        )
        .route(
            "/commercelayer/{gateway}/{action}",
            post(crate::protocol::commerce_layer::handle),
        )
        .merge(crate::protocol::pgm::routes(state.clone()));
    if state.config.admin.listen.is_none() {
        app = app.merge(operator_routes(&state));
    }
    finish(app, state)
}

/// The operator routes alone, for `[admin] listen`.
pub fn admin_router(state: AppState) -> Router {
    finish(operator_routes(&state), state)
}

/// `/admin/*` (behind the admin token when one is set), the page at `/admin` (its own
/// sign-in) and `/metrics`.
fn operator_routes(state: &AppState) -> Router<AppState> {
    let mut admin = Router::new()
        .route("/admin/plugins", get(crate::ops::plugins))
        .route("/admin/transactions", get(crate::ops::transactions))
        .route("/admin/callbacks", get(crate::admin_callbacks::list));
    if state.config.admin.token.is_some() {
        admin = admin
            .route(
                "/admin/gateways/{gateway}/call/{operation}",
                post(crate::diagnostics::call),
            )
            .route(
                "/admin/callbacks/{id}/replay",
                post(crate::admin_callbacks::replay),
            );
    }
    let admin = admin.route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        crate::ops::require_admin,
    ));
    Router::new()
        .route("/metrics", get(crate::ops::metrics))
        .merge(admin)
        .merge(crate::admin_page::routes())
}

fn finish(app: Router<AppState>, state: AppState) -> Router {
    app.layer(axum::middleware::from_fn_with_state(
        state.clone(),
        crate::telemetry::track_requests,
    ))
    .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
    .layer(tower_http::trace::TraceLayer::new_for_http())
    .with_state(state)
}
