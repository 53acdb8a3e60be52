//! One documented operation per route and method the routers mount (`app.rs`,
//! `protocol/pgm`, `admin_page`). The functions are never called: they carry the
//! `#[utoipa::path]` of the handler they stand for, so a route's documentation sits in one
//! list that the test in `openapi::tests` compares with the routers' sources.

#![allow(dead_code)]

use super::schemas::*;

// ---- operations -------------------------------------------------------------------

#[utoipa::path(get, path = "/healthz", tag = "operations",
    summary = "Liveness: fails once the store's writer is dead",
    responses(
        (status = 200, description = "Alive", body = String, content_type = "text/plain"),
        (status = 503, description = "The store's writer stopped: restart", body = String, content_type = "text/plain"),
    ))]
fn healthz() {}

#[utoipa::path(get, path = "/readyz", tag = "operations",
    summary = "Readiness: whether a load balancer should send payments here now",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "Draining, or the store refuses writes", body = Readiness),
    ))]
fn readyz() {}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    summary = "Prometheus metrics",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
fn metrics() {}

#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    summary = "This document",
    responses((status = 200, description = "OpenAPI 3.1", body = Object)))]
fn openapi_json() {}

// ---- PSP notifications ------------------------------------------------------------

#[utoipa::path(post, path = "/psp/{gateway}/webhook", tag = "psp",
    summary = "A PSP's notification, verified and read by the gateway's plugin",
    params(("gateway" = String, Path, description = "Gateway id from the config")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream",
        description = "The PSP's body, untouched (the plugin checks the PSP's signature over it)"),
    responses(
        (status = 200, description = "Accepted; the body is what the plugin answers the PSP", content_type = "*/*"),
        (status = 400, description = "The plugin could not read the notification", body = Object),
        (status = 401, description = "The PSP's signature does not verify", body = Object),
        (status = 404, description = "Unknown gateway", body = Object),
        (status = 501, description = "The plugin takes no notifications", body = Object),
        (status = 502, description = "The plugin failed", body = Object),
        (status = 503, description = "The events cannot be recorded now: the PSP retries", body = Object),
        (status = 504, description = "The plugin ran out of time", body = Object),
    ))]
fn psp_webhook() {}

#[utoipa::path(get, path = "/psp/{gateway}/return/{id}", tag = "psp",
    summary = "The shopper back from the PSP (with `[server] public_url`): the plugin completes the payment",
    description = "The query goes to the plugin's `complete`. The shopper is sent on to the \
        platform's return URL (its cancel URL for a declined payment) or shown a short page.",
    params(("gateway" = String, Path, description = "Gateway id from the config"),
           ("id" = String, Path, description = "The payment's transaction id, from the return URL the host gave the PSP")),
    responses(
        (status = 200, description = "No platform return URL: a page saying how the payment stands", body = String, content_type = "text/html"),
        (status = 303, description = "On to the platform's return URL"),
        (status = 404, description = "No such payment of this gateway", body = String, content_type = "text/html"),
        (status = 503, description = "The store is unavailable: reload", body = String, content_type = "text/html"),
    ))]
fn shopper_return_get() {}

#[utoipa::path(post, path = "/psp/{gateway}/return/{id}", tag = "psp",
    summary = "The shopper back from the PSP by a form post (3-D Secure 1 style)",
    params(("gateway" = String, Path, description = "Gateway id from the config"),
           ("id" = String, Path, description = "The payment's transaction id")),
    request_body(content = Object, content_type = "application/x-www-form-urlencoded",
        description = "The PSP's form fields, passed to the plugin's `complete` with the query"),
    responses(
        (status = 200, description = "No platform return URL: a page saying how the payment stands", body = String, content_type = "text/html"),
        (status = 303, description = "On to the platform's return URL"),
        (status = 404, description = "No such payment of this gateway", body = String, content_type = "text/html"),
        (status = 503, description = "The store is unavailable: reload", body = String, content_type = "text/html"),
    ))]
