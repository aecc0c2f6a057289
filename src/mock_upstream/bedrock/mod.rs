//! `mock-upstream --provider bedrock`: Bedrock's Converse API as boto3's
//! `bedrock-runtime` client needs it: `POST /model/{modelId}/converse` and
//! `/converse-stream` (and Claude's InvokeModel family, see [`invoke`]), SigV4 checked against `--aws-access-key-id` /
//! `--aws-secret-access-key` (a wrong signature is a 403
//! `InvalidSignatureException`) or a Bedrock API key (`--api-key`, as
//! Bearer), Converse's validation, answers with text and tool use, streams
//! in AWS's event-stream framing (CRCs and all), its exceptions in the
//! `x-amzn-ErrorType` header, throttling over the mock's limits, and an
//! exception mid-stream on demand.

mod eventstream;
pub(crate) mod invoke;
pub(crate) mod request;
pub(crate) mod sigv4;

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::{Value, json};

use super::Mode;
use super::body::MockBody;
use super::limits::{Dim, Need, Refused};
use super::state::Shared;
use crate::mock_upstream::openai::WORDS;
use eventstream::{event as frame, exception as exception_frame};

const ERROR_TYPE: HeaderName = HeaderName::from_static("x-amzn-errortype");
const REQUEST_ID: HeaderName = HeaderName::from_static("x-amzn-requestid");

/// An AWS error: the exception's name in `x-amzn-ErrorType`, `{"message"}`.
pub(crate) fn error(status: StatusCode, exception: &str, message: &str) -> Response<MockBody> {
    let mut r = Response::new(MockBody::full(json!({ "message": message }).to_string()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{exception}:http://internal.amazon.com/coral/com.amazon.bedrock/"
    )) {
        h.insert(ERROR_TYPE, v);
    }
    r
}

/// The exception Bedrock answers with `status`.
fn for_status(status: StatusCode, message: Option<&str>) -> Response<MockBody> {
    let (exception, default) = match status.as_u16() {
        400 => ("ValidationException", "The provided request is not valid"),
        403 => (
            "AccessDeniedException",
            "You don't have access to the model with the specified model ID.",
        ),
        404 => (
            "ResourceNotFoundException",
            "The requested resource could not be found.",
        ),
        408 => (
            "ModelTimeoutException",
            "The model took too long to respond.",
        ),
        424 => (
            "ModelErrorException",
            "The model failed to process the request.",
        ),
        429 => (
            "ThrottlingException",
            "Too many tokens, please wait before trying again.",
        ),
        503 => (
            "ServiceUnavailableException",
            "Bedrock is unable to process your request.",
        ),
        _ => (
            "InternalServerException",
            "The server encountered an internal error.",
        ),
    };
    error(status, exception, message.unwrap_or(default))
}

/// Answers one Converse request, after the mock's connection faults.
pub(crate) fn answer(
    shared: &Shared,
    mode: &Mode,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &Bytes,
    stream: bool,
) -> Response<MockBody> {
    if let Err(r) = authorized(shared, path, query, headers, body) {
        return *r;
    }
    if let Mode::Fail {
        status, message, ..
    } = mode
    {
        let status = super::refusal::fail_status(*status);
        return for_status(status, message.as_deref());
    }
    let req = match request::parse(body) {
        Ok(r) => r,
        Err(message) => return error(StatusCode::BAD_REQUEST, "ValidationException", &message),
    };
    if shared.draw_failure() {
        return for_status(StatusCode::INTERNAL_SERVER_ERROR, None);
    }
    let reply = Reply::new(
        &req,
        u64::from(shared.opts.tokens),
        shared.opts.cache_read_tokens,
    );
    let need = Need::new(reply.input_tokens, reply.output_tokens, req.max_tokens);
    let admitted = match shared.limits.admit(need) {
        Ok(admitted) => admitted,
        Err(refused) => return throttled(&refused),
    };
    shared.count_tokens(reply.input_tokens, reply.output_tokens);
    let gap = Duration::from_millis(shared.opts.chunk_delay_ms);
    let mut response = if stream {
        let body = MockBody::spoiled(
            mode,
            reply.frames(),
            gap,
            || {
                vec![Bytes::from_static(
                    b"\x00\x00\x00\x20not an event stream frame......",
                )]
            },
            |exception| {
                let kind = exception.unwrap_or("modelStreamErrorException");
                exception_frame(kind, stream_message(kind))
            },
            // Binary framing: a good frame whose payload is cut short.
            |_| {
                frame(
                    "contentBlockDelta",
                    br#"{"contentBlockIndex":0,"delta":{"te"#,
                )
            },
        );
        let mut r = Response::new(body);
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            HeaderValue::from_static("application/vnd.amazon.eventstream"),
        );
        r
    } else {
        let body = MockBody::answer(mode, reply.json());
        let mut r = Response::new(body);
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    };
    if let Ok(v) = HeaderValue::try_from(shared.request_id()) {
        response.headers_mut().insert(REQUEST_ID, v);
    }
    response.body_mut().hold_settle(admitted.settle);
    response
}

/// Bedrock's 429 over one of the mock's limits: a `ThrottlingException`
/// and no retry-after (the caller backs off on its own), its message
/// saying tokens or requests as Bedrock's do.
pub(crate) fn throttled(refused: &Refused) -> Response<MockBody> {
    let message = match refused.dim {
        Dim::Tokens | Dim::Input | Dim::Output => None,
        Dim::Requests | Dim::InFlight => {
            Some("Too many requests, please wait before trying again.")
        }
    };
    for_status(StatusCode::TOO_MANY_REQUESTS, message)
}

