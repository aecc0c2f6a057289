//! One deployment as the gateway calls it: URLs, auth header, model ID, and
//! reading what a provider says about its rate limits.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use std::net::SocketAddr;

use axum::http::{HeaderMap, HeaderName, HeaderValue, Uri};
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::connect::dns::Name;

use super::request::{Endpoint, json_string};
use crate::config::{DeploymentConfig, Provider};

#[derive(Debug)]
pub struct Upstream {
    pub name: Arc<str>,
    pub config: DeploymentConfig,
    /// The deployment name as a response header value.
    pub header_name: HeaderValue,
    /// `model_id` as a JSON string literal, spliced into request bodies.
    pub model_json: Bytes,
    /// Built once: cloning a `Uri` shares its bytes.
    urls: [Uri; 3],
    /// The same in origin form (path and query), for HTTP/1.1 request lines.
    paths: [Uri; 3],
    /// `scheme://authority`: which pooled connections can carry its requests.
    origin: Arc<str>,
    /// The Host header, which the client would otherwise format per request.
    host: Option<HeaderValue>,
    auth: Option<(HeaderName, HeaderValue)>,
    /// Per endpoint, until when (gateway clock, in ms) this deployment is
    /// known not to offer it (it answered 404/405 for its path); 0: not known.
    not_offered_until: [AtomicU64; 3],
}

/// A deployment name as a header value: printable ASCII as is, every other
/// byte of its UTF-8 percent-encoded (`eu-süd` → `eu-s%C3%BCd`), so clients
/// that read headers as Latin-1 see no mojibake and can decode it.
fn header_safe(name: &str) -> HeaderValue {
    let mut out = String::with_capacity(name.len());
    for &b in name.as_bytes() {
        if (b' '..=b'~').contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    HeaderValue::from_str(&out).unwrap_or_else(|_| HeaderValue::from_static("unprintable-name"))
}

fn slot(endpoint: Endpoint) -> usize {
    match endpoint {
        Endpoint::ChatCompletions => 0,
        Endpoint::Completions => 1,
        Endpoint::Embeddings => 2,
    }
}

/// `host[:port]` as HTTP/1.1's Host header wants it: the port only when it
/// is not the scheme's default.
fn host_header(url: &Uri) -> Option<HeaderValue> {
    let host = url.host()?;
    let default = match url.scheme_str() {
        Some("https") => 443,
        _ => 80,
    };
    let value = match url.port_u16() {
        Some(port) if port != default => format!("{host}:{port}"),
        _ => host.to_string(),
    };
    HeaderValue::from_str(&value).ok()
}

/// Name resolution for upstream hosts: the system resolver, except that names
/// under `.invalid` fail at once without a query, as RFC 6761 asks (they can
/// never resolve, and an operator testing failover with one should not wait
/// on or leak to a DNS server).
#[derive(Debug, Default, Clone)]
pub struct Resolver;

type Resolving = std::pin::Pin<
    Box<dyn std::future::Future<Output = std::io::Result<std::vec::IntoIter<SocketAddr>>> + Send>,
>;

impl tower_service::Service<Name> for Resolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Resolving;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let bare = host.trim_end_matches('.');
            if bare.eq_ignore_ascii_case("invalid")
                || bare.to_ascii_lowercase().ends_with(".invalid")
            {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("`{host}` does not resolve (a reserved .invalid name)"),
                ));
            }
            let addrs = tokio::net::lookup_host((bare, 0)).await?;
            Ok(addrs.collect::<Vec<_>>().into_iter())
        })
    }
}

pub use super::client::{Client, Response};

/// `n` independent clients, each with its own connection pool: one per
/// serving thread, so a pooled connection is only ever driven by the thread
/// whose requests use it. The TLS settings (and the parsed root store) are
/// built once and shared.
pub fn clients(connect_timeout: Duration, n: usize) -> Result<Vec<Client>, rustls::Error> {
    use hyper_rustls::ConfigBuilderExt;
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_webpki_roots()
    .with_no_client_auth();
    Ok((0..n.max(1))
        .map(|_| Client::new(tls.clone(), connect_timeout))
        .collect())
}

impl Upstream {
    /// What the upstream said, with this deployment's key masked if it
    /// echoed it (some servers quote the key they rejected).
    pub fn scrub(&self, text: String) -> String {
        match &self.config.api_key {
            Some(key) => match key.scrub(&text) {
                std::borrow::Cow::Borrowed(_) => text,
                std::borrow::Cow::Owned(clean) => clean,
            },
            None => text,
        }
    }

