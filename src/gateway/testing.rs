//! Testing a deployment: one minimal request straight to it (no routing,
//! no failover), translated for its provider, and what came back. The
//! dashboard's form and the admin API's test routes use it before a
//! deployment is saved, and on a configured one.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;

use super::Gateway;
use super::answer::root_cause;
use super::error::ApiError;
use super::request::Endpoint;
use super::upstream::Upstream;
use crate::config::DeploymentConfig;

/// The outcome of a test request through one deployment.
#[derive(Debug, Clone, Serialize)]
pub struct TestReport {
    pub ok: bool,
    pub status: Option<u16>,
    pub latency_ms: f64,
    /// The model the upstream says answered.
    pub model: Option<String>,
    /// On failure, what went wrong (the upstream's error text when it sent one).
    pub message: String,
}

impl TestReport {
    /// The test routes' JSON: `{"ok": true, "latency_ms", "model"}` or
    /// `{"ok": false, "status", "error"}` (the upstream's error, keys masked).
    pub fn answer(&self) -> serde_json::Value {
        let latency_ms = (self.latency_ms * 10.0).round() / 10.0;
        if self.ok {
            json!({"ok": true, "latency_ms": latency_ms, "model": self.model, "status": self.status})
        } else {
            json!({"ok": false, "status": self.status, "error": self.message, "latency_ms": latency_ms})
        }
    }
}

impl Gateway {
    /// Tests a configured deployment by name.
    pub async fn test_existing(
        &self,
        model: &str,
        deployment: &str,
    ) -> Result<TestReport, ApiError> {
        let route = self.route(model)?;
        let config = {
            let state = route.lock();
            let index = state.pool.index_of(deployment).ok_or_else(|| {
                ApiError::NotFound(format!("model `{model}` has no deployment `{deployment}`"))
            })?;
            state.upstreams[index].config.clone()
        };
        Ok(self.test_deployment(&config).await)
    }

    /// Sends a minimal request straight to a deployment (no routing, no
    /// failover) and reports what came back.
    pub async fn test_deployment(&self, config: &DeploymentConfig) -> TestReport {
        let up = Upstream::new(config.clone());
        let embeddings = config.model_id.contains("embed");
        let (endpoint, body) = if embeddings {
            (
                Endpoint::Embeddings,
                json!({"model": config.model_id, "input": "ping"}),
            )
        } else {
            (
                Endpoint::ChatCompletions,
                json!({"model": config.model_id, "messages": [{"role": "user", "content": "Say OK."}], "max_tokens": 1}),
            )
        };
        let timeout = self
            .settings()
            .first_byte_timeout
            .min(Duration::from_secs(30));
        let started = Instant::now();
        let body = bytes::Bytes::from(body.to_string());
        // The test request goes out as a real one would: through the
        // provider's own translation.
        let body = match super::request::inspect(&body, endpoint) {
            Ok(req) => up
                .plan
                .dialect
                .body(&req, &body, &up.model_json, &config.model_id)
                .unwrap_or(body),
            Err(_) => body,
        };
        let sent = tokio::time::timeout(timeout, async {
            use http_body_util::BodyExt;
            let response = up
                .request(self.client(), endpoint, false, body, &[])
                .await
                .map_err(|e| match e {
                    super::upstream::Sent::Http(e) => {
                        Box::new(e) as Box<dyn std::error::Error + Send + Sync>
                    }
                    super::upstream::Sent::Auth(why) => Box::new(AuthFailed(why)),
                })?;
            let status = response.status();
            // A test answer is small; cap it all the same.
            let limited = http_body_util::Limited::new(response.into_body(), 1 << 20);
            let text = limited.collect().await?.to_bytes();
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>((status, text))
        })
        .await;
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        let fail = |status: Option<u16>, message: String| TestReport {
            ok: false,
            status,
            latency_ms,
            model: None,
            message,
        };
        match sent {
            Err(_) => fail(
                None,
                format!("no answer within {:.0}s", timeout.as_secs_f64()),
            ),
            Ok(Err(e)) if e.is::<AuthFailed>() => {
                fail(None, format!("could not authenticate: {e}"))
            }
            Ok(Err(e)) => fail(
                None,
                format!("could not reach {}: {}", config.api_base, root_cause(&*e)),
            ),
            Ok(Ok((status, text))) => {
                let parsed: Option<serde_json::Value> = serde_json::from_slice(&text).ok();
                if status.is_success() {
                    match parsed {
                        Some(v) => TestReport {
                            ok: true,
                            status: Some(status.as_u16()),
                            latency_ms,
                            model: v.get("model").and_then(|m| m.as_str()).map(String::from),
                            message: "ok".into(),
                        },
                        None => fail(
                            Some(status.as_u16()),
                            "answered with a body that is not JSON".into(),
                        ),
                    }
                } else {
                    let message = parsed
                        .as_ref()
                        .and_then(|v| v.pointer("/error/message").or_else(|| v.get("message")))
                        .and_then(|m| m.as_str())
                        .map(String::from)
                        .unwrap_or_else(|| {
                            String::from_utf8_lossy(&text[..text.len().min(300)]).into_owned()
                        });
                    let message = up.scrub(message);
                    fail(
                        Some(status.as_u16()),
                        format!("HTTP {}: {message}", status.as_u16()),
                    )
                }
            }
        }
    }
}

/// A deployment whose auth could not be worked out: said as such, not as
/// an unreachable upstream.
#[derive(Debug)]
struct AuthFailed(String);

impl std::fmt::Display for AuthFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AuthFailed {}
