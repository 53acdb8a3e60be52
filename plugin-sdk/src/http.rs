//! Outbound HTTP through the host: a small request builder ([`Request`]), the [`Response`], the
//! form encoder ([`Form`]) and [`HttpError`], which converts into a [`Failure`].
//!
//! The host performs every request (allow-listed hosts, timeout, size cap); a plugin never opens
//! a socket itself.

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use crate::form::{Form, FormError};
use crate::types::Failure;

/// An HTTP method the host can perform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// `GET`
    Get,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `PATCH`
    Patch,
    /// `DELETE`
    Delete,
}

impl Method {
    /// The method's name in upper case (`"POST"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the host could not perform a request. Messages never contain headers or bodies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The URL's host is not in the gateway's `allowed_hosts`.
    #[error("host not allowed: {0}")]
    Denied(String),
    /// The URL is malformed or uses a scheme the host refuses.
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    /// No answer within the timeout.
    #[error("request timed out")]
    Timeout,
    /// The connection (DNS, TCP, TLS) failed.
    #[error("connection failed: {0}")]
    Connect(String),
    /// The response body exceeded the host's size cap (the number the host reported).
    #[error("response body too large ({0} bytes)")]
    TooLarge(u64),
    /// Anything else.
    #[error("request failed: {0}")]
    Other(String),
}

impl From<HttpError> for Failure {
    /// A denied or malformed URL is a configuration problem; the rest are outages, except an
    /// oversized answer, which the plugin cannot read.
    fn from(e: HttpError) -> Self {
        let message = e.to_string();
        match e {
            HttpError::Denied(_) | HttpError::InvalidUrl(_) => Failure::Misconfigured(message),
            HttpError::Timeout => Failure::Timeout(message),
            HttpError::Connect(_) | HttpError::Other(_) => Failure::Unreachable(message),
            HttpError::TooLarge(_) => Failure::BadResponse(message),
        }
    }
}

/// An outbound request, built fluently and sent with [`send`](Request::send).
///
/// Its `Debug` output shows header names and the body length only, never header values
/// (credentials) or the body.
#[derive(Clone, PartialEq, Eq)]
pub struct Request {
    method: Method,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    timeout_ms: Option<u32>,
    // A body that failed to serialize is reported by `send`, so the builder stays chainable.
    body_error: Option<String>,
}