    pub fn scrub_bytes(&self, body: Bytes) -> Bytes {
        match &self.config.api_key {
            Some(key) => key.scrub_bytes(body),
            None => body,
        }
    }

    pub fn new(config: DeploymentConfig) -> Self {
        let base = config.api_base.trim_end_matches('/');
        // The config module validated api_base as an http(s) URL; a parse
        // failure here would surface as a connection error on first use.
        let url = |e: Endpoint| {
            Uri::try_from(format!("{base}{}", e.path()))
                .unwrap_or_else(|_| Uri::from_static("http://invalid.invalid/"))
        };
        let urls = [
            url(Endpoint::ChatCompletions),
            url(Endpoint::Completions),
            url(Endpoint::Embeddings),
        ];
        let host = host_header(&urls[0]);
        let paths = urls.clone().map(|u| {
            u.path_and_query()
                .and_then(|p| Uri::try_from(p.as_str()).ok())
                .unwrap_or_else(|| Uri::from_static("/"))
        });
        let origin = match (urls[0].scheme_str(), urls[0].authority()) {
            (Some(scheme), Some(authority)) => format!("{scheme}://{authority}"),
            _ => String::new(),
        }
        .into();
        let auth = config.api_key.as_ref().and_then(|key| {
            let (name, value) = match config.provider {
                Provider::OpenAi => (
                    axum::http::header::AUTHORIZATION,
                    format!("Bearer {}", key.expose()),
                ),
                Provider::Azure => (HeaderName::from_static("api-key"), key.expose().to_string()),
            };
            let mut value = HeaderValue::from_str(&value).ok()?;
            // Keeps the key out of Debug output and HTTP/2 header compression tables.
            value.set_sensitive(true);
            Some((name, value))
        });
        Self {
            name: config.name.as_str().into(),
            header_name: header_safe(&config.name),
            model_json: json_string(&config.model_id),
            urls,
            paths,
            origin,
            host,
            auth,
            config,
            not_offered_until: Default::default(),
        }
    }

    /// Notes that the deployment answered that it does not offer `endpoint`,
    /// to be remembered until `until` (on the gateway's clock).
    pub fn mark_not_offered(&self, endpoint: Endpoint, until: Duration) {
        let ms = u64::try_from(until.as_millis()).unwrap_or(u64::MAX).max(1);
        self.not_offered_until[slot(endpoint)].store(ms, Ordering::Relaxed);
    }

    /// Whether, at `now`, the deployment is known not to offer `endpoint`.
    pub fn known_not_to_offer(&self, endpoint: Endpoint, now: Duration) -> bool {
        let until = self.not_offered_until[slot(endpoint)].load(Ordering::Relaxed);
        until != 0 && u128::from(until) > now.as_millis()
    }

    /// The deployment served `endpoint` after all.
    pub fn mark_offered(&self, endpoint: Endpoint) {
        let at = &self.not_offered_until[slot(endpoint)];
        // Read first: the common case writes nothing to the shared line.
        if at.load(Ordering::Relaxed) != 0 {
            at.store(0, Ordering::Relaxed);
        }
    }

    /// Sends `body` to the endpoint; resolves when the response headers are in.
    pub async fn request(
        &self,
        client: &Client,
        endpoint: Endpoint,
        body: Bytes,
    ) -> Result<Response, super::client::Error> {
        let mut req = axum::http::Request::new(Full::new(body));
        *req.method_mut() = axum::http::Method::POST;
        let headers = req.headers_mut();
        headers.insert(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some((name, value)) = &self.auth {
            headers.insert(name.clone(), value.clone());
        }
        let target = super::client::Target {
            origin: &self.origin,
            url: &self.urls[slot(endpoint)],
            path: &self.paths[slot(endpoint)],
            host: self.host.as_ref(),
        };
        // Boxed so the futures of the proxy that await this stay small:
        // they are moved as a whole, and inline this one is ~1.2 KB.
        Box::pin(client.send(target, req)).await
    }
}

/// How long a provider asks us to stay away after a 429, from the headers
/// OpenAI and Azure send: `retry-after-ms`, `retry-after` (seconds), then
/// `x-ratelimit-reset-tokens` / `-requests` (durations like `6m0s`, `250ms`).
pub fn rate_limit_hint(headers: &HeaderMap) -> Option<Duration> {
    rate_limit_hint_at(headers, std::time::SystemTime::now())
}

/// [`rate_limit_hint`] with the wall clock given: `retry-after` may be an
/// HTTP date (RFC 9110), which only means something relative to now.
pub fn rate_limit_hint_at(headers: &HeaderMap, now: std::time::SystemTime) -> Option<Duration> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = text("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        return positive_secs(ms / 1000.0);
    }
    if let Some(v) = text("retry-after") {
        if let Ok(s) = v.parse::<f64>() {
            return positive_secs(s);
        }
        if let Ok(at) = httpdate::parse_http_date(v) {
            // A date already past means "now": no wait, but still a hint.
            let wait = at.duration_since(now).unwrap_or_default();
            return positive_secs(wait.as_secs_f64());
        }
    }
    ["x-ratelimit-reset-tokens", "x-ratelimit-reset-requests"]
        .iter()
        .filter_map(|h| text(h).and_then(parse_reset))
        .max()
}