/// The message of an exception sent inside a stream.
fn stream_message(kind: &str) -> &'static str {
    match kind {
        "throttlingException" => "Too many tokens, please wait before trying again.",
        "serviceUnavailableException" => "Bedrock is unable to process your request.",
        _ => "The model stream failed.",
    }
}

/// SigV4 when the mock has AWS keys, a Bearer API key when it has one,
/// either when it has both; anything goes when it has neither.
fn authorized(
    shared: &Shared,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), Box<Response<MockBody>>> {
    let opts = &shared.opts;
    let bearer = headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if let (Some(key), Some(given)) = (opts.api_key.as_deref(), bearer) {
        return if key == given {
            Ok(())
        } else {
            Err(Box::new(error(
                StatusCode::FORBIDDEN,
                "UnrecognizedClientException",
                "Invalid API Key format: Must start with pre-defined prefix",
            )))
        };
    }
    let keys = match (&opts.aws_access_key_id, &opts.aws_secret_access_key) {
        (Some(id), Some(secret)) => sigv4::Keys {
            access_key_id: id.clone(),
            secret_access_key: secret.clone(),
        },
        _ if opts.api_key.is_some() => {
            return Err(Box::new(error(
                StatusCode::FORBIDDEN,
                "MissingAuthenticationTokenException",
                "Missing Authentication Token",
            )));
        }
        _ => return Ok(()),
    };
    sigv4::verify(&keys, "POST", path, query, headers, body, SystemTime::now())
        .map_err(|r| Box::new(error(StatusCode::FORBIDDEN, r.exception, &r.message)))
}

/// Everything one answer is made from.
struct Reply {
    words: Vec<&'static str>,
    calls: Vec<(String, String, Value)>,
    stop_reason: &'static str,
    input_tokens: u64,
    output_tokens: u64,
    cache_read: u64,
}

impl Reply {
    fn new(req: &request::Converse, configured: u64, cache_read: u64) -> Reply {
        let budget = req.max_tokens.unwrap_or(configured).min(configured);
        let mut stop_reason = if budget < configured {
            "max_tokens"
        } else {
            "end_turn"
        };
        let mut words: Vec<&'static str> = if req.calls.is_empty() {
            (0..budget)
                .map(|i| WORDS[(i % WORDS.len() as u64) as usize])
                .collect()
        } else {
            vec!["Let", "me", "check."]
        };
        if let Some(at) = words
            .iter()
            .position(|w| req.stop_sequences.iter().any(|s| s == w))
        {
            words.truncate(at);
            stop_reason = "stop_sequence";
        }
        let calls: Vec<(String, String, Value)> = req
            .calls
            .iter()
            .enumerate()
            .map(|(i, (name, input))| (format!("tooluse_mock{i:02}"), name.clone(), input.clone()))
            .collect();
        if !calls.is_empty() && stop_reason != "stop_sequence" {
            stop_reason = "tool_use";
        }
        let output_tokens = (words.len() as u64
            + calls
                .iter()
                .map(|c| c.2.to_string().len() as u64 / 4 + 2)
                .sum::<u64>())
        .max(1);
        Reply {
            words,
            calls,
            stop_reason,
            input_tokens: req.prompt_tokens,
            output_tokens,
            cache_read,
        }
    }

    fn usage(&self) -> Value {
        let mut u = json!({"inputTokens": self.input_tokens, "outputTokens": self.output_tokens,
            "totalTokens": self.input_tokens + self.cache_read + self.output_tokens});
        if self.cache_read > 0 {
            u["cacheReadInputTokens"] = json!(self.cache_read);
            u["cacheWriteInputTokens"] = json!(0);
        }
        u
    }

    fn json(&self) -> Vec<u8> {
        let mut content = Vec::new();
        if !self.words.is_empty() {
            content.push(json!({"text": self.words.join(" ")}));
        }
        for (id, name, input) in &self.calls {
            content.push(json!({"toolUse": {"toolUseId": id, "name": name, "input": input}}));
        }
        json!({"output": {"message": {"role": "assistant", "content": content}},
               "stopReason": self.stop_reason, "usage": self.usage(), "metrics": {"latencyMs": 12}})
        .to_string()
        .into_bytes()
    }

    /// The ConverseStream events, one frame each.
    fn frames(&self) -> Vec<Bytes> {
        let ev = |kind: &str, v: Value| frame(kind, v.to_string().as_bytes());
        let mut frames = vec![ev("messageStart", json!({"role": "assistant"}))];
        let mut index = 0;
        if !self.words.is_empty() {
            for (i, w) in self.words.iter().enumerate() {
                let piece = if i == 0 {
                    w.to_string()
                } else {
                    format!(" {w}")
                };
                frames.push(ev(
                    "contentBlockDelta",
                    json!({"contentBlockIndex": index, "delta": {"text": piece}}),
                ));
            }
            frames.push(ev("contentBlockStop", json!({"contentBlockIndex": index})));
            index += 1;
        }
        for (id, name, input) in &self.calls {
            frames.push(ev("contentBlockStart", json!({"contentBlockIndex": index, "start": {"toolUse": {"toolUseId": id, "name": name}}})));
            let text = input.to_string();
            let chars: Vec<char> = text.chars().collect();
            for piece in chars.chunks(chars.len().div_ceil(3).max(1)) {
                let piece: String = piece.iter().collect();
                frames.push(ev(
                    "contentBlockDelta",
                    json!({"contentBlockIndex": index, "delta": {"toolUse": {"input": piece}}}),
                ));
            }
            frames.push(ev("contentBlockStop", json!({"contentBlockIndex": index})));
            index += 1;
        }
        frames.push(ev("messageStop", json!({"stopReason": self.stop_reason})));
        frames.push(ev(
            "metadata",
            json!({"usage": self.usage(), "metrics": {"latencyMs": 12}}),
        ));
        frames
    }
}