fn shopper_return_post() {}

// ---- Commerce Layer ---------------------------------------------------------------

#[utoipa::path(post, path = "/commercelayer/{gateway}/{action}", tag = "commerce-layer",
    summary = "Commerce Layer external payment gateway: authorize, capture, void, refund, token",
    description = "Signed by Commerce Layer with HMAC-SHA256 of the raw body (base64) in \
        `X-CommerceLayer-Signature`. 200 answers are final; 202 carries an `action_id` and the \
        outcome follows as a signed callback to the gateway's `webhook_endpoint_url`.",
    params(
        ("gateway" = String, Path, description = "Gateway id from the config"),
        ("action" = String, Path, description = "authorize, capture, void, refund or token"),
        ("X-CommerceLayer-Signature" = String, Header, description = "base64 HMAC-SHA256 of the body with the shared secret"),
    ),
    request_body(content = ClDocument, content_type = "application/json"),
    responses(
        (status = 200, description = "Final answer", body = ClAnswer),
        (status = 202, description = "Accepted: the outcome follows as a callback", body = ClAnswer),
        (status = 400, description = "Not a valid document", body = ClAnswer),
        (status = 401, description = "Missing or wrong signature", body = ClAnswer),
        (status = 404, description = "Unknown gateway or action", body = ClAnswer),
        (status = 409, description = "The same operation is in progress, or conflicts with an earlier one", body = ClAnswer),
        (status = 413, description = "Body over 1 MiB", body = ClAnswer),
        (status = 415, description = "Not JSON", body = ClAnswer),
        (status = 422, description = "Refused: amount, balance, unknown transaction, ...", body = ClAnswer),
        (status = 501, description = "The PSP plugin does not offer this operation", body = ClAnswer),
        (status = 502, description = "The PSP was not reached: nothing happened there", body = ClAnswer),
        (status = 503, description = "The store cannot record the payment now", body = ClAnswer),
        (status = 504, description = "The PSP did not answer in time", body = ClAnswer),
    ))]
fn commerce_layer() {}

// ---- PGM (Mia-Platform Payment Gateway Manager) -----------------------------------

macro_rules! pgm_path {
    ($name:ident, $method:ident, $path:tt, $summary:tt) => {
        #[utoipa::path($method, path = $path, tag = "pgm", summary = $summary,
            params(("gateway" = String, Path, description = "Gateway id from the config")),
            security(("pgm_token" = [])),
            request_body(content = Option<Object>, content_type = "application/json"),
            responses(
                (status = 200, description = "`OK`, `PENDING`, `REDIRECT_TO_URL`, or a `KO` decided by the PSP", body = PgmAnswer),
                (status = 400, description = "A field is missing or wrong", body = PgmAnswer),
                (status = 401, description = "Missing or wrong bearer token", body = PgmAnswer),
                (status = 404, description = "Unknown gateway, payment or subscription", body = PgmAnswer),
                (status = 409, description = "The same operation is in progress", body = PgmAnswer),
                (status = 501, description = "The PSP plugin does not offer this operation", body = PgmAnswer),
                (status = 502, description = "The PSP was not reached", body = PgmAnswer),
                (status = 503, description = "The store cannot record the payment now", body = PgmAnswer),
                (status = 504, description = "The PSP did not answer in time", body = PgmAnswer),
            ))]
        fn $name() {}
    };
    ($name:ident, $method:ident, $path:tt, $summary:tt, token) => {
        #[utoipa::path($method, path = $path, tag = "pgm", summary = $summary,
            params(
                ("gateway" = String, Path, description = "Gateway id from the config"),
                ("token" = String, Path, description = "Subscription token"),
            ),
            security(("pgm_token" = [])),
            request_body(content = Option<Object>, content_type = "application/json"),
            responses(
                (status = 200, description = "The subscription", body = PgmAnswer),
                (status = 400, description = "A field is missing or wrong", body = PgmAnswer),
                (status = 401, description = "Missing or wrong bearer token", body = PgmAnswer),
                (status = 404, description = "Unknown gateway or subscription", body = PgmAnswer),
                (status = 409, description = "The same operation is in progress", body = PgmAnswer),
                (status = 503, description = "The store is unavailable", body = PgmAnswer),
            ))]
        fn $name() {}
    };
}

