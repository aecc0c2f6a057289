//! Errors the gateway answers with, in OpenAI's shape.
//!
//! Each says whose fault it is (the client's, the upstreams', ours) and whether
//! trying again later may help, so handlers, metrics and events agree.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Client,
    Upstream,
    Gateway,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    BadRequest {
        message: String,
        param: Option<&'static str>,
    },
    /// A parameter this deployment's API cannot honour (`n: 2` for
    /// Anthropic): named, never silently dropped.
    #[error("{message}")]
    Unsupported { message: String, param: String },
    /// No deployment of the model offers the endpoint.
    #[error("{0}")]
    EndpointNotOffered(String),
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error(
        "Incorrect API key provided. Send 'Authorization: Bearer <key>' with a key configured in server.api_keys."
    )]
    Unauthorized,
    #[error("The admin API needs 'Authorization: Bearer <admin_key>'.")]
    AdminUnauthorized,
    #[error(
        "The admin API answers only loopback clients while no admin_key is set; set server.admin_key (or start with --allow-unauthenticated)."
    )]
    AdminForbidden,
    #[error("The model `{0}` does not exist or you do not have access to it.")]
    ModelNotFound(String),
    #[error("{0}")]
    NotFound(String),
    #[error(
        "This route does not accept that HTTP method (the API uses POST for completions and embeddings, GET for models)."
    )]
    MethodNotAllowed,
    #[error("{message}")]
    Conflict { message: String },
    #[error("{message}")]
    Unprocessable { message: String },
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after: Duration,
    },
    #[error("{message}")]
    Unavailable {
        message: String,
        retry_after: Option<Duration>,
    },
    #[error("{message}")]
    BadGateway { message: String },
    #[error("{message}")]
    GatewayTimeout { message: String },
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } | ApiError::Unsupported { .. } => StatusCode::BAD_REQUEST,
            ApiError::EndpointNotOffered(_) => StatusCode::NOT_FOUND,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unauthorized | ApiError::AdminUnauthorized => StatusCode::UNAUTHORIZED,
            ApiError::AdminForbidden => StatusCode::FORBIDDEN,
            ApiError::ModelNotFound(_) | ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::BadGateway { .. } => StatusCode::BAD_GATEWAY,
            ApiError::GatewayTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn fault(&self) -> Fault {
        match self {
            ApiError::BadRequest { .. }
            | ApiError::Unsupported { .. }
            | ApiError::EndpointNotOffered(_)
            | ApiError::PayloadTooLarge { .. }
            | ApiError::Unauthorized
            | ApiError::AdminUnauthorized
            | ApiError::AdminForbidden
            | ApiError::ModelNotFound(_)
            | ApiError::NotFound(_)
            | ApiError::MethodNotAllowed
            | ApiError::Conflict { .. }
            | ApiError::Unprocessable { .. } => Fault::Client,
            ApiError::RateLimited { .. }
            | ApiError::Unavailable { .. }
            | ApiError::BadGateway { .. }
            | ApiError::GatewayTimeout { .. } => Fault::Upstream,
            ApiError::Internal(_) => Fault::Gateway,
        }
    }

    /// Whether the same request may succeed if sent again later.
    pub fn retryable(&self) -> bool {
        self.fault() != Fault::Client
    }

    fn kind(&self) -> (&'static str, Option<&'static str>) {
        match self {
            ApiError::BadRequest { .. } => ("invalid_request_error", None),
            ApiError::Unsupported { .. } => {
                ("invalid_request_error", Some("unsupported_parameter"))
            }
            ApiError::EndpointNotOffered(_) => {
                ("invalid_request_error", Some("endpoint_not_supported"))
            }
            ApiError::PayloadTooLarge { .. } => {
                ("invalid_request_error", Some("request_too_large"))
            }
            ApiError::Unauthorized | ApiError::AdminUnauthorized => {
                ("invalid_request_error", Some("invalid_api_key"))
            }
            ApiError::AdminForbidden => ("permission_error", Some("admin_needs_key")),
            ApiError::ModelNotFound(_) => ("invalid_request_error", Some("model_not_found")),
            ApiError::NotFound(_) => ("invalid_request_error", Some("not_found")),
            ApiError::MethodNotAllowed => ("invalid_request_error", Some("method_not_allowed")),
            ApiError::Conflict { .. } => ("invalid_request_error", Some("conflict")),
            ApiError::Unprocessable { .. } => {
                ("invalid_request_error", Some("deployment_test_failed"))
            }
            ApiError::RateLimited { .. } => ("rate_limit_error", Some("rate_limit_exceeded")),
            ApiError::Unavailable { .. } => {
                ("service_unavailable", Some("no_deployment_available"))
            }
            ApiError::BadGateway { .. } => ("upstream_error", Some("all_deployments_failed")),
            ApiError::GatewayTimeout { .. } => ("upstream_error", Some("upstream_timeout")),
            ApiError::Internal(_) => ("server_error", None),
        }
    }

    pub fn body(&self) -> serde_json::Value {
        let (kind, code) = self.kind();
        let param = match self {
            ApiError::BadRequest { param, .. } => param.map(String::from),
            ApiError::Unsupported { param, .. } => Some(param.clone()),
            _ => None,
        };
        json!({"error": {"message": self.to_string(), "type": kind, "param": param, "code": code}})
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::RateLimited { retry_after, .. } => Some(*retry_after),
            ApiError::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Whole seconds, rounded up, at least one: a client that waits that long finds room.
pub fn retry_after_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0).max(u64::from(d.is_zero()))
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), axum::Json(self.body())).into_response();
        if let Some(wait) = self.retry_after()
            && let Ok(v) = HeaderValue::from_str(&retry_after_secs(wait).to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(3)), 3);
        assert_eq!(retry_after_secs(Duration::from_millis(3001)), 4);
    }

    #[test]
    fn bodies_follow_openai_shape() {
        let e = ApiError::ModelNotFound("nope".into());
        let b = e.body();
        assert_eq!(b["error"]["code"], "model_not_found");
        assert_eq!(b["error"]["type"], "invalid_request_error");
        assert!(b["error"]["message"].as_str().unwrap().contains("nope"));
        assert!(!e.retryable());
        assert!(
            ApiError::BadGateway {
                message: "x".into()
            }
            .retryable()
        );
    }
}
