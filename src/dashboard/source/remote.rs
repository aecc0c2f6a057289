//! A gateway that runs elsewhere, reached through its admin API only:
//! `/admin/state` polled, `/admin/events` followed, and the toggle, add and
//! test routes for what the keys do.
//!
//! The network never blocks the UI: every request runs in a task with its
//! own timeout, and what comes back reaches the run loop as a message. A
//! lost poll or stream is retried with back-off (the header says since when
//! it is down); when the gateway is back the stream resumes from the last
//! event it delivered (`Last-Event-ID`), and the gateway says how many were
//! missed meanwhile.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::feeds;
use super::link::{Part, Tracker};
use super::{Source, field_message};
use crate::config::{ApiKey, DeploymentSpec};
use crate::dashboard::action::{FieldMessage, TestResult};
use crate::dashboard::tui::{self, Msg};
use crate::events::unix_ms;
use crate::gateway::StateView;

/// How long a connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a state poll or a toggle may take.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// A test waits for the upstream (the gateway gives it up to 30 s).
const TEST_TIMEOUT: Duration = Duration::from_secs(40);

/// Why `attach` could not start. One line each, never with the key.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("`{0}` is not a gateway URL: {1}")]
    BadUrl(String, String),
    #[error("cannot reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error(
        "{url} needs the admin key: pass --admin-key (literal, env:VAR or file:PATH) or set SWITCHBOARD_ADMIN_KEY"
    )]
    KeyMissing { url: String },
    #[error("{url} refused the admin key (HTTP {status})")]
    KeyRefused { url: String, status: u16 },
    #[error("{url} refused the dashboard (HTTP {status}): {message}")]
    Refused {
        url: String,
        status: u16,
        message: String,
    },
    #[error("{url} does not answer like a switchboard gateway: {reason}")]
    NotAGateway { url: String, reason: String },
}

/// Cheap to clone; all clones share one connection pool.
#[derive(Clone)]
pub struct Remote {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    /// The gateway's root, e.g. `http://127.0.0.1:4000/`.
    pub(super) base: Url,
    /// As shown in the header.
    pub(super) display: String,
    pub(super) client: reqwest::Client,
    /// `Bearer <key>`, marked sensitive so no debug output shows it.
    pub(super) auth: Option<HeaderValue>,
    pub(super) link: Mutex<Tracker>,
}