pgm_path!(
    pgm_pay,
    post,
    "/v3/{gateway}/pay",
    "Pay (a sale, or authorize + capture)"
);
pgm_path!(
    pgm_refund,
    post,
    "/v3/{gateway}/refund",
    "Refund part or all of a payment"
);
pgm_path!(
    pgm_status_get,
    get,
    "/v3/{gateway}/status",
    "A payment's status (`paymentId` in the query)"
);
pgm_path!(
    pgm_status_post,
    post,
    "/v3/{gateway}/status",
    "A payment's status (`paymentId` in the query or body)"
);
pgm_path!(pgm_check, get, "/v3/{gateway}/check", "Check a payment");
pgm_path!(
    pgm_callback_get,
    get,
    "/v3/{gateway}/callback",
    "The PSP says a payment changed: re-sync it"
);
pgm_path!(
    pgm_callback_post,
    post,
    "/v3/{gateway}/callback",
    "The PSP says a payment changed: re-sync it"
);
pgm_path!(
    pgm_subscription_schedule,
    post,
    "/v3/{gateway}/subscription/schedule",
    "Schedule a subscription"
);
pgm_path!(
    pgm_subscription_start,
    post,
    "/v3/{gateway}/subscription/start",
    "Start a subscription (save the payment source)"
);
pgm_path!(
    pgm_subscription_pay,
    post,
    "/v3/{gateway}/subscription/pay",
    "Charge a subscription"
);
pgm_path!(
    pgm_subscription_update,
    post,
    "/v3/{gateway}/subscription/update/{token}",
    "Update a subscription",
    token
);
pgm_path!(
    pgm_subscription_status,
    get,
    "/v3/{gateway}/subscription/status/{token}",
    "A subscription's status",
    token
);
pgm_path!(
    pgm_subscription_expire_post,
    post,
    "/v3/{gateway}/subscription/expire/{token}",
    "End a subscription",
    token
);
pgm_path!(
    pgm_subscription_expire_delete,
    delete,
    "/v3/{gateway}/subscription/expire/{token}",
    "End a subscription",
    token
);

// ---- operator JSON routes ---------------------------------------------------------

#[utoipa::path(get, path = "/admin/plugins", tag = "admin",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Every plugin file the registry knows", body = PluginList),
        (status = 401, description = "Admin token required", body = AdminError),
    ))]
fn admin_plugins() {}

#[utoipa::path(get, path = "/admin/transactions", tag = "admin",
    security(("admin_token" = [])),
    params(
        ("status" = String, Query, description = "processing, approved, pending, declined, failed, unknown or escalated"),
        ("limit" = Option<i64>, Query, description = "1..1000, default 100"),
    ),
    responses(
        (status = 200, description = "Newest first", body = TransactionList),
        (status = 400, description = "Unknown status or bad limit", body = AdminError),
        (status = 401, description = "Admin token required", body = AdminError),
        (status = 503, description = "The store is unavailable", body = AdminError),
    ))]
fn admin_transactions() {}

#[utoipa::path(get, path = "/admin/callbacks", tag = "admin",
    security(("admin_token" = [])),
    params(
        ("state" = Option<String>, Query, description = "dead (default), waiting or delivered"),
        ("limit" = Option<i64>, Query, description = "1..1000, default 100"),
    ),
    responses(
        (status = 200, description = "Callbacks to the platform, without headers or bodies", body = CallbackList),
        (status = 400, description = "Unknown state or bad limit", body = AdminError),
        (status = 401, description = "Admin token required", body = AdminError),
        (status = 503, description = "The store is unavailable", body = AdminError),
    ))]
fn admin_callbacks() {}

