//! The operator's page at `/admin`: server-rendered HTML over what the JSON admin routes
//! expose (plugins, gateways, transactions, the outbox), with a replay button for dead
//! letters. No script and no front-end build: forms and links only.
//!
//! A browser cannot send the admin bearer token, so with `[admin] token` set the page asks
//! for it once and keeps a session cookie derived from it (HMAC of a fixed label): no
//! server-side session table, the same cookie valid on every replica, and rotating the
//! token ends every session. The cookie is `HttpOnly` and `SameSite=Strict`, and the page's
//! forms also check `Origin`, so another site cannot post a replay with it.

mod render;

use axum::Form;
use axum::Router;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use crate::app::AppState;
use crate::signature::{constant_time_eq, hmac_sha256};
use crate::store::now_ms;
use crate::store::outbox::{CallbackState, Replay};

pub use render::escape;

const COOKIE: &str = "psp_admin_session";
const SESSION_LABEL: &[u8] = b"psp-gateway admin page session v1";
/// Rows per table: a page to look at, not an export.
const ROWS: i64 = 50;
/// No inline script or style, nothing from elsewhere, no framing.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

/// `/admin` and its forms. Mounted beside the JSON admin routes, with its own check (bearer
/// token or session cookie) instead of `ops::require_admin`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin", get(page))
        .route("/admin/", get(|| async { Redirect::to("/admin") }))
        .route("/admin/page.css", get(stylesheet))
        .route("/admin/login", post(login))
        .route("/admin/logout", post(logout))
        .route("/admin/page/callbacks/{id}/replay", post(replay))
}

#[derive(Deserialize, Default)]
pub struct PageQuery {
    status: Option<String>,
    notice: Option<String>,
}

async fn page(
    State(state): State<AppState>,
    q: Result<Query<PageQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let q = q.map(|Query(q)| q).unwrap_or_default();
    if !signed_in(&state, &headers) {
        return html(StatusCode::UNAUTHORIZED, render::login(None));
    }
    let listed = render::STATUSES
        .into_iter()
        .find(|s| q.status.as_deref() == Some(*s))
        .unwrap_or("approved");
    let store = state.payments.store();
    let data = async {
        let open_pending = store.list("pending", ROWS).await?;
        let open_unknown = store.list("unknown", ROWS).await?;
        let listed_rows = store.list(listed, ROWS).await?;
        let counts = store.callback_counts().await?;
        let dead = store.list_callbacks(CallbackState::Dead, ROWS).await?;
        let waiting = store.list_callbacks(CallbackState::Waiting, ROWS).await?;
        Ok::<_, crate::store::StoreError>(render::Data {
            open: open_pending.into_iter().chain(open_unknown).collect(),
            listed,
            listed_rows,
            counts,
            dead,
            waiting: waiting
                .into_iter()
                .filter(|c| c.state == CallbackState::Waiting)
                .collect(),
        })
    }
    .await;
    match data {
        Ok(data) => {
            let view = render::View {
                plugins: crate::ops::plugin_views(&state),
                config: &state.config,
                replay_enabled: state.config.admin.token.is_some(),
                notice: q.notice.as_deref(),
                now_ms: now_ms(),
                data,
            };
            html(StatusCode::OK, render::page(&view))
        }
        Err(e) => {
            tracing::error!("admin page: {e}");
            html(
                StatusCode::SERVICE_UNAVAILABLE,
                render::unavailable(&e.to_string()),
            )
        }
    }
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        include_str!("page.css"),
    )
        .into_response()
}

#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
}

async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let Some(token) = &state.config.admin.token else {
        return Redirect::to("/admin").into_response();
    };
    if !same_origin(&headers) {
        return forbidden();
    }
    let Ok(Form(form)) = form else {
        return html(
            StatusCode::BAD_REQUEST,
            render::login(Some("Sign in with the admin token.")),
        );
    };
    if !constant_time_eq(form.token.as_bytes(), token.expose().as_bytes()) {
        tracing::warn!("admin page: sign-in with a wrong token");
        return html(
            StatusCode::UNAUTHORIZED,
            render::login(Some("That is not the admin token.")),
        );
    }
    let cookie = format!(
        "{COOKIE}={}; Path=/admin; HttpOnly; SameSite=Strict",
        session_value(token.expose())
    );
    with_cookie(Redirect::to("/admin").into_response(), &cookie)
}