impl Remote {
    /// Checks the URL and the key with one state request, within a few
    /// seconds; returns the source and the state it read.
    pub async fn connect(
        url: &str,
        key: Option<ApiKey>,
    ) -> Result<(Remote, StateView), AttachError> {
        let base = parse_base(url)?;
        let display = base.as_str().trim_end_matches('/').to_string();
        let auth = match &key {
            Some(k) => {
                let mut v =
                    HeaderValue::try_from(format!("Bearer {}", k.expose())).map_err(|_| {
                        AttachError::BadUrl(
                            display.clone(),
                            "the admin key cannot be sent in a header".into(),
                        )
                    })?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        // reqwest's rustls with the webpki roots: the same trust as the
        // gateway's upstream connections. No redirects: the key must go only
        // where the operator said.
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("switchboard-attach/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| AttachError::Unreachable {
                url: display.clone(),
                reason: root_cause(&e),
            })?;
        let remote = Remote {
            inner: Arc::new(Inner {
                base,
                display: display.clone(),
                client,
                auth,
                link: Mutex::new(Tracker::default()),
            }),
        };
        let state = match remote.fetch_state().await {
            Ok(state) => state,
            Err(Failure::Network(reason)) => {
                return Err(AttachError::Unreachable {
                    url: display,
                    reason,
                });
            }
            Err(Failure::Status(status, _)) if status == 401 && key.is_none() => {
                return Err(AttachError::KeyMissing { url: display });
            }
            Err(Failure::Status(401, _)) => {
                return Err(AttachError::KeyRefused {
                    url: display,
                    status: 401,
                });
            }
            Err(Failure::Status(status, message)) => {
                return Err(AttachError::Refused {
                    url: display,
                    status,
                    message,
                });
            }
            Err(Failure::Invalid(reason)) => {
                return Err(AttachError::NotAGateway {
                    url: display,
                    reason,
                });
            }
        };
        Ok((remote, state))
    }

    /// The gateway's URL as the header shows it.
    pub fn url(&self) -> &str {
        &self.inner.display
    }

    /// Whether the admin key would cross the network unencrypted: plain
    /// `http://` to a host that is not this machine.
    pub fn key_in_clear(&self) -> bool {
        self.inner.auth.is_some()
            && self.inner.base.scheme() == "http"
            && !is_loopback(&self.inner.base)
    }

    pub(super) fn url_for(&self, segments: &[&str]) -> Url {
        let mut url = self.inner.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    fn request(&self, method: Method, url: Url, timeout: Duration) -> reqwest::RequestBuilder {
        let mut req = self.inner.client.request(method, url).timeout(timeout);
        if let Some(auth) = &self.inner.auth {
            req = req.header(AUTHORIZATION, auth.clone());
        }
        req
    }

    /// Sends a request and reads the whole answer.
    async fn send(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<(StatusCode, bytes::Bytes), Failure> {
        let response = req
            .send()
            .await
            .map_err(|e| Failure::Network(root_cause(&e)))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| Failure::Network(root_cause(&e)))?;
        Ok((status, body))
    }

    /// Sends a request whose success is a JSON body.
    async fn call(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<(StatusCode, serde_json::Value), Failure> {
        let (status, body) = self.send(req).await?;
        if !status.is_success() {
            return Err(Failure::Status(
                status.as_u16(),
                error_message(status, &body),
            ));
        }
        serde_json::from_slice(&body)
            .map(|v| (status, v))
            .map_err(|e| Failure::Invalid(format!("a body that is not JSON ({e})")))
    }

    pub(super) async fn fetch_state(&self) -> Result<StateView, Failure> {
        let url = self.url_for(&["admin", "state"]);
        let (status, body) = self
            .send(self.request(Method::GET, url, REQUEST_TIMEOUT))
            .await?;
        if !status.is_success() {
            return Err(Failure::Status(
                status.as_u16(),
                error_message(status, &body),
            ));
        }
        serde_json::from_slice(&body).map_err(|e| Failure::Invalid(format!("/admin/state: {e}")))
    }

    /// Reports how the poll or the stream fared; tells the run loop when
    /// the connection as a whole went up or down.
    pub(super) async fn report(
        &self,
        tx: &mpsc::Sender<Msg>,
        part: Part,
        outcome: Result<(), String>,
    ) {
        let change = self
            .inner
            .link
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .report(part, outcome, unix_ms());
        if let Some(link) = change {
            match (&link.live, &link.error) {
                (true, _) => tracing::info!(url = %self.url(), "attached: live"),
                (false, e) => {
                    tracing::warn!(url = %self.url(), "connection lost: {}", e.as_deref().unwrap_or("?"))
                }
            }
            let _ = tx.send(Msg::Link(link)).await;
        }
    }
}

impl Source for Remote {
    fn spawn_feeds(&self, tx: mpsc::Sender<Msg>, stop: CancellationToken) {
        tokio::spawn(feeds::poll_state(self.clone(), tx.clone(), stop.clone()));
        tokio::spawn(feeds::follow_events(self.clone(), tx, stop));
    }

    async fn state_now(&self) -> Option<Msg> {
        self.fetch_state().await.ok().map(tui::state_msg)
    }

    async fn set_enabled(
        &self,
        model: String,
        deployment: String,
        enabled: bool,
    ) -> Result<(), String> {
        let url = self.url_for(&[
            "admin",
            "models",
            &model,
            "deployments",
            &deployment,
            "enabled",
        ]);
        let req = self
            .request(Method::PUT, url, REQUEST_TIMEOUT)
            .header("content-type", "application/json")
            .body(if enabled { "true" } else { "false" });
        self.call(req)
            .await
            .map(|_| ())
            .map_err(|f| f.describe(self.url()))
    }

    async fn test_existing(&self, model: String, deployment: String) -> TestResult {
        let url = self.url_for(&[
            "admin",
            "models",
            &model,
            "deployments",
            &deployment,
            "test",
        ]);
        match self
            .call(self.request(Method::POST, url, TEST_TIMEOUT))
            .await
        {
            Ok((_, v)) => test_result(&v),
            Err(f) => TestResult::failed(f.status(), f.describe(self.url())),
        }
    }

    async fn test_new(
        &self,
        model: String,
        spec: DeploymentSpec,
    ) -> Result<TestResult, FieldMessage> {
        let mut url = self.url_for(&["admin", "models", &model, "deployments"]);
        url.query_pairs_mut().append_pair("dry_run", "true");
        let req = self.with_spec(self.request(Method::POST, url, TEST_TIMEOUT), &spec)?;
        match self.call(req).await {
            Ok((_, v)) => Ok(test_result(&v)),
            Err(f @ Failure::Status(400 | 409, _)) => Err(field_message(f.status(), f.message())),
            Err(f) => Ok(TestResult::failed(f.status(), f.describe(self.url()))),
        }
    }

    async fn add(&self, model: String, spec: DeploymentSpec) -> Result<String, FieldMessage> {
        let mut url = self.url_for(&["admin", "models", &model, "deployments"]);
        url.query_pairs_mut().append_pair("test", "false");
        let req = self.with_spec(self.request(Method::POST, url, TEST_TIMEOUT), &spec)?;
        match self.call(req).await {
            Ok((_, v)) => Ok(v
                .get("name")
                .and_then(|n| n.as_str())
                .unwrap_or(&spec.name)
                .to_string()),
            Err(f @ Failure::Status(..)) => Err(field_message(f.status(), f.message())),
            Err(f) => Err(field_message(None, f.describe(self.url()))),
        }
    }
}

impl Remote {
    fn with_spec(
        &self,
        req: reqwest::RequestBuilder,
        spec: &DeploymentSpec,
    ) -> Result<reqwest::RequestBuilder, FieldMessage> {
        let body = serde_json::to_vec(spec).map_err(|e| field_message(None, e.to_string()))?;
        Ok(req.header("content-type", "application/json").body(body))
    }
}

/// What went wrong with one request.
#[derive(Debug)]
pub(super) enum Failure {
    /// No answer: refused, timed out, TLS, reset.
    Network(String),
    /// An answer with an error status, and the gateway's message.
    Status(u16, String),
    /// An answer that is not what a gateway says.
    Invalid(String),
}

impl Failure {
    fn status(&self) -> Option<u16> {
        match self {
            Failure::Status(s, _) => Some(*s),
            _ => None,
        }
    }

    fn message(&self) -> String {
        match self {
            Failure::Network(m) | Failure::Status(_, m) | Failure::Invalid(m) => m.clone(),
        }
    }

    fn describe(&self, url: &str) -> String {
        match self {
            Failure::Network(m) => format!("cannot reach {url}: {m}"),
            Failure::Status(401, _) => format!("{url} refused the admin key (HTTP 401)"),
            Failure::Status(s, m) => format!("HTTP {s}: {m}"),
            Failure::Invalid(m) => format!("{url} answered {m}"),
        }
    }

    /// Short, for the header.
    pub(super) fn brief(&self) -> String {
        match self {
            Failure::Network(m) | Failure::Invalid(m) => m.clone(),
            Failure::Status(401, _) => "admin key refused".into(),
            Failure::Status(s, _) => format!("HTTP {s}"),
        }
    }
}

/// The gateway's `{"error": {"message"}}`, or the start of whatever it said.
pub(super) fn error_message(status: StatusCode, body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .and_then(|m| m.as_str())
                .map(String::from)
        })
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)])
                .trim()
                .to_string();
            if text.is_empty() {
                status.canonical_reason().unwrap_or("error").to_string()
            } else {
                text
            }
        })
}