#[utoipa::path(post, path = "/admin/callbacks/{id}/replay", tag = "admin",
    summary = "Put a dead letter back as due now (only with `[admin] token`)",
    security(("admin_token" = [])),
    params(("id" = i64, Path, description = "Callback id")),
    responses(
        (status = 200, description = "Queued again", body = Replayed),
        (status = 400, description = "Not a callback id", body = AdminError),
        (status = 401, description = "Admin token required", body = AdminError),
        (status = 404, description = "No such callback", body = AdminError),
        (status = 409, description = "Not dead", body = AdminError),
        (status = 503, description = "The store is unavailable", body = AdminError),
    ))]
fn admin_callback_replay() {}

#[utoipa::path(post, path = "/admin/gateways/{gateway}/call/{operation}", tag = "admin",
    summary = "Call a plugin operation directly, outside any payment (only with `[admin] token`)",
    security(("admin_token" = [])),
    params(
        ("gateway" = String, Path, description = "Gateway id"),
        ("operation" = String, Path, description = "authorize, capture, void, refund, sale, tokenize or sync"),
    ),
    request_body(content = DiagnosticCall, content_type = "application/json"),
    responses(
        (status = 200, description = "What the plugin answered", body = DiagnosticAnswer),
        (status = 400, description = "Unknown operation or bad body", body = DiagnosticAnswer),
        (status = 401, description = "Admin token required", body = AdminError),
        (status = 404, description = "Unknown gateway", body = DiagnosticAnswer),
        (status = 502, description = "The plugin failed", body = DiagnosticAnswer),
        (status = 503, description = "The plugin is not loaded", body = DiagnosticAnswer),
        (status = 504, description = "The plugin ran out of time", body = DiagnosticAnswer),
    ))]
fn admin_gateway_call() {}

// ---- the admin page ---------------------------------------------------------------

#[utoipa::path(get, path = "/admin", tag = "admin-page",
    summary = "The operator's page (HTML); a sign-in form without a session",
    params(("status" = Option<String>, Query, description = "Transactions listed"),
           ("notice" = Option<String>, Query, description = "A message to show")),
    responses(
        (status = 200, description = "The page", body = String, content_type = "text/html"),
        (status = 401, description = "The sign-in form", body = String, content_type = "text/html"),
        (status = 503, description = "The store is unavailable", body = String, content_type = "text/html"),
    ))]
fn admin_page() {}

#[utoipa::path(get, path = "/admin/", tag = "admin-page",
    responses((status = 303, description = "To /admin")))]
fn admin_page_slash() {}

#[utoipa::path(get, path = "/admin/page.css", tag = "admin-page",
    responses((status = 200, description = "The page's stylesheet", body = String, content_type = "text/css")))]
fn admin_page_css() {}

#[utoipa::path(post, path = "/admin/login", tag = "admin-page",
    request_body(content = SignIn, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Signed in: a session cookie, back to /admin"),
        (status = 400, description = "No token field", body = String, content_type = "text/html"),
        (status = 401, description = "Wrong token", body = String, content_type = "text/html"),
        (status = 403, description = "Posted from another origin", body = String, content_type = "text/html"),
    ))]
fn admin_login() {}

#[utoipa::path(post, path = "/admin/logout", tag = "admin-page",
    responses(
        (status = 303, description = "Session cookie cleared"),
        (status = 403, description = "Posted from another origin", body = String, content_type = "text/html"),
    ))]
fn admin_logout() {}

#[utoipa::path(post, path = "/admin/page/callbacks/{id}/replay", tag = "admin-page",
    summary = "The page's Replay button",
    params(("id" = String, Path, description = "Callback id")),
    responses(
        (status = 303, description = "Back to the page with what happened"),
        (status = 401, description = "Not signed in (or no admin token configured)", body = String, content_type = "text/html"),
        (status = 403, description = "Posted from another origin", body = String, content_type = "text/html"),
        (status = 503, description = "The store is unavailable", body = String, content_type = "text/html"),
    ))]
fn admin_page_replay() {}