fn positive_secs(s: f64) -> Option<Duration> {
    (s.is_finite() && s >= 0.0).then(|| Duration::from_secs_f64(s.min(86_400.0)))
}

/// Parses OpenAI's reset durations: `1s`, `6m0s`, `1h2m3.5s`, `250ms`, or bare seconds.
pub fn parse_reset(v: &str) -> Option<Duration> {
    if let Ok(secs) = v.parse::<f64>() {
        return positive_secs(secs);
    }
    let mut total = 0.0f64;
    let mut number = String::new();
    let mut chars = v.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let value: f64 = number.parse().ok()?;
        number.clear();
        let unit = match c {
            'h' => 3600.0,
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                0.001
            }
            'm' => 60.0,
            's' => 1.0,
            _ => return None,
        };
        total += value * unit;
        any = true;
    }
    if !number.is_empty() || !any {
        return None;
    }
    positive_secs(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn the_host_header_carries_the_port_only_when_it_is_not_the_default() {
        let host = |url: &'static str| host_header(&Uri::from_static(url)).unwrap();
        assert_eq!(host("http://up.example:80/v1"), "up.example");
        assert_eq!(host("http://127.0.0.1:18080/v1"), "127.0.0.1:18080");
        assert_eq!(host("https://api.openai.com/v1"), "api.openai.com");
        assert_eq!(host("https://api.openai.com:443/v1"), "api.openai.com");
        assert_eq!(host("https://eu.example:8443/v1"), "eu.example:8443");
        assert_eq!(host("http://[::1]:9000/v1"), "[::1]:9000");
    }

    #[test]
    fn retry_after_may_be_an_http_date() {
        let now = httpdate::parse_http_date("Sat, 28 Nov 2026 12:00:00 GMT").unwrap();
        let h = headers(&[("retry-after", "Sat, 28 Nov 2026 12:00:42 GMT")]);
        assert_eq!(rate_limit_hint_at(&h, now), Some(Duration::from_secs(42)));
        let past = headers(&[("retry-after", "Sat, 28 Nov 2026 11:59:00 GMT")]);
        assert_eq!(rate_limit_hint_at(&past, now), Some(Duration::ZERO));
        let junk = headers(&[("retry-after", "soon")]);
        assert_eq!(rate_limit_hint_at(&junk, now), None);
    }

    #[test]
    fn deployment_names_become_readable_header_values() {
        assert_eq!(
            header_safe("azure-eastus").to_str().unwrap(),
            "azure-eastus"
        );
        assert_eq!(header_safe("eu süd").to_str().unwrap(), "eu s%C3%BCd");
        assert_eq!(header_safe("100%").to_str().unwrap(), "100%25");
        assert_eq!(header_safe("a\tb").to_str().unwrap(), "a%09b");
    }

    #[test]
    fn reset_durations_parse_like_openai_writes_them() {
        assert_eq!(parse_reset("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(parse_reset("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_reset("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(
            parse_reset("1h2m3.5s"),
            Some(Duration::from_secs_f64(3723.5))
        );
        assert_eq!(parse_reset("12"), Some(Duration::from_secs(12)));
        assert_eq!(parse_reset("soon"), None);
        assert_eq!(parse_reset("5x"), None);
    }

    #[test]
    fn hints_prefer_the_most_precise_header() {
        assert_eq!(
            rate_limit_hint(&headers(&[
                ("retry-after-ms", "1500"),
                ("retry-after", "9")
            ])),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            rate_limit_hint(&headers(&[("retry-after", "9")])),
            Some(Duration::from_secs(9))
        );
        assert_eq!(
            rate_limit_hint(&headers(&[
                ("x-ratelimit-reset-tokens", "20s"),
                ("x-ratelimit-reset-requests", "2s")
            ])),
            Some(Duration::from_secs(20))
        );
        assert_eq!(rate_limit_hint(&headers(&[])), None);
        assert_eq!(rate_limit_hint(&headers(&[("retry-after", "-3")])), None);
    }
}
