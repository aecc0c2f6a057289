//! OpenAI's error answers.

use std::borrow::Cow;

use hyper::StatusCode;
use serde::Serialize;

use super::to_vec;

/// An OpenAI error answer: `{"error":{"message","type","param","code"}}`.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) message: Cow<'static, str>,
    pub(crate) kind: &'static str,
    pub(crate) param: Option<&'static str>,
    pub(crate) code: Option<&'static str>,
}

impl ApiError {
    pub(crate) fn invalid_request(message: impl Into<Cow<'static, str>>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param: None,
            code: None,
        }
    }

    pub(crate) fn missing(param: &'static str) -> Self {
        ApiError {
            param: Some(param),
            code: Some("missing_required_parameter"),
            ..Self::invalid_request(format!("Missing required parameter: '{param}'."))
        }
    }

    pub(crate) fn invalid_param(param: &'static str, message: String) -> Self {
        ApiError {
            param: Some(param),
            code: Some("invalid_value"),
            ..Self::invalid_request(message)
        }
    }

    /// A body that is not JSON, or JSON of the wrong shape.
    pub(crate) fn from_json(e: &serde_json::Error) -> Self {
        if e.is_syntax() || e.is_eof() {
            Self::invalid_request(
                "We could not parse the JSON body of your request. (HINT: This likely means you aren't using \
                 your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not \
                 valid JSON.)",
            )
        } else {
            Self::invalid_request(format!("Invalid request body: {e}"))
        }
    }

    pub(crate) fn invalid_api_key() -> Self {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            code: Some("invalid_api_key"),
            ..Self::invalid_request(
                "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
            )
        }
    }

    /// The `--fail-rate` failure.
    pub(crate) fn server_error() -> Self {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: "The server had an error while processing your request.".into(),
            kind: "server_error",
            param: None,
            code: None,
        }
    }

    /// The error a provider gives with `status`, as `Mode::Fail` answers.
    pub(crate) fn for_status(status: StatusCode, message: Option<&str>) -> Self {
        let (kind, code, default_message) = match status.as_u16() {
            401 => (
                "invalid_request_error",
                Some("invalid_api_key"),
                "Incorrect API key provided.",
            ),
            403 => (
                "permission_error",
                None,
                "You are not allowed to access this resource.",
            ),
            404 => (
                "invalid_request_error",
                Some("model_not_found"),
                "The model does not exist or you do not have access to it.",
            ),
            408 => ("invalid_request_error", None, "Request timed out."),
            429 => (
                "requests",
                Some("rate_limit_exceeded"),
                "Rate limit reached for requests. Please try again later.",
            ),
            503 => (
                "server_error",
                None,
                "The engine is currently overloaded, please try again later.",
            ),
            500..=599 => (
                "server_error",
                None,
                "The server had an error while processing your request.",
            ),
            _ => ("invalid_request_error", None, "Invalid request."),
        };
        let message = message.map_or(Cow::Borrowed(default_message), |m| {
            Cow::Owned(m.to_string())
        });
        ApiError {
            status,
            message,
            kind,
            param: None,
            code,
        }
    }

    pub(crate) fn not_found(method: &hyper::Method, path: &str) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            ..Self::invalid_request(format!("Invalid URL ({method} {path})"))
        }
    }

    pub(crate) fn method_not_allowed(method: &hyper::Method, path: &str) -> Self {
        ApiError {
            status: StatusCode::METHOD_NOT_ALLOWED,
            ..Self::invalid_request(format!("Method not allowed ({method} {path})"))
        }
    }

    pub(crate) fn too_large() -> Self {
        ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            ..Self::invalid_request("The request body is too large.")
        }
    }

    pub(crate) fn to_json(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Body<'a> {
            error: Detail<'a>,
        }
        #[derive(Serialize)]
        struct Detail<'a> {
            message: &'a str,
            #[serde(rename = "type")]
            kind: &'a str,
            param: Option<&'a str>,
            code: Option<&'a str>,
        }
        let body = Body {
            error: Detail {
                message: &self.message,
                kind: self.kind,
                param: self.param,
                code: self.code,
            },
        };
        to_vec(&body)
    }
}
