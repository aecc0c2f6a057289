//! What kind of client error an upstream gave: a prompt too long for the
//! model (worth another model with a larger window), a content-policy
//! refusal (never routed around unless the operator asks), or anything
//! else (the caller's to fix).
//!
//! Read from the OpenAI-shaped error body every provider's client error is
//! passed back in (the translating providers keep the upstream's words in
//! `message`), so one table covers them all; README lists it.

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The prompt (with `max_tokens`) does not fit the model's context window.
    ContextWindow,
    /// A content-policy refusal: OpenAI's, Azure's content filter.
    ContentPolicy,
    Other,
}

/// `error.code` values that say "prompt too long" (OpenAI, Azure, llama.cpp).
const CONTEXT_CODES: [&str; 2] = ["context_length_exceeded", "exceed_context_size_error"];

/// Phrases in `error.message`, lowercased, that say "prompt too long":
/// OpenAI and vLLM ("This model's maximum context length is 8192 tokens"),
/// Anthropic and Claude on Vertex ("prompt is too long: 210000 tokens >
/// 200000 maximum", "input length and `max_tokens` exceed context limit"),
/// Bedrock ("ValidationException: Input is too long for requested model"),
/// vLLM's newer wording ("is longer than the maximum model length"), Ollama
/// ("the input length exceeds the context length"), llama.cpp ("exceeds the
/// available context size"), Gemini's OpenAI endpoint ("exceeds the maximum
/// number of tokens allowed").
const CONTEXT_PHRASES: [&str; 9] = [
    "maximum context length",
    "prompt is too long",
    "exceed context limit",
    "input is too long",
    "longer than the maximum model length",
    "exceeds the context length",
    "exceeds the context window",
    "exceeds the available context size",
    "exceeds the maximum number of tokens allowed",
];

/// `error.code` (or Azure's `innererror.code`) of a policy refusal.
const POLICY_CODES: [&str; 3] = [
    "content_filter",
    "content_policy_violation",
    "ResponsibleAIPolicyViolation",
];

/// Phrases of a policy refusal whose code is missing or generic: Azure's
/// content management policy, OpenAI's safety system.
const POLICY_PHRASES: [&str; 2] = ["content management policy", "safety system"];

#[derive(Deserialize)]
struct Body {
    error: Option<Detail>,
}

#[derive(Deserialize)]
struct Detail {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    code: Option<serde_json::Value>,
    #[serde(default)]
    innererror: Option<Inner>,
}

#[derive(Deserialize)]
struct Inner {
    #[serde(default)]
    code: Option<String>,
}

/// What a client error (`status` 4xx, `body` in OpenAI's shape) is about.
pub(crate) fn classify(status: u16, body: &[u8]) -> Refusal {
    // Only a 400 (413 for an oversized prompt on some servers) says these.
    if !matches!(status, 400 | 413 | 422) {
        return Refusal::Other;
    }
    let Some(detail) = serde_json::from_slice::<Body>(body)
        .ok()
        .and_then(|b| b.error)
    else {
        return Refusal::Other;
    };
    let code = detail.code.as_ref().and_then(|c| c.as_str()).unwrap_or("");
    let inner = detail
        .innererror
        .as_ref()
        .and_then(|i| i.code.as_deref())
        .unwrap_or("");
    let message = detail.message.unwrap_or_default().to_lowercase();
    if POLICY_CODES.contains(&code)
        || POLICY_CODES.contains(&inner)
        || POLICY_PHRASES.iter().any(|p| message.contains(p))
    {
        return Refusal::ContentPolicy;
    }
    if CONTEXT_CODES.contains(&code) || CONTEXT_PHRASES.iter().any(|p| message.contains(p)) {
        return Refusal::ContextWindow;
    }
    Refusal::Other
}

#[cfg(test)]
mod tests {
    use super::*;

    fn openai_shaped(message: &str, code: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({"error": {
            "message": message, "type": "invalid_request_error", "param": null, "code": code
        }}))
        .unwrap()
    }

    #[test]
    fn each_providers_prompt_too_long_is_recognised() {
        for (message, code) in [
            (
                "This model's maximum context length is 128000 tokens. However, your messages resulted in 130000 tokens.",
                "context_length_exceeded",
            ),
            (
                "prompt is too long: 210000 tokens > 200000 maximum",
                "invalid_request_error",
            ),
            (
                "input length and `max_tokens` exceed context limit: 198000 + 8192 > 200000",
                "invalid_request_error",
            ),
            (
                "ValidationException: Input is too long for requested model.",
                "ValidationException",
            ),
            (
                "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens (4000 in the messages, 1000 in the completion).",
                "BadRequestError",
            ),
            (
                "The decoder prompt (length 5000) is longer than the maximum model length of 4096.",
                "BadRequestError",
            ),
            ("the input length exceeds the context length", ""),
            (
                "the request exceeds the available context size, try increasing it",
                "exceed_context_size_error",
            ),
        ] {
            assert_eq!(
                classify(400, &openai_shaped(message, code)),
                Refusal::ContextWindow,
                "{message}"
            );
        }
    }

    #[test]
    fn content_policy_refusals_are_recognised() {
        let azure = br#"{"error":{"message":"The response was filtered due to the prompt triggering Azure OpenAI's content management policy.","type":null,"param":"prompt","code":"content_filter","status":400,"innererror":{"code":"ResponsibleAIPolicyViolation","content_filter_result":{"hate":{"filtered":true,"severity":"high"}}}}}"#;
        assert_eq!(classify(400, azure), Refusal::ContentPolicy);
        let openai = openai_shaped(
            "Your request was rejected as a result of our safety system.",
            "content_policy_violation",
        );
        assert_eq!(classify(400, &openai), Refusal::ContentPolicy);
    }

    #[test]
    fn other_client_errors_are_the_callers() {
        for body in [
            openai_shaped("max_tokens is too large: 999999999", "invalid_value"),
            b"not json".to_vec(),
            br#"{"error":"a string"}"#.to_vec(),
        ] {
            assert_eq!(classify(400, &body), Refusal::Other);
        }
        let long = openai_shaped("prompt is too long", "");
        assert_eq!(classify(401, &long), Refusal::Other, "only a 400 says it");
    }
}