/// The test routes' answer: `{"ok": true, "latency_ms", "model"}` or
/// `{"ok": false, "status", "error"}`.
fn test_result(v: &serde_json::Value) -> TestResult {
    let ok = v.get("ok").and_then(|o| o.as_bool()).unwrap_or(false);
    let text = |k: &str| v.get(k).and_then(|m| m.as_str()).map(String::from);
    TestResult {
        ok,
        status: v.get("status").and_then(|s| s.as_u64()).map(|s| s as u16),
        latency_ms: v.get("latency_ms").and_then(|l| l.as_f64()).unwrap_or(0.0),
        model: text("model"),
        message: if ok {
            "ok".into()
        } else {
            text("error").unwrap_or_else(|| "the test failed".into())
        },
    }
}

/// The gateway's root from what the operator typed: `host:4000`,
/// `http://host:4000`, `https://gw.example.com/` or one of its API paths
/// (`/v1`, `/admin`).
fn parse_base(input: &str) -> Result<Url, AttachError> {
    let bad = |why: &str| AttachError::BadUrl(input.to_string(), why.to_string());
    let text = input.trim();
    let with_scheme = if text.contains("://") {
        text.to_string()
    } else {
        format!("http://{text}")
    };
    let mut url = Url::parse(&with_scheme).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("only http:// and https:// are supported"));
    }
    if url.host().is_none() {
        return Err(bad("it has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("put the admin key in --admin-key, not in the URL"));
    }
    url.set_query(None);
    url.set_fragment(None);
    let path = url.path().trim_end_matches('/').to_string();
    let root = ["/v1", "/admin", "/admin/state"]
        .iter()
        .find_map(|suffix| path.strip_suffix(suffix))
        .unwrap_or(&path)
        .to_string();
    url.set_path(&format!("{root}/"));
    Ok(url)
}

fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => bare.eq_ignore_ascii_case("localhost"),
    }
}

