//! Outbound HTTP performed by the host for a plugin: the gateway's allow-list, timeouts, a
//! response size cap, no redirects, and logs that carry no header or body.

use std::time::{Duration, Instant};

use futures::StreamExt;

/// One `allowed_hosts` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    /// Lower-case host; a leading `*.` matches any subdomain (not the bare domain).
    host: String,
    port: Option<u16>,
    /// `http://` written explicitly: plain HTTP allowed to this authority.
    plain_http: bool,
}

impl HostPattern {
    pub fn parse(pattern: &str) -> Result<HostPattern, String> {
        let (plain_http, rest) = if let Some(rest) = pattern.strip_prefix("http://") {
            (true, rest)
        } else if let Some(rest) = pattern.strip_prefix("https://") {
            (false, rest)
        } else if pattern.contains("://") {
            return Err(format!(
                "`{pattern}`: only https:// or http:// may be written"
            ));
        } else {
            (false, pattern)
        };
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() || rest.contains('/') || rest.contains('@') {
            return Err(format!("`{pattern}`: expected host or host:port"));
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || rest.starts_with('[') => {
                let port = p
                    .parse::<u16>()
                    .map_err(|_| format!("`{pattern}`: bad port `{p}`"))?;
                (h, Some(port))
            }
            _ => (rest, None),
        };
        let host = host.to_ascii_lowercase();
        let bare = host.strip_prefix("*.").unwrap_or(&host);
        if bare.is_empty() || bare.contains('*') {
            return Err(format!(
                "`{pattern}`: a wildcard may only lead (`*.psp.com`)"
            ));
        }
        Ok(HostPattern {
            host,
            port,
            plain_http,
        })
    }

    fn matches(&self, url: &url::Url) -> bool {
        let Some(host) = url.host_str() else {
            return false;
        };
        let host = host.to_ascii_lowercase();
        let host_ok = match self.host.strip_prefix("*.") {
            Some(domain) => host.ends_with(&format!(".{domain}")),
            None => host == self.host,
        };
        let scheme_ok = match url.scheme() {
            "https" => true,
            "http" => self.plain_http,
            _ => false,
        };
        let port_ok = match self.port {
            Some(p) => url.port_or_known_default() == Some(p),
            None => url.port().is_none(),
        };
        host_ok && scheme_ok && port_ok
    }
}

/// What a gateway lets its plugin do on the network.
#[derive(Debug, Clone)]
pub struct OutboundPolicy {
    pub allowed: Vec<HostPattern>,
    pub timeout: Duration,
    pub max_response_bytes: u64,
}

