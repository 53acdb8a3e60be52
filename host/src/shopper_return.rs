//! `GET|POST /psp/{gateway}/return/{id}`: the shopper coming back from the PSP (a 3-D
//! Secure page, a wallet's approval) when `[server] public_url` routes returns through the
//! host. The query (and, for POST, the form) goes to the plugin's `complete`; the shopper
//! is then sent on (303) to the platform's return URL, or shown a short page when the
//! platform gave none (Commerce Layer's external gateway learns the outcome by callback).

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};

use crate::app::AppState;
use crate::plugins::types::Pair;
use crate::store::Status;

pub async fn receive(
    State(state): State<AppState>,
    Path((gateway, id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut parameters = pairs(query.as_deref().unwrap_or("").as_bytes());
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if form {
        parameters.extend(pairs(&body));
    }
    match state
        .payments
        .shopper_returned(&gateway, &id, parameters)
        .await
    {
        Ok(Some(returned)) => match returned.next {
            Some(next) => Redirect::to(&next).into_response(),
            None => page(StatusCode::OK, message(returned.status)),
        },
        Ok(None) => page(StatusCode::NOT_FOUND, "This payment link is not known."),
        Err(e) => {
            tracing::error!(gateway, "shopper return: {e}");
            page(
                StatusCode::SERVICE_UNAVAILABLE,
                "The payment cannot be checked right now; please reload this page.",
            )
        }
    }
}

fn pairs(encoded: &[u8]) -> Vec<Pair> {
    url::form_urlencoded::parse(encoded)
        .map(|(key, value)| Pair {
            key: key.into_owned(),
            value: value.into_owned(),
        })
        .collect()
}

fn message(status: Status) -> &'static str {
    match status {
        Status::Approved => "Thank you: the payment is confirmed. You can return to the shop.",
        Status::Declined | Status::Failed => {
            "The payment was not accepted. You can return to the shop and try again."
        }
        _ => "The payment is being processed. You can return to the shop.",
    }
}

fn page(status: StatusCode, text: &str) -> Response {
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Payment</title></head>\
         <body><p>{text}</p></body></html>"
    );
    (status, Html(html)).into_response()
}