/// The innermost cause: `connection refused`, not reqwest's `error sending
/// request for url (...)`.
pub(super) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    let text = cur.to_string();
    // "Connection refused (os error 111)" reads better without the number.
    match text.find(" (os error") {
        Some(i) => text[..i].to_lowercase(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_is_found_from_what_an_operator_types() {
        let root = |s: &str| {
            parse_base(s)
                .map(|u| u.to_string())
                .map_err(|e| e.to_string())
        };
        assert_eq!(root("127.0.0.1:4000").unwrap(), "http://127.0.0.1:4000/");
        assert_eq!(
            root("http://127.0.0.1:4000/v1").unwrap(),
            "http://127.0.0.1:4000/"
        );
        assert_eq!(
            root("https://gw.example.com/switchboard/admin/").unwrap(),
            "https://gw.example.com/switchboard/"
        );
        assert!(root("ftp://x").unwrap_err().contains("only http"));
        assert!(
            root("http://admin:secret@host")
                .unwrap_err()
                .contains("--admin-key")
        );
    }

    #[test]
    fn the_key_travels_in_clear_only_over_http_to_another_host() {
        let remote = |url: &str| Remote {
            inner: Arc::new(Inner {
                base: parse_base(url).unwrap(),
                display: url.into(),
                client: reqwest::Client::new(),
                auth: Some(HeaderValue::from_static("Bearer k")),
                link: Mutex::new(Tracker::default()),
            }),
        };
        assert!(remote("http://10.0.0.5:4000").key_in_clear());
        assert!(!remote("http://127.0.0.1:4000").key_in_clear());
        assert!(!remote("http://[::1]:4000").key_in_clear());
        assert!(!remote("http://localhost:4000").key_in_clear());
        assert!(!remote("https://10.0.0.5").key_in_clear());
    }
}
