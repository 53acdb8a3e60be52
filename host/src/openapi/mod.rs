//! The OpenAPI 3.1 document of every route, built from `paths` and `schemas` with utoipa
//! and served at `/openapi.json`. A test below reads the routers' sources and fails when a
//! route or method is mounted without being documented, or documented without being
//! mounted; schemathesis (in the test suite) checks real answers against the document.

mod paths;
mod schemas;

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "psp-gateway",
        description = "Payment gateway host: Commerce Layer's external payment gateway and \
            Mia-Platform PGM's external provider over sandboxed WebAssembly PSP plugins, with \
            the operator routes. With `[admin] listen` the `/admin` and `/metrics` routes are \
            served on that address instead."
    ),
    paths(
        paths::healthz,
        paths::readyz,
        paths::metrics,
        paths::openapi_json,
        paths::psp_webhook,
        paths::shopper_return_get,
        paths::shopper_return_post,
        paths::commerce_layer,
        paths::pgm_pay,
        paths::pgm_refund,
        paths::pgm_status_get,
        paths::pgm_status_post,
        paths::pgm_check,
        paths::pgm_callback_get,
        paths::pgm_callback_post,
        paths::pgm_subscription_schedule,
        paths::pgm_subscription_start,
        paths::pgm_subscription_pay,
        paths::pgm_subscription_update,
        paths::pgm_subscription_status,
        paths::pgm_subscription_expire_post,
        paths::pgm_subscription_expire_delete,
        paths::admin_plugins,
        paths::admin_transactions,
        paths::admin_callbacks,
        paths::admin_callback_replay,
        paths::admin_gateway_call,
        paths::admin_page,
        paths::admin_page_slash,
        paths::admin_page_css,
        paths::admin_login,
        paths::admin_logout,
        paths::admin_page_replay,
    ),
    modifiers(&Security),
    tags(
        (name = "commerce-layer", description = "Commerce Layer external payment gateway"),
        (name = "pgm", description = "Mia-Platform Payment Gateway Manager external provider"),
        (name = "psp", description = "Notifications from PSPs"),
        (name = "operations", description = "Health, readiness, metrics"),
        (name = "admin", description = "Operator routes (JSON), behind the admin token when one is set"),
        (name = "admin-page", description = "The operator's HTML page"),
    )
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        components.add_security_scheme(
            "pgm_token",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The document as JSON, built once.
pub fn json() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        ApiDoc::openapi()
            .to_json()
            .expect("the document serialises")
    })
}

/// `GET /openapi.json`.
pub async fn document() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], json()).into_response()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// (METHOD, path) for every `.route("path", method(..).method(..))` in a source file.
    fn mounted(source: &str) -> BTreeSet<(String, String)> {
        let mut found = BTreeSet::new();
        let mut rest = source;
        while let Some(at) = rest.find(".route(") {
            rest = &rest[at + ".route(".len()..];
            let open = rest.find('"').expect("a path literal");
            let close = open + 1 + rest[open + 1..].find('"').expect("path end");
            let path = rest[open + 1..close].to_owned();
            // The handler expression runs to the `)` that closes `.route(`.
            let mut depth = 1;
            let mut end = close;
            for (i, c) in rest[close..].char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                if depth == 0 {
                    end = close + i;
                    break;
                }
            }
            let handler = &rest[close + 1..end];
            for method in ["get", "post", "put", "delete", "patch"] {
                let call = format!("{method}(");
                let hits = handler.match_indices(&call).any(|(i, _)| {
                    i == 0 || !handler[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_')
                });
                if hits {
                    found.insert((method.to_uppercase(), path.clone()));
                }
            }
            rest = &rest[end..];
        }
        found
    }

    fn documented() -> BTreeSet<(String, String)> {
        let doc: serde_json::Value = serde_json::from_str(json()).unwrap();
        let mut found = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                found.insert((method.to_uppercase(), path.clone()));
            }
        }
        found
    }

    #[test]
    fn every_mounted_route_is_documented_and_nothing_else() {
        let mut mounted_routes = BTreeSet::new();
        for source in [
            include_str!("../app.rs"),
            include_str!("../protocol/pgm/mod.rs"),
            include_str!("../admin_page/mod.rs"),
        ] {
            mounted_routes.extend(mounted(source));
        }
        assert!(mounted_routes.len() > 25, "{mounted_routes:?}");
        let documented = documented();
        let missing: Vec<_> = mounted_routes.difference(&documented).collect();
        let extra: Vec<_> = documented.difference(&mounted_routes).collect();
        assert!(missing.is_empty(), "mounted, not documented: {missing:?}");
        assert!(extra.is_empty(), "documented, not mounted: {extra:?}");
    }

    #[test]
    fn the_route_scan_sees_methods_chained_on_one_route() {
        let found = mounted(
            r#".route("/a/{x}", get(h).post(other))
               .route(
                   "/b",
                   post(f).delete(f),
               ).route("/c", get(|| async { target() }))"#,
        );
        let want: BTreeSet<_> = [
            ("GET", "/a/{x}"),
            ("POST", "/a/{x}"),
            ("POST", "/b"),
            ("DELETE", "/b"),
            ("GET", "/c"),
        ]
        .into_iter()
        .map(|(m, p)| (m.to_owned(), p.to_owned()))
        .collect();
        assert_eq!(found, want);
    }

    #[test]
    fn operation_ids_are_unique_and_the_document_is_openapi_3() {
        let doc: serde_json::Value = serde_json::from_str(json()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        let mut ids = BTreeSet::new();
        for item in doc["paths"].as_object().unwrap().values() {
            for op in item.as_object().unwrap().values() {
                let id = op["operationId"].as_str().unwrap().to_owned();
                assert!(ids.insert(id.clone()), "duplicate operationId {id}");
            }
        }
    }
}
