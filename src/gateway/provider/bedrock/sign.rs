//! AWS Signature Version 4 for Bedrock requests, with the `aws-sigv4`
//! crate (the signing alone, not the SDK). Signing covers the body's hash
//! and the time, so it runs once per attempt, after the body is built.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use axum::http::{HeaderName, HeaderValue};

use crate::config::AwsKeys;

/// The signing name of Bedrock's runtime API.
const SERVICE: &str = "bedrock";

/// One deployment's signer: its keys as an identity, made once.
pub struct Signer {
    identity: Identity,
    region: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The identity holds the secret: never printed.
        f.debug_struct("Signer")
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl Signer {
    pub fn new(keys: &AwsKeys, region: &str) -> Signer {
        let credentials = Credentials::new(
            keys.access_key_id.expose(),
            keys.secret_access_key.expose(),
            keys.session_token.as_ref().map(|t| t.expose().to_string()),
            None,
            "switchboard-config",
        );
        Signer {
            identity: credentials.into(),
            region: region.to_string(),
        }
    }

    /// The headers that sign a POST of `body` to `url` (which must be the
    /// URL as sent, already percent-encoded) with `host` and
    /// `content-type: application/json`: `authorization`, `x-amz-date`
    /// and, with a session token, `x-amz-security-token`.
    pub fn sign(
        &self,
        url: &str,
        host: &str,
        body: &[u8],
        at: SystemTime,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
        let settings = SigningSettings::default();
        let params = v4::SigningParams::builder()
            .identity(&self.identity)
            .region(&self.region)
            .name(SERVICE)
            .time(at)
            .settings(settings)
            .build()
            .map_err(|e| format!("cannot sign: {e}"))?
            .into();
        let headers = [("host", host), ("content-type", "application/json")];
        let request =
            SignableRequest::new("POST", url, headers.into_iter(), SignableBody::Bytes(body))
                .map_err(|e| format!("cannot sign: {e}"))?;
        let (instructions, _) = sign(request, &params)
            .map_err(|e| format!("cannot sign: {e}"))?
            .into_parts();
        let (signed, _) = instructions.into_parts();
        signed
            .into_iter()
            .map(|h| {
                let name = HeaderName::from_bytes(h.name().as_bytes())
                    .map_err(|_| "cannot sign: a header name".to_string())?;
                let mut value = HeaderValue::from_str(h.value())
                    .map_err(|_| "cannot sign: a header value".to_string())?;
                value.set_sensitive(h.sensitive());
                Ok((name, value))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ApiKey;

    fn keys(token: Option<&str>) -> AwsKeys {
        AwsKeys {
            access_key_id: ApiKey::literal("AKIDEXAMPLE"),
            secret_access_key: ApiKey::literal("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
            session_token: token.map(ApiKey::literal),
        }
    }

    #[test]
    fn a_request_is_signed_for_bedrock_in_its_region_and_the_secret_stays_out() {
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_440_938_160);
        let signer = Signer::new(&keys(Some("session-token-1")), "us-west-2");
        let headers = signer
            .sign(
                "https://bedrock-runtime.us-west-2.amazonaws.com/model/anthropic.claude-v2%3A1/converse",
                "bedrock-runtime.us-west-2.amazonaws.com",
                b"{}",
                at,
            )
            .unwrap();
        let get = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.to_str().unwrap().to_string())
        };
        let auth = get("authorization").unwrap();
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-west-2/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, Signature="),
            "{auth}"
        );
        assert_eq!(get("x-amz-date").unwrap(), "20150830T123600Z");
        assert_eq!(get("x-amz-security-token").unwrap(), "session-token-1");
        assert!(!format!("{signer:?}").contains("wJalr"));
        // The same request signed again at the same time: the same signature.
        let again = signer
            .sign(
                "https://bedrock-runtime.us-west-2.amazonaws.com/model/anthropic.claude-v2%3A1/converse",
                "bedrock-runtime.us-west-2.amazonaws.com",
                b"{}",
                at,
            )
            .unwrap();
        assert_eq!(headers, again);
    }
}
