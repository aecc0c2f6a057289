//! OpenAI-compatible upstreams (`openai`) and Azure OpenAI (`azure`): the
//! body goes through as the client wrote it, with the model spliced in, and
//! so does the answer. Azure's classic API (`api_version` set) is the same
//! protocol at other URLs: `{api_base}/openai/deployments/{model_id}/…?api-version=`.

use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use serde::Deserialize;

use super::{ErrorVerdict, Invalid, Plan, Target, header, limits};
use crate::config::{DeploymentConfig, Provider};
use crate::gateway::json;
use crate::gateway::request::Endpoint;
use crate::gateway::sse::Usage;

const ENDPOINTS: [Endpoint; 4] = [
    Endpoint::ChatCompletions,
    Endpoint::Completions,
    Endpoint::Embeddings,
    Endpoint::Responses,
];

pub fn plan(config: &DeploymentConfig) -> Plan {
    let base = config.api_base.trim_end_matches('/');
    let targets = match (&config.provider, &config.api_version) {
        (Provider::Azure, Some(version)) => {
            // The classic API names the deployment in the path; a base given
            // with Azure's `/openai` already on it is taken as meant.
            let root = base.strip_suffix("/openai").unwrap_or(base);
            let deployment = path_segment(&config.model_id);
            let version = path_segment(version);
            ENDPOINTS.map(|e| {
                Some(Target::new(&format!(
                    "{root}/openai/deployments/{deployment}{}?api-version={version}",
                    e.path()
                )))
            })
        }
        _ => ENDPOINTS.map(|e| Some(Target::new(&format!("{base}{}", e.path())))),
    };
    let [chat, completions, embeddings, responses] = targets;
    let auth = config
        .api_key
        .as_ref()
        .and_then(|key| match config.provider {
            Provider::Azure => header("api-key", key.expose(), true),
            _ => header("authorization", &format!("Bearer {}", key.expose()), true),
        });
    Plan {
        targets: [chat, completions, embeddings, None, None, responses],
        headers: auth.into_iter().collect(),
        dialect: super::Dialect::OpenAi,
        streaming: None,
        streaming_messages: None,
        auth: super::Auth::Static,
    }
}

/// `s` percent-encoded for one path segment (or a query value): everything
/// but RFC 3986's unreserved characters.
pub(crate) fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Checks that an answer is one JSON object and reads its `usage`; the
/// body goes on unchanged.
pub fn answer(body: Bytes) -> Result<(Bytes, Option<Usage>), Invalid> {
    let mut usage = None;
    let mut seen = false;
    json::object_members(&body, |key, value| {
        if key == b"usage" {
            if std::mem::replace(&mut seen, true) {
                return Err("a second `usage`");
            }
            usage = crate::gateway::sse::read_usage(value)
                .map_err(|_| "a `usage` that is not token counts")?;
        }
        Ok(())
    })
    .map_err(|e| format!("a body that is not JSON ({e})"))?;
    Ok((body, usage))
}

#[derive(Deserialize)]
struct ErrorProbe {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    message: Option<String>,
}

/// The message of an OpenAI-style error body (`{"error": {"message"}}`), or
/// the start of whatever the upstream said, at most 300 characters.
pub(crate) fn error_message(status: StatusCode, body: &[u8]) -> String {
    let message = serde_json::from_slice::<ErrorProbe>(body)
        .ok()
        .and_then(|p| p.error.message)
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned());
    let message: String = message.chars().take(300).collect();
    if message.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        message
    }
}