impl Request {
    /// A request with no headers and an empty body.
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        Request {
            method,
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout_ms: None,
            body_error: None,
        }
    }

    /// A `GET` request.
    pub fn get(url: impl Into<String>) -> Self {
        Self::new(Method::Get, url)
    }

    /// A `POST` request.
    pub fn post(url: impl Into<String>) -> Self {
        Self::new(Method::Post, url)
    }

    /// A `PUT` request.
    pub fn put(url: impl Into<String>) -> Self {
        Self::new(Method::Put, url)
    }

    /// A `PATCH` request.
    pub fn patch(url: impl Into<String>) -> Self {
        Self::new(Method::Patch, url)
    }

    /// A `DELETE` request.
    pub fn delete(url: impl Into<String>) -> Self {
        Self::new(Method::Delete, url)
    }

    /// Sets a header, replacing any header of the same name (compared case-insensitively).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let name = name.into();
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(&name));
        self.headers.push((name, value.into()));
        self
    }

    /// Sets `Authorization: Bearer <token>`.
    pub fn bearer_auth(self, token: &str) -> Self {
        self.header("Authorization", format!("Bearer {token}"))
    }

    /// Sets `Authorization: Basic base64(<user>:<password>)`.
    pub fn basic_auth(self, user: &str, password: &str) -> Self {
        let credentials = crate::crypto::base64_encode(format!("{user}:{password}"));
        self.header("Authorization", format!("Basic {credentials}"))
    }

    /// Sets a raw body (set the `Content-Type` yourself).
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self.body_error = None;
        self
    }

    /// Serializes `value` as the JSON body and sets `Content-Type: application/json`.
    /// A value that cannot be serialized makes [`send`](Request::send) fail.
    pub fn json<T: Serialize + ?Sized>(mut self, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => {
                self.body = body;
                self.body_error = None;
            }
            Err(e) => self.body_error = Some(format!("JSON body could not be serialized: {e}")),
        }
        self.header("Content-Type", "application/json")
    }

    /// Sets a form body and `Content-Type: application/x-www-form-urlencoded`.
    pub fn form(self, form: &Form) -> Self {
        self.body(form.encode())
            .header("Content-Type", "application/x-www-form-urlencoded")
    }

    /// Gives up sooner than the gateway's timeout (the host never lets it be longer).
    pub fn timeout_ms(mut self, ms: u32) -> Self {
        self.timeout_ms = Some(ms);
        self
    }

    /// Has the host perform the request.
    pub fn send(self) -> Result<Response, HttpError> {
        if let Some(e) = &self.body_error {
            return Err(HttpError::Other(e.clone()));
        }
        crate::host::send(&self)
    }

    /// The method.
    pub fn method(&self) -> Method {
        self.method
    }

    /// The URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// All headers, in the order they were set.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The value of a header (name compared case-insensitively).
    pub fn header_value(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// The body bytes.
    pub fn body_bytes(&self) -> &[u8] {
        &self.body
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The per-request timeout, if set.
    pub fn timeout(&self) -> Option<u32> {
        self.timeout_ms
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("headers", &header_names(&self.headers))
            .field("body_len", &self.body.len())
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

/// The host's answer. A non-2xx status is still a `Response`; only transport problems are
/// [`HttpError`]s.
#[derive(Clone, PartialEq, Eq)]
pub struct Response {
    /// The HTTP status code.
    pub status: u16,
    /// The response headers as received.
    pub headers: Vec<(String, String)>,
    /// The response body.
    pub body: Vec<u8>,
}

impl Response {
    /// `true` for a 2xx status.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The value of a header (name compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Parses the body as JSON into `T`.
    ///
    /// On error, a [`Failure::BadResponse`] that names the status and the position of the
    /// problem but quotes nothing from the body (it may hold personal data).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Failure> {
        serde_json::from_slice(&self.body).map_err(|e| {
            let what = match e.classify() {
                serde_json::error::Category::Io => "unreadable",
                serde_json::error::Category::Syntax => "not valid JSON",
                serde_json::error::Category::Data => "not of the expected shape",
                serde_json::error::Category::Eof => "truncated JSON",
            };
            Failure::BadResponse(format!(
                "HTTP {} response body is {what} (line {}, column {})",
                self.status,
                e.line(),
                e.column()
            ))
        })
    }

    /// Turns a 5xx answer into [`Failure::Unreachable`] (the contract counts a PSP's server
    /// errors as outages) and passes any other response through.
    pub fn error_for_server_status(self) -> Result<Self, Failure> {
        if self.status >= 500 {
            Err(Failure::Unreachable(format!(
                "the PSP answered HTTP {}",
                self.status
            )))
        } else {
            Ok(self)
        }
    }
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("headers", &header_names(&self.headers))
            .field("body_len", &self.body.len())
            .finish()
    }
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn header_names(headers: &[(String, String)]) -> Vec<&str> {
    headers.iter().map(|(k, _)| k.as_str()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_errors_map_to_failures() {
        assert!(matches!(
            Failure::from(HttpError::Denied("x.example".into())),
            Failure::Misconfigured(_)
        ));
        assert!(matches!(
            Failure::from(HttpError::InvalidUrl("nope".into())),
            Failure::Misconfigured(_)
        ));
        assert!(matches!(
            Failure::from(HttpError::Timeout),
            Failure::Timeout(_)
        ));
        assert!(matches!(
            Failure::from(HttpError::Connect("refused".into())),
            Failure::Unreachable(_)
        ));
        assert!(matches!(
            Failure::from(HttpError::TooLarge(10)),
            Failure::BadResponse(_)
        ));
        assert!(matches!(
            Failure::from(HttpError::Other("?".into())),
            Failure::Unreachable(_)
        ));
    }

    #[test]
    fn builder_sets_headers_and_bodies() {
        let req = Request::post("https://api.example/v1")
            .bearer_auth("sk_secret")
            .header("content-type", "text/plain")
            .json(&serde_json::json!({"a": 1}))
            .timeout_ms(500);
        assert_eq!(req.header_value("AUTHORIZATION"), Some("Bearer sk_secret"));
        assert_eq!(req.header_value("Content-Type"), Some("application/json"));
        assert_eq!(
            req.headers().len(),
            2,
            "content-type replaced, not duplicated"
        );
        assert_eq!(req.body_text(), r#"{"a":1}"#);
        assert_eq!(req.timeout(), Some(500));
        let debug = format!("{req:?}");
        assert!(!debug.contains("sk_secret"), "{debug}");

        let basic = Request::get("https://x").basic_auth("user", "pass");
        assert_eq!(
            basic.header_value("authorization"),
            Some("Basic dXNlcjpwYXNz")
        );
    }

    #[test]
    fn response_helpers() {
        let resp = Response {
            status: 402,
            headers: vec![("Request-Id".into(), "req_1".into())],
            body: br#"{"error":{"code":"card_declined"}}"#.to_vec(),
        };
        assert!(!resp.is_success());
        assert_eq!(resp.header("request-id"), Some("req_1"));
        let v: serde_json::Value = resp.json().unwrap();
        assert_eq!(v["error"]["code"], "card_declined");

        let bad = Response {
            status: 200,
            headers: vec![],
            body: b"{\"amount\": \"secret-ish\"}".to_vec(),
        };
        #[derive(serde::Deserialize, Debug)]
        struct Shape {
            #[allow(dead_code)]
            amount: u64,
        }
        let err = bad.json::<Shape>().unwrap_err();
        assert!(matches!(err, Failure::BadResponse(_)));
        assert!(!err.message().contains("secret-ish"), "{}", err.message());

        let down = Response {
            status: 503,
            headers: vec![],
            body: vec![],
        };
        assert!(matches!(
            down.error_for_server_status(),
            Err(Failure::Unreachable(_))
        ));
    }
}
