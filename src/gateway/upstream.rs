//! One deployment as the gateway calls it: URLs, auth header, model ID, and
//! reading what a provider says about its rate limits.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use bytes::Bytes;

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
    /// Parsed once: parsing a URL per request showed up in profiles.
    urls: [reqwest::Url; 3],
    auth: Option<(HeaderName, HeaderValue)>,
}

impl Upstream {
    pub fn new(config: DeploymentConfig) -> Self {
        let base = config.api_base.trim_end_matches('/');
        // The config module validated api_base as an http(s) URL; a parse
        // failure here would surface as a connection error on first use.
        let url = |e: Endpoint| {
            reqwest::Url::parse(&format!("{base}{}", e.path())).unwrap_or_else(|_| {
                reqwest::Url::parse("http://invalid.invalid/").expect("static URL")
            })
        };
        let urls = [
            url(Endpoint::ChatCompletions),
            url(Endpoint::Completions),
            url(Endpoint::Embeddings),
        ];
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
            header_name: HeaderValue::from_str(&config.name)
                .unwrap_or_else(|_| HeaderValue::from_static("unprintable-name")),
            model_json: json_string(&config.model_id),
            urls,
            auth,
            config,
        }
    }

    pub fn url(&self, endpoint: Endpoint) -> &reqwest::Url {
        match endpoint {
            Endpoint::ChatCompletions => &self.urls[0],
            Endpoint::Completions => &self.urls[1],
            Endpoint::Embeddings => &self.urls[2],
        }
    }

    pub fn request(
        &self,
        client: &reqwest::Client,
        endpoint: Endpoint,
        body: Bytes,
    ) -> reqwest::RequestBuilder {
        let mut rb = client
            .post(self.url(endpoint).clone())
            .header(axum::http::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some((name, value)) = &self.auth {
            rb = rb.header(name.clone(), value.clone());
        }
        rb
    }
}

/// How long a provider asks us to stay away after a 429, from the headers
/// OpenAI and Azure send: `retry-after-ms`, `retry-after` (seconds), then
/// `x-ratelimit-reset-tokens` / `-requests` (durations like `6m0s`, `250ms`).
pub fn rate_limit_hint(headers: &HeaderMap) -> Option<Duration> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = text("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        return positive_secs(ms / 1000.0);
    }
    if let Some(s) = text("retry-after").and_then(|v| v.parse::<f64>().ok()) {
        return positive_secs(s);
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
