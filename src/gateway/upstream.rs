//! One deployment as the gateway calls it: its provider's plan (URLs,
//! headers, dialect), its connection origin, its model ID.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use std::net::SocketAddr;

use axum::http::{HeaderValue, Uri};
use bytes::Bytes;
use hyper_util::client::legacy::connect::dns::Name;

use super::provider::{Auth, Plan, Target, slot};
use super::request::{Endpoint, json_string};
use crate::config::DeploymentConfig;

#[derive(Debug)]
pub struct Upstream {
    pub name: Arc<str>,
    pub config: DeploymentConfig,
    /// The deployment name as a response header value.
    pub header_name: HeaderValue,
    /// `model_id` as a JSON string literal, spliced into request bodies.
    pub model_json: Bytes,
    /// How its provider is called: URLs, headers, dialect.
    pub plan: Plan,
    /// `scheme://authority`: which pooled connections can carry its requests.
    origin: Arc<str>,
    /// The Host header, which the client would otherwise format per request.
    host: Option<HeaderValue>,
    /// Per endpoint, until when (gateway clock, in ms) this deployment is
    /// known not to offer it (it answered 404/405 for its path); 0: not known.
    not_offered_until: [AtomicU64; crate::gateway::request::ENDPOINTS],
    /// Its streams that broke after their first byte since one last
    /// completed (see `Relay::broken_again`).
    broken_streams: std::sync::atomic::AtomicU32,
}

