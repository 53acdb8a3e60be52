//! The one place that reaches the host: on `wasm32` the WIT imports, natively the thread-local
//! [`testing::Harness`](crate::testing::Harness). [`http`](crate::http),
//! [`settings`](crate::settings), [`log`](crate::log) and [`cache`](crate::cache) go through
//! here only.

pub(crate) use imp::{cache_get, cache_remove, cache_set, send, setting, write_log};

#[cfg(target_arch = "wasm32")]
mod imp {
    use crate::bindings::psp::plugin::{
        cache as wit_cache, http as wit, log as wit_log, settings as wit_settings,
    };
    use crate::http::{HttpError, Method, Request, Response};
    use crate::log::Level;
    use crate::types::Pair;

    pub(crate) fn send(req: &Request) -> Result<Response, HttpError> {
        let wire = wit::Request {
            method: match req.method() {
                Method::Get => wit::Method::Get,
                Method::Post => wit::Method::Post,
                Method::Put => wit::Method::Put,
                Method::Patch => wit::Method::Patch,
                Method::Delete => wit::Method::Delete,
            },
            url: req.url().to_owned(),
            headers: req.headers().iter().map(|(k, v)| Pair::new(k, v)).collect(),
            body: req.body_bytes().to_vec(),
            timeout_ms: req.timeout(),
        };
        match wit::send(&wire) {
            Ok(resp) => Ok(Response {
                status: resp.status,
                headers: resp.headers.into_iter().map(|p| (p.key, p.value)).collect(),
                body: resp.body,
            }),
            Err(e) => Err(match e {
                wit::HttpError::Denied(m) => HttpError::Denied(m),
                wit::HttpError::InvalidUrl(m) => HttpError::InvalidUrl(m),
                wit::HttpError::Timeout => HttpError::Timeout,
                wit::HttpError::Connect(m) => HttpError::Connect(m),
                wit::HttpError::TooLarge(n) => HttpError::TooLarge(n),
                wit::HttpError::Other(m) => HttpError::Other(m),
            }),
        }
    }

    pub(crate) fn setting(name: &str) -> Option<String> {
        wit_settings::get(name)
    }

    pub(crate) fn write_log(level: Level, message: &str) {
        let level = match level {
            Level::Trace => wit_log::Level::Trace,
            Level::Debug => wit_log::Level::Debug,
            Level::Info => wit_log::Level::Info,
            Level::Warn => wit_log::Level::Warn,
            Level::Error => wit_log::Level::Error,
        };
        wit_log::write(level, message);
    }

    pub(crate) fn cache_get(key: &str) -> Option<Vec<u8>> {
        wit_cache::get(key)
    }

    pub(crate) fn cache_set(key: &str, value: &[u8], ttl_ms: u32) {
        wit_cache::set(key, value, ttl_ms)
    }

    pub(crate) fn cache_remove(key: &str) {
        wit_cache::remove(key)
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    pub(crate) use crate::testing::{cache_get, cache_remove, cache_set, send, setting, write_log};
}
