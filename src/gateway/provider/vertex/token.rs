//! OAuth access tokens for Vertex AI from a service-account key: an RS256
//! JWT (with `jsonwebtoken`, on ring like the rest of our TLS) exchanged at
//! the key file's own `token_uri`, kept until shortly before it expires.
//!
//! Why not `gcp_auth`: it brings its own HTTP stack and discovers
//! credentials from the environment, while a deployment names exactly one
//! file and the gateway already has a client; the exchange is one POST.
//!
//! One refresh at a time: concurrent requests that find the token due wait
//! for the refresh in flight instead of starting their own, so a token
//! endpoint sees one call per expiry, never one per request. A failed
//! refresh is that attempt's failure (the deployment's), named by file.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::config::ServiceAccount;

/// The scope every Vertex AI call needs.
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// A token is refreshed when it has less than this left, so that no
/// request goes out with one about to lapse.
const REFRESH_BEFORE: Duration = Duration::from_secs(300);
/// The longest a token endpoint may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

struct Cached {
    token: SecretString,
    expires: SystemTime,
}

pub struct TokenSource {
    account: Arc<ServiceAccount>,
    key: Result<EncodingKey, String>,
    cached: Mutex<Option<Cached>>,
    /// Held while a refresh is in flight.
    refreshing: tokio::sync::Mutex<()>,
    clock: Clock,
    client: reqwest::Client,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("file", &self.account.path)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

#[derive(Deserialize)]
struct Answer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

fn http_client() -> reqwest::Client {
    static CLIENT: std::sync::LazyLock<reqwest::Client> = std::sync::LazyLock::new(|| {
        reqwest::Client::builder()
            .timeout(EXCHANGE_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default()
    });
    CLIENT.clone()
}

impl TokenSource {
    pub fn new(account: Arc<ServiceAccount>, clock: Clock) -> TokenSource {
        let key = EncodingKey::from_rsa_pem(account.private_key.expose_secret().as_bytes())
            .map_err(|_| {
                format!(
                    "{}: private_key is not an RSA private key in PEM form",
                    account.path.display()
                )
            });
        TokenSource {
            account,
            key,
            cached: Mutex::new(None),
            refreshing: tokio::sync::Mutex::new(()),
            clock,
            client: http_client(),
        }
    }

    /// With the system clock.
    pub fn system(account: Arc<ServiceAccount>) -> TokenSource {
        TokenSource::new(account, Arc::new(SystemTime::now))
    }

    fn fresh(&self) -> Option<SecretString> {
        let now = (self.clock)();
        let cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        cached
            .as_ref()
            .filter(|c| c.expires > now + REFRESH_BEFORE)
            .map(|c| c.token.clone())
    }

    /// A token good for a while yet: the cached one, or a new one.
    pub async fn token(&self) -> Result<SecretString, String> {
        if let Some(t) = self.fresh() {
            return Ok(t);
        }
        let _one_at_a_time = self.refreshing.lock().await;
        // Whoever held the lock before may have refreshed it.
        if let Some(t) = self.fresh() {
            return Ok(t);
        }
        let (token, expires) = self.exchange().await?;
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        *cached = Some(Cached {
            token: token.clone(),
            expires,
        });
        Ok(token)
    }

    async fn exchange(&self) -> Result<(SecretString, SystemTime), String> {
        let file = self.account.path.display();
        let key = self.key.as_ref().map_err(Clone::clone)?;
        let now = (self.clock)();
        let iat = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut header = Header::new(Algorithm::RS256);
        header.kid = self.account.private_key_id.clone();
        let claims = Claims {
            iss: &self.account.client_email,
            scope: SCOPE,
            aud: &self.account.token_uri,
            iat,
            exp: iat + 3600,
        };
        let assertion = jsonwebtoken::encode(&header, &claims, key)
            .map_err(|e| format!("{file}: cannot sign the token request ({e})"))?;
        let body = format!(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}"
        );
        let answer = self
            .client
            .post(&self.account.token_uri)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "the token endpoint of {file} could not be reached: {}",
                    crate::gateway::answer::root_cause(&e)
                )
            })?;
        let status = answer.status();
        let text = answer.bytes().await.unwrap_or_default();
        if !status.is_success() {
            // Google's token errors say what is wrong with the account, not the key.
            let why = serde_json::from_slice::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| {
                    let e = v.get("error")?.as_str()?.to_string();
                    let d = v.get("error_description").and_then(|d| d.as_str());
                    Some(match d {
                        Some(d) => format!("{e}: {d}"),
                        None => e,
                    })
                })
                .unwrap_or_else(|| status.to_string());
            return Err(format!(
                "the token endpoint refused the service account of {file} ({}): {why}",
                status.as_u16()
            ));
        }
        let answer: Answer = serde_json::from_slice(&text).map_err(|_| {
            format!("the token endpoint of {file} answered without an access_token")
        })?;
        let expires = now + Duration::from_secs(answer.expires_in.unwrap_or(3600));
        Ok((answer.access_token.into(), expires))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    use crate::mock_upstream::{self, MockOptions, MockProvider};

    async fn vertex_mock() -> (
        mock_upstream::MockHandle,
        tempfile::TempDir,
        Arc<ServiceAccount>,
    ) {
        let mut opts = MockOptions::new("127.0.0.1:0".parse().unwrap());
        opts.provider = MockProvider::Vertex;
        let m = mock_upstream::spawn(opts).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sa.json");
        std::fs::write(&path, m.credentials_json()).unwrap();
        let spec = crate::config::DeploymentSpec {
            name: "v".into(),
            provider: crate::config::Provider::Vertex,
            region: Some("us-east5".into()),
            project: Some("p".into()),
            credentials: Some(format!("file:{}", path.display())),
            model_id: "claude-x".into(),
            ..Default::default()
        };
        let config = spec.resolve(dir.path()).unwrap();
        (m, dir, config.credentials.unwrap())
    }

    /// A clock that stands still until told to move.
    fn clock() -> (Clock, Arc<AtomicU64>) {
        let secs = Arc::new(AtomicU64::new(1_800_000_000));
        let s = secs.clone();
        let clock: Clock = Arc::new(move || {
            SystemTime::UNIX_EPOCH + Duration::from_secs(s.load(Ordering::Relaxed))
        });
        (clock, secs)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_token_serves_many_requests_and_is_refreshed_before_it_expires() {
        let (m, _dir, account) = vertex_mock().await;
        let (clock, secs) = clock();
        let source = Arc::new(TokenSource::new(account, clock));
        // Concurrent first requests: one exchange between them.
        let tokens = futures_util::future::join_all((0..20).map(|_| {
            let s = source.clone();
            async move { s.token().await.unwrap().expose_secret().to_string() }
        }))
        .await;
        assert!(tokens.iter().all(|t| t == &tokens[0]));
        for _ in 0..50 {
            source.token().await.unwrap();
        }
        assert_eq!(m.stats().token_requests, 1);
        // The mock's tokens last an hour: 54 minutes on, it is still good...
        secs.fetch_add(54 * 60, Ordering::Relaxed);
        source.token().await.unwrap();
        assert_eq!(m.stats().token_requests, 1);
        // ...56 minutes on, within five minutes of expiry, it is renewed.
        secs.fetch_add(2 * 60, Ordering::Relaxed);
        let renewed = source.token().await.unwrap();
        assert_eq!(m.stats().token_requests, 2);
        assert_ne!(renewed.expose_secret(), tokens[0]);
    }

    #[tokio::test]
    async fn a_failing_token_endpoint_is_named_by_file_never_by_key() {
        let (m, dir, account) = vertex_mock().await;
        let mut broken = ServiceAccount {
            path: account.path.clone(),
            client_email: "someone-else@p.iam.gserviceaccount.com".into(),
            private_key_id: None,
            private_key: account.private_key.clone(),
            token_uri: account.token_uri.clone(),
        };
        let source = TokenSource::system(Arc::new(broken));
        let e = source.token().await.unwrap_err();
        assert!(e.contains("sa.json") && e.contains("invalid_grant"), "{e}");
        assert!(!e.contains("PRIVATE KEY"), "{e}");
        drop(m);
        broken = ServiceAccount {
            path: dir.path().join("sa.json"),
            client_email: account.client_email.clone(),
            private_key_id: None,
            private_key: account.private_key.clone(),
            token_uri: account.token_uri.clone(),
        };
        let e = TokenSource::system(Arc::new(broken))
            .token()
            .await
            .unwrap_err();
        assert!(e.contains("could not be reached"), "{e}");
    }
}