/// What an OpenAI (or Azure) error status means: 408, 429, 5xx and the
/// deployment's own 401/403/404 fail over; other 4xx are the client's and
/// go back as the upstream said them.
pub fn error(
    endpoint: Endpoint,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> ErrorVerdict {
    if not_offered(endpoint, status, body) {
        return ErrorVerdict::NotOffered;
    }
    let code = status.as_u16();
    let retry_elsewhere = matches!(code, 401 | 403 | 404 | 408 | 429) || status.is_server_error();
    if !retry_elsewhere && status.is_client_error() {
        return ErrorVerdict::Client {
            body: Bytes::copy_from_slice(body),
        };
    }
    let message = error_message(status, body);
    if code == 429 {
        ErrorVerdict::RateLimited {
            hint: limits::rate_limit_hint(headers),
            message,
        }
    } else {
        ErrorVerdict::Failed { message }
    }
}

/// Whether an error answer means that this deployment does not offer
/// `endpoint` at all, rather than that its key or model is wrong (which
/// counts against it) or that the request is (which the client hears).
///
/// On `/completions` and `/embeddings`, which many deployments lack (a chat
/// model, a server that only serves chat), a 404 or 405 is "not offered":
/// OpenAI's `Invalid URL (POST /v1/embeddings)` and "This is a chat model and
/// not supported in the v1/completions endpoint", vLLM's and FastAPI's
/// `{"detail":"Not Found"}`, Ollama's `404 page not found`. Unless it names a
/// missing model or deployment: code `model_not_found` (OpenAI),
/// `DeploymentNotFound` (Azure), or a message saying the model does not exist
/// or is not found (vLLM: "The model `x` does not exist.", Ollama: `model
/// "x" not found, try pulling it first`): that is the deployment's model,
/// wrong for every endpoint. On chat completions, which every deployment
/// is there for, a 404 is always the deployment's failure.
pub(crate) fn not_offered(endpoint: Endpoint, status: StatusCode, body: &[u8]) -> bool {
    if endpoint == Endpoint::ChatCompletions || !matches!(status.as_u16(), 404 | 405) {
        return false;
    }
    let text = String::from_utf8_lossy(body).to_ascii_lowercase();
    let missing_model = text.contains("model_not_found")
        || text.contains("deploymentnotfound")
        || (text.contains("model")
            && (text.contains("does not exist") || text.contains("not found")));
    !missing_model
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DeploymentSpec;

    fn plan_of(provider: Provider, api_base: &str, api_version: Option<&str>) -> Plan {
        let spec = DeploymentSpec {
            name: "d".into(),
            provider,
            api_base: api_base.into(),
            api_version: api_version.map(String::from),
            api_key: Some("secret-key-0123456789".into()),
            model_id: "gpt 4o/east".into(),
            ..DeploymentSpec::default()
        };
        super::plan(&spec.resolve(std::path::Path::new(".")).unwrap())
    }

    #[test]
    fn azure_classic_names_the_deployment_in_the_path_and_the_version_in_the_query() {
        let p = plan_of(
            Provider::Azure,
            "https://x.openai.azure.com/",
            Some("2024-10-21"),
        );
        let url = |e| p.target(e).unwrap().url.to_string();
        assert_eq!(
            url(Endpoint::ChatCompletions),
            "https://x.openai.azure.com/openai/deployments/gpt%204o%2Feast/chat/completions?api-version=2024-10-21"
        );
        assert!(url(Endpoint::Embeddings).ends_with("/embeddings?api-version=2024-10-21"));
        assert_eq!(
            p.target(Endpoint::Completions).unwrap().path.to_string(),
            "/openai/deployments/gpt%204o%2Feast/completions?api-version=2024-10-21"
        );
        // Given with /openai already: not doubled.
        let q = plan_of(
            Provider::Azure,
            "https://x.openai.azure.com/openai",
            Some("2024-10-21"),
        );
        assert_eq!(
            url(Endpoint::ChatCompletions),
            q.target(Endpoint::ChatCompletions).unwrap().url.to_string()
        );
        assert_eq!(p.headers[0].0, "api-key");
        assert!(p.headers[0].1.is_sensitive());
    }

    #[test]
    fn without_a_version_azure_is_the_openai_api_with_its_key_header() {
        let p = plan_of(
            Provider::Azure,
            "https://x.openai.azure.com/openai/v1",
            None,
        );
        assert_eq!(
            p.target(Endpoint::ChatCompletions).unwrap().url.to_string(),
            "https://x.openai.azure.com/openai/v1/chat/completions"
        );
        let o = plan_of(Provider::OpenAi, "https://api.openai.com/v1", None);
        assert_eq!(o.headers[0].0, "authorization");
        assert_eq!(o.headers[0].1, "Bearer secret-key-0123456789");
    }

    #[test]
    fn a_404_or_405_off_the_chat_endpoint_is_an_endpoint_not_offered_unless_it_names_the_model() {
        let not_found = StatusCode::NOT_FOUND;
        let embeddings =
            |status, body: &str| not_offered(Endpoint::Embeddings, status, body.as_bytes());
        // Servers without the endpoint, as they say it.
        for body in [
            r#"{"error":{"message":"Invalid URL (POST /v1/embeddings)","type":"invalid_request_error","param":null,"code":null}}"#,
            r#"{"detail":"Not Found"}"#,
            "404 page not found",
            "",
            r#"{"error":{"message":"This is a chat model and not supported in the v1/completions endpoint. Did you mean to use v1/chat/completions?","type":"invalid_request_error","param":"model","code":null}}"#,
            r#"{"error":{"code":"404","message":"Resource not found"}}"#,
        ] {
            assert!(embeddings(not_found, body), "{body}");
            assert!(not_offered(
                Endpoint::Completions,
                not_found,
                body.as_bytes()
            ));
            assert!(embeddings(StatusCode::METHOD_NOT_ALLOWED, body));
        }
        // A deployment whose model is wrong: wrong for every endpoint.
        for body in [
            r#"{"error":{"message":"The model `x` does not exist or you do not have access to it.","type":"invalid_request_error","param":null,"code":"model_not_found"}}"#,
            r#"{"error":{"code":"DeploymentNotFound","message":"The API deployment for this resource does not exist."}}"#,
            r#"{"object":"error","message":"The model `x` does not exist.","type":"NotFoundError","param":null,"code":404}"#,
            r#"{"error":{"message":"model \"x\" not found, try pulling it first","type":"api_error","param":null,"code":null}}"#,
        ] {
            assert!(!embeddings(not_found, body), "{body}");
        }
        // Chat completions is what every deployment is there for.
        assert!(!not_offered(
            Endpoint::ChatCompletions,
            not_found,
            br#"{"detail":"Not Found"}"#
        ));
        for status in [400, 401, 403, 410, 500] {
            let status = StatusCode::from_u16(status).unwrap();
            assert!(!embeddings(status, r#"{"detail":"Not Found"}"#));
        }
    }

    #[test]
    fn an_answer_is_one_json_object_whose_usage_is_read() {
        let usage = |doc: &str| answer(Bytes::copy_from_slice(doc.as_bytes())).map(|(_, u)| u);
        assert_eq!(
            usage(
                r#"{"id":"x","usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#
            ),
            Ok(Some(Usage {
                prompt_tokens: 3,
                completion_tokens: 4,
                total_tokens: 7
            }))
        );
        assert_eq!(usage(r#"{"id":"x"}"#), Ok(None));
        assert_eq!(
            usage(r#"{"us\u0061ge":{"total_tokens":3}}"#).map(|u| u.map(|u| u.total())),
            Ok(Some(3))
        );
        assert_eq!(usage(r#"{"usage":null}"#), Ok(None));
        // A `usage` key inside the content is not the answer's usage.
        assert_eq!(
            usage(r#"{"choices":[{"usage":{"total_tokens":99}}],"note":"\"usage\":{}"}"#),
            Ok(None)
        );
        for broken in [
            r#"[{"usage":{"total_tokens":1}}]"#,
            r#"{"usage":{"total_tokens":1}"#,
            r#"{"usage":"many"}"#,
            r#"{"usage":{"total_tokens":-1}}"#,
            r#"{"usage":null,"usage":{"total_tokens":1}}"#,
            "<html>502 Bad Gateway</html>",
        ] {
            assert!(usage(broken).is_err(), "{broken}");
        }
    }
}
