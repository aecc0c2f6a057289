//! `mock-upstream --provider vertex`: Vertex AI as the gateway and
//! `google-auth` meet it. It is its own OAuth token endpoint (`POST
//! /token`: an RS256 JWT bearer grant signed with the key of the
//! service-account file it writes with `--write-credentials`), and the
//! models' routes take only the tokens it issued, until they expire:
//! Claude through `…/publishers/anthropic/models/{model}:rawPredict` and
//! `:streamRawPredict` (Anthropic's Messages format with
//! `anthropic_version: "vertex-2023-10-16"` and no `model`, answered by
//! the Anthropic mock) and `…/models/count-tokens:rawPredict` (its
//! count_tokens, `{"input_tokens": N}`), other models through
//! `…/endpoints/openapi/chat/completions` (the OpenAI mock). Errors come
//! in Google's shape, 429 as `RESOURCE_EXHAUSTED`.
//!
//! The key pair is a fixed test key (`assets/mock-vertex-key*.pem`): it
//! signs nothing but requests to this mock.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::json;

use super::Mode;
use super::anthropic::Flavor;
use super::body::MockBody;
use super::state::Shared;

const PRIVATE_KEY: &str = include_str!("../../../assets/mock-vertex-key.pem");
const PUBLIC_KEY: &str = include_str!("../../../assets/mock-vertex-key.pub.pem");
pub(crate) const CLIENT_EMAIL: &str = "switchboard-test@mock-project.iam.gserviceaccount.com";
const KEY_ID: &str = "mock-vertex-key-1";

/// Tokens issued, until when.
#[derive(Default)]
pub(crate) struct Issued {
    tokens: Mutex<HashMap<String, Instant>>,
    pub(crate) requests: AtomicU64,
}

/// A service-account key file whose tokens this mock at `addr` issues.
pub fn credentials_json(addr: std::net::SocketAddr) -> String {
    json!({
        "type": "service_account",
        "project_id": "mock-project",
        "private_key_id": KEY_ID,
        "private_key": PRIVATE_KEY,
        "client_email": CLIENT_EMAIL,
        "client_id": "100000000000000000001",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": format!("http://{addr}/token"),
        "universe_domain": "googleapis.com",
    })
    .to_string()
}

/// Which of Vertex's routes a request is for.
pub(crate) enum Route {
    Token,
    RawPredict,
    /// The OpenAI-compatible endpoint's chat completions.
    Chat,
    Other,
}

/// Answers a Vertex request, after the connection faults; None: an
/// authorized request to the OpenAI-compatible endpoint, which the OpenAI
/// mock answers.
pub(crate) fn route(
    shared: &Shared,
    mode: &Mode,
    which: Route,
    headers: &HeaderMap,
    path: &str,
    body: &Bytes,
) -> Option<Response<MockBody>> {
    if let Route::Token = which {
        return Some(token(shared, shared.addr.get().copied(), body));
    }
    if let Route::Other = which {
        return Some(google_error(
            StatusCode::NOT_FOUND,
            &format!("The requested URL {path} was not found on this server."),
        ));
    }
    if let Err(refused) = authorized(shared, headers) {
        return Some(*refused);
    }
    if let Mode::Fail {
        status, message, ..
    } = mode
    {
        let status = super::refusal::fail_status(*status);
        let text = message.as_deref().unwrap_or(default_message(status));
        return Some(google_error(status, text));
    }
    match which {
        // Claude's token count: Anthropic's count_tokens body, the model
        // named in it, the version allowed.
        Route::RawPredict if path.ends_with("/models/count-tokens:rawPredict") => {
            Some(super::anthropic::counted(body, Flavor::Vertex))
        }
        Route::RawPredict => Some(super::anthropic::messages(
            shared,
            mode,
            body,
            Flavor::Vertex,
        )),
        _ => None,
    }
}