async fn logout(headers: HeaderMap) -> Response {
    if !same_origin(&headers) {
        return forbidden();
    }
    let cookie = format!("{COOKIE}=; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=0");
    with_cookie(Redirect::to("/admin").into_response(), &cookie)
}

/// The replay button: the same store operation as `POST /admin/callbacks/{id}/replay`, then
/// back to the page with what happened. Only with a token, like the JSON route: without
/// one the page is read-only.
async fn replay(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if state.config.admin.token.is_none() || !signed_in(&state, &headers) {
        return html(StatusCode::UNAUTHORIZED, render::login(None));
    }
    if !same_origin(&headers) {
        return forbidden();
    }
    let Ok(id) = id.parse::<i64>() else {
        let to = format!(
            "/admin?notice={}#outbox",
            url_encode("There is no such callback.")
        );
        return Redirect::to(&to).into_response();
    };
    let notice = match state.payments.store().replay_callback(id, now_ms()).await {
        Ok(Replay::Requeued) => {
            tracing::info!(
                callback_id = id,
                "dead callback replayed from the admin page"
            );
            state.outbox_wake.notify_one();
            format!("Callback {id} queued for delivery again.")
        }
        Ok(Replay::NotFound) => format!("There is no callback {id}."),
        Ok(Replay::NotDead(now)) => format!("Callback {id} is {}, not dead.", now.as_str()),
        Err(e) => {
            tracing::error!("admin page replay: {e}");
            return html(
                StatusCode::SERVICE_UNAVAILABLE,
                render::unavailable(&e.to_string()),
            );
        }
    };
    let to = format!("/admin?notice={}#outbox", url_encode(&notice));
    Redirect::to(&to).into_response()
}

/// With no admin token configured the page is open, as the JSON routes are.
fn signed_in(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(token) = &state.config.admin.token else {
        return true;
    };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if let Some(given) = bearer {
        return constant_time_eq(given.as_bytes(), token.expose().as_bytes());
    }
    let expected = session_value(token.expose());
    cookie(headers, COOKIE).is_some_and(|v| constant_time_eq(v.as_bytes(), expected.as_bytes()))
}

fn session_value(token: &str) -> String {
    hex::encode(hmac_sha256(token.as_bytes(), SESSION_LABEL))
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A form post must come from this page: an `Origin` naming another host is refused. Some
/// clients send none (curl); the `SameSite=Strict` cookie still keeps other sites out.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .unwrap_or("");
    !host.is_empty() && authority == host
}

fn forbidden() -> Response {
    html(
        StatusCode::FORBIDDEN,
        render::unavailable("this form was posted from another origin"),
    )
}

fn with_cookie(mut resp: Response, cookie: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            // Not `no-referrer`: with it a browser sends `Origin: null` on the page's own forms.
            (header::REFERRER_POLICY, "same-origin"),
        ],
        body,
    )
        .into_response()
}

fn url_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn the_session_cookie_is_found_among_others_and_depends_on_the_token() {
        let h = headers(&[(header::COOKIE, "a=1; psp_admin_session=abc ; b=2")]);
        assert_eq!(cookie(&h, COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "c"), None);
        assert_ne!(session_value("one"), session_value("two"));
        assert!(!session_value("one").contains("one"));
    }

    #[test]
    fn a_form_from_another_origin_is_refused() {
        let host = (header::HOST, "127.0.0.1:8080");
        assert!(same_origin(&headers(std::slice::from_ref(&host))));
        assert!(same_origin(&headers(&[
            host.clone(),
            (header::ORIGIN, "http://127.0.0.1:8080")
        ])));
        assert!(!same_origin(&headers(&[
            host.clone(),
            (header::ORIGIN, "http://evil.example")
        ])));
        assert!(!same_origin(&headers(&[host, (header::ORIGIN, "null")])));
    }
}