impl OutboundPolicy {
    /// Checks a URL against the allow-list, by its parsed authority (never by a header).
    pub fn check(&self, raw: &str) -> Result<url::Url, OutboundError> {
        let url = url::Url::parse(raw).map_err(|e| OutboundError::InvalidUrl(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(OutboundError::InvalidUrl(format!(
                "scheme `{}` is not http(s)",
                url.scheme()
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(OutboundError::InvalidUrl(
                "credentials in the URL are not allowed; use a header".into(),
            ));
        }
        if self.allowed.iter().any(|p| p.matches(&url)) {
            Ok(url)
        } else {
            Err(OutboundError::Denied(format!(
                "{}://{} is not in the gateway's allowed_hosts",
                url.scheme(),
                authority(&url)
            )))
        }
    }
}

fn authority(url: &url::Url) -> String {
    match url.port() {
        Some(p) => format!("{}:{p}", url.host_str().unwrap_or("")),
        None => url.host_str().unwrap_or("").to_owned(),
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OutboundError {
    #[error("denied: {0}")]
    Denied(String),
    #[error("invalid url: {0}")]
    InvalidUrl(String),
    #[error("timed out")]
    Timeout,
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("response larger than {0} bytes")]
    TooLarge(u64),
    #[error("{0}")]
    Other(String),
}

/// A request as the plugin asked for it.
pub struct OutboundRequest {
    pub method: reqwest::Method,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub timeout: Option<Duration>,
}

pub struct OutboundResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// One client for the whole host: connection pools are shared, redirects are never
/// followed (a redirect could leave the allow-list).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("psp-gateway/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("TLS backend initialises")
}

/// Sends a plugin's request under the gateway's policy.
pub async fn send(
    client: &reqwest::Client,
    policy: &OutboundPolicy,
    req: OutboundRequest,
) -> Result<OutboundResponse, OutboundError> {
    let url = policy.check(&req.url)?;
    let timeout = req
        .timeout
        .map_or(policy.timeout, |t| t.min(policy.timeout));
    let mut builder = client.request(req.method.clone(), url.clone());
    for (name, value) in &req.headers {
        // The authority comes from the URL only.
        if name.eq_ignore_ascii_case("host") || name.eq_ignore_ascii_case("content-length") {
            continue;
        }
        builder = builder.header(name.as_str(), value.as_str());
    }
    let started = Instant::now();
    let result = tokio::time::timeout(timeout, async {
        let resp = builder
            .body(req.body)
            .send()
            .await
            .map_err(classify_reqwest)?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        if resp
            .content_length()
            .is_some_and(|n| n > policy.max_response_bytes)
        {
            return Err(OutboundError::TooLarge(policy.max_response_bytes));
        }
        let mut body = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(classify_reqwest)?;
            if body.len() as u64 + chunk.len() as u64 > policy.max_response_bytes {
                return Err(OutboundError::TooLarge(policy.max_response_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(OutboundResponse {
            status,
            headers,
            body,
        })
    })
    .await
    .unwrap_or(Err(OutboundError::Timeout));
    // Path only, ids shortened: query strings and bodies may carry secrets or card data,
    // and PSPs put reusable ids (payment methods, customers) in paths.
    let path = crate::redact::path(url.path());
    match &result {
        Ok(resp) => tracing::info!(
            method = %req.method, host = %authority(&url), path = %path,
            status = resp.status, elapsed_ms = started.elapsed().as_millis() as u64,
            "psp request"
        ),
        Err(e) => tracing::warn!(
            method = %req.method, host = %authority(&url), path = %path,
            error = %e, elapsed_ms = started.elapsed().as_millis() as u64,
            "psp request failed"
        ),
    }
    result
}

fn classify_reqwest(e: reqwest::Error) -> OutboundError {
    if e.is_timeout() {
        OutboundError::Timeout
    } else if e.is_connect() {
        OutboundError::Connect(root_cause(&e))
    } else {
        OutboundError::Other(root_cause(&e))
    }
}

/// The innermost error text, without the URL reqwest adds (it may carry a query string).
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(patterns: &[&str]) -> OutboundPolicy {
        OutboundPolicy {
            allowed: patterns
                .iter()
                .map(|p| HostPattern::parse(p).unwrap())
                .collect(),
            timeout: Duration::from_secs(1),
            max_response_bytes: 1024,
        }
    }

    #[test]
    fn exact_host_https_only() {
        let p = policy(&["api.stripe.com"]);
        assert!(p.check("https://api.stripe.com/v1/x?y=1").is_ok());
        assert!(p.check("https://API.Stripe.com/v1").is_ok());
        assert!(matches!(
            p.check("http://api.stripe.com/v1"),
            Err(OutboundError::Denied(_))
        ));
        assert!(matches!(
            p.check("https://api.stripe.com.evil.io/"),
            Err(OutboundError::Denied(_))
        ));
        assert!(matches!(
            p.check("https://api.stripe.com:8443/"),
            Err(OutboundError::Denied(_))
        ));
        assert!(matches!(
            p.check("https://user:pw@api.stripe.com/"),
            Err(OutboundError::InvalidUrl(_))
        ));
        assert!(matches!(
            p.check("file:///etc/passwd"),
            Err(OutboundError::InvalidUrl(_))
        ));
    }

    #[test]
    fn wildcard_port_and_plain_http() {
        let p = policy(&["*.adyen.com", "http://127.0.0.1:12111"]);
        assert!(
            p.check("https://checkout-test.adyen.com/v71/payments")
                .is_ok()
        );
        assert!(p.check("https://adyen.com/").is_err());
        assert!(p.check("http://127.0.0.1:12111/v1/x").is_ok());
        assert!(p.check("https://127.0.0.1:12111/v1/x").is_ok());
        assert!(p.check("http://127.0.0.1:12112/").is_err());
        assert!(p.check("http://127.0.0.1/").is_err());
    }

    #[test]
    fn empty_allow_list_denies_everything() {
        let p = policy(&[]);
        assert!(matches!(
            p.check("https://example.com/"),
            Err(OutboundError::Denied(_))
        ));
    }

    #[test]
    fn bad_patterns() {
        assert!(HostPattern::parse("ftp://x").is_err());
        assert!(HostPattern::parse("a.com/path").is_err());
        assert!(HostPattern::parse("a.*.com").is_err());
        assert!(HostPattern::parse("a.com:99999").is_err());
        assert!(HostPattern::parse("").is_err());
    }
}