/// A Google API error: `{"error": {"code", "message", "status"}}`.
pub(crate) fn google_error(status: StatusCode, message: &str) -> Response<MockBody> {
    let name = match status.as_u16() {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "INTERNAL",
    };
    let body = json!({"error": {"code": status.as_u16(), "message": message, "status": name}});
    let mut r = Response::new(MockBody::full(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    r
}

pub(crate) fn default_message(status: StatusCode) -> &'static str {
    match status.as_u16() {
        429 => {
            "Quota exceeded for aiplatform.googleapis.com/online_prediction_requests_per_base_model with base model: anthropic-claude. Please submit a quota increase request."
        }
        503 => "The service is currently unavailable.",
        403 => "Permission 'aiplatform.endpoints.predict' denied on resource.",
        404 => "Publisher model not found.",
        _ => "Internal error encountered.",
    }
}

fn token_error(error: &str, description: &str) -> Response<MockBody> {
    let mut r = Response::new(MockBody::full(
        json!({"error": error, "error_description": description}).to_string(),
    ));
    *r.status_mut() = StatusCode::BAD_REQUEST;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

#[derive(serde::Deserialize)]
struct Claims {
    iss: String,
    #[serde(default)]
    scope: Option<String>,
}

/// `POST /token`: a JWT bearer grant, checked as Google checks it.
pub(crate) fn token(
    shared: &Shared,
    addr: Option<std::net::SocketAddr>,
    body: &Bytes,
) -> Response<MockBody> {
    shared.issued.requests.fetch_add(1, Relaxed);
    let form: HashMap<String, String> = String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect();
    if form.get("grant_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    {
        return token_error("unsupported_grant_type", "Invalid grant_type");
    }
    let Some(assertion) = form.get("assertion") else {
        return token_error("invalid_request", "Missing required parameter: assertion");
    };
    let Ok(key) = jsonwebtoken::DecodingKey::from_rsa_pem(PUBLIC_KEY.as_bytes()) else {
        return google_error(StatusCode::INTERNAL_SERVER_ERROR, "the mock's key");
    };
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    // Google takes its token URL as the audience (google-auth always sends
    // it, whatever the file's token_uri), or the URL the grant went to.
    let mut audiences = vec!["https://oauth2.googleapis.com/token".to_string()];
    audiences.extend(addr.map(|a| format!("http://{a}/token")));
    validation.set_audience(&audiences);
    validation.set_required_spec_claims(&["exp", "iat", "aud", "iss"]);
    let claims = match jsonwebtoken::decode::<Claims>(assertion, &key, &validation) {
        Ok(t) => t.claims,
        Err(e) => {
            let why = match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => "Invalid JWT Signature.".to_string(),
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.".to_string(),
                jsonwebtoken::errors::ErrorKind::InvalidAudience => "Invalid JWT: Failed audience check.".to_string(),
                other => format!("Invalid JWT: {other:?}"),
            };
            return token_error("invalid_grant", &why);
        }
    };
    if claims.iss != CLIENT_EMAIL {
        return token_error("invalid_grant", "Invalid grant: account not found");
    }
    if claims.scope.as_deref().is_none_or(str::is_empty) {
        return token_error(
            "invalid_scope",
            "Invalid OAuth scope or ID token audience provided.",
        );
    }
    let ttl = Duration::from_secs(shared.opts.token_ttl_s);
    let token = format!("ya29.mock-{}", shared.completion_id(""));
    shared
        .issued
        .tokens
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(token.clone(), Instant::now() + ttl);
    let mut r = Response::new(MockBody::full(
        json!({"access_token": token, "expires_in": ttl.as_secs(), "token_type": "Bearer"})
            .to_string(),
    ));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

/// The request carries a token this mock issued and that has not expired.
pub(crate) fn authorized(
    shared: &Shared,
    headers: &HeaderMap,
) -> Result<(), Box<Response<MockBody>>> {
    let given = headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let ok = given.is_some_and(|t| {
        shared
            .issued
            .tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(t)
            .is_some_and(|until| *until > Instant::now())
    });
    if ok {
        Ok(())
    } else {
        Err(Box::new(google_error(
            StatusCode::UNAUTHORIZED,
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
        )))
    }
}

/// A form value: `+` is a space, then percent-decoding.
fn decode(s: &str) -> String {
    super::bedrock::sigv4::percent_decode(&s.replace('+', " "))
}