/// A deployment name as a header value: printable ASCII as is, every other
/// byte of its UTF-8 percent-encoded (`eu-süd` → `eu-s%C3%BCd`), so clients
/// that read headers as Latin-1 see no mojibake and can decode it.
pub(super) fn header_safe(name: &str) -> HeaderValue {
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

pub use super::client::{Client, Outgoing, Response};

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
    /// Every secret of the deployment: its key, and its AWS keys.
    fn secrets(&self) -> impl Iterator<Item = &crate::config::ApiKey> {
        let aws = self.config.aws.as_ref();
        self.config
            .api_key
            .iter()
            .chain(aws.map(|a| &a.secret_access_key))
            .chain(aws.and_then(|a| a.session_token.as_ref()))
            .chain(aws.map(|a| &a.access_key_id))
    }

    pub fn scrub(&self, mut text: String) -> String {
        for key in self.secrets() {
            if let std::borrow::Cow::Owned(clean) = key.scrub(&text) {
                text = clean;
            }
        }
        text
    }

    pub fn scrub_bytes(&self, mut body: Bytes) -> Bytes {
        for key in self.secrets() {
            body = key.scrub_bytes(body);
        }
        body
    }

    pub fn new(config: DeploymentConfig) -> Self {
        let plan = Plan::new(&config);
        // Every provider offers chat completions: its URL names the origin.
        let any = plan
            .target(Endpoint::ChatCompletions)
            .map(|t| t.url.clone())
            .unwrap_or_else(|| Uri::from_static("http://invalid.invalid/"));
        let host = host_header(&any);
        let origin = match (any.scheme_str(), any.authority()) {
            (Some(scheme), Some(authority)) => format!("{scheme}://{authority}"),
            _ => String::new(),
        }
        .into();
        Self {
            name: config.name.as_str().into(),
            header_name: header_safe(&config.name),
            model_json: json_string(&config.model_id),
            plan,
            origin,
            host,
            config,
            not_offered_until: Default::default(),
            broken_streams: Default::default(),
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

    /// One more stream broke after its first byte; how many in a row.
    pub fn stream_broke(&self) -> u32 {
        self.broken_streams.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// A stream ran to its end: the breaks before it are forgiven.
    pub fn stream_completed(&self) {
        // Read first: the common case writes nothing to the shared line.
        if self.broken_streams.load(Ordering::Relaxed) != 0 {
            self.broken_streams.store(0, Ordering::Relaxed);
        }
    }

    /// The deployment served `endpoint` after all.
    pub fn mark_offered(&self, endpoint: Endpoint) {
        let at = &self.not_offered_until[slot(endpoint)];
        // Read first: the common case writes nothing to the shared line.
        if at.load(Ordering::Relaxed) != 0 {
            at.store(0, Ordering::Relaxed);
        }
    }

    /// The per-request auth headers: a SigV4 signature over `body`, or a
    /// Google access token (fetched when the cached one is due).
    async fn authorize(
        &self,
        t: &Target,
        body: &Bytes,
    ) -> Result<Vec<(axum::http::HeaderName, HeaderValue)>, Sent> {
        match &self.plan.auth {
            Auth::Static => Ok(Vec::new()),
            Auth::SigV4(signer) => {
                let host = self
                    .host
                    .as_ref()
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or_default();
                signer
                    .sign(&t.url.to_string(), host, body, std::time::SystemTime::now())
                    .map_err(Sent::Auth)
            }
            Auth::Google(tokens) => {
                use secrecy::ExposeSecret;
                let token = tokens.token().await.map_err(Sent::Auth)?;
                let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))
                    .map_err(|_| Sent::Auth("the access token is not a header value".into()))?;
                value.set_sensitive(true);
                Ok(vec![(axum::http::header::AUTHORIZATION, value)])
            }
        }
    }

    /// Sends `body` to the endpoint; resolves when the response headers are in.
    /// The caller only sends to endpoints the plan offers.
    pub async fn request(
        &self,
        client: &Client,
        endpoint: Endpoint,
        stream: bool,
        body: Bytes,
        extra: &[(axum::http::HeaderName, HeaderValue)],
    ) -> Result<Response, Sent> {
        static NOWHERE: std::sync::LazyLock<Target> =
            std::sync::LazyLock::new(|| Target::new("http://invalid.invalid/"));
        let t = self.plan.target_for(endpoint, stream).unwrap_or(&NOWHERE);
        // The OpenAI path has static auth only: it pays for one check.
        let signed = match &self.plan.auth {
            Auth::Static => None,
            _ => Some(Box::pin(self.authorize(t, &body)).await?),
        };
        let req = Outgoing {
            method: axum::http::Method::POST,
            headers: [
                &*JSON,
                self.plan.headers.as_slice(),
                extra,
                signed.as_deref().unwrap_or_default(),
            ],
            body,
        };
        let target = super::client::Target {
            origin: &self.origin,
            url: &t.url,
            path: &t.path,
            host: self.host.as_ref(),
        };
        // Boxed so the futures of the proxy that await this stay small:
        // they are moved as a whole, and inline this one is ~1.2 KB.
        Box::pin(client.send(target, req)).await.map_err(Sent::Http)
    }
}

impl Upstream {
    /// A call about a response it stored (`GET` / `DELETE
    /// /responses/{id}`, `/input_items`, `/cancel`) at `url`, with its
    /// plan's headers: only deployments with a Responses API (static
    /// auth) store responses.
    pub async fn about_response(
        &self,
        client: &Client,
        method: axum::http::Method,
        url: &str,
        body: Bytes,
    ) -> Result<Response, Sent> {
        let t = Target::new(url);
        let req = Outgoing {
            method,
            headers: [&*JSON, self.plan.headers.as_slice(), &[], &[]],
            body,
        };
        let target = super::client::Target {
            origin: &self.origin,
            url: &t.url,
            path: &t.path,
            host: self.host.as_ref(),
        };
        Box::pin(client.send(target, req)).await.map_err(Sent::Http)
    }
}

/// Every request's body is JSON (a deployment's plan may say otherwise: its
/// headers come after this one).
static JSON: std::sync::LazyLock<[(axum::http::HeaderName, HeaderValue); 1]> =
    std::sync::LazyLock::new(|| {
        [(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )]
    });

/// Why a request got no response.
#[derive(Debug)]
pub enum Sent {
    /// The deployment's auth could not be worked out (it is never sent).
    Auth(String),
    Http(super::client::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn deployment_names_become_readable_header_values() {
        assert_eq!(
            header_safe("azure-eastus").to_str().unwrap(),
            "azure-eastus"
        );
        assert_eq!(header_safe("eu süd").to_str().unwrap(), "eu s%C3%BCd");
        assert_eq!(header_safe("100%").to_str().unwrap(), "100%25");
        assert_eq!(header_safe("a\tb").to_str().unwrap(), "a%09b");
    }
}
