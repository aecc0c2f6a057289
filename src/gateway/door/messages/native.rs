//! A Messages request for a Claude deployment, passed through: the body as
//! the client wrote it, with only what each platform's API needs changed.
//!
//! - `anthropic`: the model replaced; `anthropic-version` and
//!   `anthropic-beta` forwarded as the client sent them.
//! - `vertex`: no `model` (the URL names it), `anthropic_version:
//!   "vertex-2023-10-16"`; betas stay a header, filtered.
//! - `bedrock` (InvokeModel): no `model` or `stream` (the URL says both),
//!   `anthropic_version: "bedrock-2023-05-31"`, betas as an
//!   `anthropic_beta` list in the body, filtered.
//!
//! Bedrock and Vertex refuse a whole request over one beta flag or field
//! they do not know ("invalid beta flag", "Extra inputs are not
//! permitted"), and Claude Code sends several. Flags outside each
//! platform's allowlist are left out (named in a debug line and in
//! `x-switchboard-dropped-betas`), and so are the fields that only a
//! left-out flag makes valid. Everything else, thinking blocks and their
//! signatures, `cache_control`, citations, images, documents, tool use,
//! is passed byte for byte.

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use bytes::{BufMut, Bytes, BytesMut};

use crate::gateway::json;
use crate::gateway::provider::Dialect;
use crate::gateway::request::Inspected;

pub const BEDROCK_VERSION: &str = "bedrock-2023-05-31";
pub const VERTEX_VERSION: &str = "vertex-2023-10-16";

const ANTHROPIC_BETA: HeaderName = HeaderName::from_static("anthropic-beta");
const ANTHROPIC_VERSION: HeaderName = HeaderName::from_static("anthropic-version");

/// Betas Bedrock's InvokeModel accepts for Claude (AWS's Claude parameter
/// pages; the flags envoy ai-gateway verified against Bedrock and LiteLLM's
/// table agree on these). See README for the sources.
pub const BEDROCK_BETAS: &[&str] = &[
    "computer-use-2024-10-22",
    "computer-use-2025-01-24",
    "context-1m-2025-08-07",
    "context-management-2025-06-27",
    "dev-full-thinking-2025-05-14",
    "effort-2025-11-24",
    "fine-grained-tool-streaming-2025-05-14",
    "interleaved-thinking-2025-05-14",
    "model-context-window-exceeded-2025-08-26",
    "output-128k-2025-02-19",
    "pdfs-2024-09-25",
    "search-results-2025-06-09",
    "token-counting-2024-11-01",
    "token-efficient-tools-2025-02-19",
    "tool-search-tool-2025-10-19",
    "compact-2026-01-12",
];

/// Betas Vertex AI accepts for Claude.
pub const VERTEX_BETAS: &[&str] = &[
    "computer-use-2025-01-24",
    "context-1m-2025-08-07",
    "context-management-2025-06-27",
    "interleaved-thinking-2025-05-14",
    "tool-search-tool-2025-10-19",
    "web-search-2025-03-05",
    "compact-2026-01-12",
    "token-counting-2024-11-01",
];

/// Anthropic's name for tool search outside its own API.
const RENAMED: &[(&str, &str)] = &[(
    "advanced-tool-use-2025-11-20",
    "tool-search-tool-2025-10-19",
)];

/// Which Claude platform a deployment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    Anthropic,
    Vertex,
    Bedrock,
}

impl Platform {
    pub fn of(dialect: Dialect) -> Platform {
        match dialect {
            Dialect::VertexClaude => Platform::Vertex,
            Dialect::Bedrock => Platform::Bedrock,
            _ => Platform::Anthropic,
        }
    }

    fn allowed(self) -> Option<&'static [&'static str]> {
        match self {
            Platform::Anthropic => None,
            Platform::Vertex => Some(VERTEX_BETAS),
            Platform::Bedrock => Some(BEDROCK_BETAS),
        }
    }
}

/// The client's betas split into what a platform takes and what it does not.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Betas {
    pub kept: Vec<String>,
    pub dropped: Vec<String>,
}

impl Betas {
    pub fn filter(header: Option<&HeaderValue>, platform: Platform) -> Betas {
        let mut out = Betas::default();
        let Some(allowed) = platform.allowed() else {
            return out;
        };
        let raw = header.and_then(|v| v.to_str().ok()).unwrap_or_default();
        for flag in raw.split(',').map(str::trim).filter(|f| !f.is_empty()) {
            let flag = RENAMED
                .iter()
                .find(|(from, _)| *from == flag)
                .map_or(flag, |(_, to)| to);
            let list = if allowed.contains(&flag) {
                &mut out.kept
            } else {
                &mut out.dropped
            };
            if !list.iter().any(|f| f == flag) {
                list.push(flag.to_string());
            }
        }
        out
    }

    fn has(&self, flag: &str) -> bool {
        self.kept.iter().any(|f| f == flag)
    }

    /// `x-switchboard-dropped-betas`, when any were.
    pub fn dropped_header(&self) -> Option<HeaderValue> {
        (!self.dropped.is_empty())
            .then(|| HeaderValue::from_str(&self.dropped.join(",")).ok())
            .flatten()
    }
}

/// Top-level members the platform's API refuses, given the betas kept:
/// what only a flag makes valid goes when the flag does.
fn refused(key: &[u8], platform: Platform, betas: &Betas) -> bool {
    match key {
        b"model" => true,
        b"stream" => platform == Platform::Bedrock,
        // Re-added below with the platform's own value.
        b"anthropic_version" | b"anthropic_beta" => true,
        // Anthropic-only features ("Extra inputs are not permitted").
        b"service_tier" | b"container" | b"inference_geo" => true,
        b"mcp_servers" => !betas.kept.iter().any(|f| f.starts_with("mcp-client")),
        b"output_config" => !betas.has("effort-2025-11-24"),
        b"context_management" => !betas.has("context-management-2025-06-27"),
        _ => false,
    }
}

/// The body for a Claude deployment on `platform`.
pub fn body(
    platform: Platform,
    req: &Inspected,
    body: &Bytes,
    model_json: &Bytes,
    betas: &Betas,
) -> Bytes {
    if platform == Platform::Anthropic {
        return req.rewrite(body, model_json);
    }
    let mut out = BytesMut::with_capacity(body.len() + 96);
    out.put_u8(b'{');
    let version = match platform {
        Platform::Bedrock => BEDROCK_VERSION,
        _ => VERTEX_VERSION,
    };
    out.put_slice(br#""anthropic_version":""#);
    out.put_slice(version.as_bytes());
    out.put_u8(b'"');
    if platform == Platform::Bedrock && !betas.kept.is_empty() {
        out.put_slice(br#","anthropic_beta":"#);
        out.put_slice(&serde_json::to_vec(&betas.kept).unwrap_or_else(|_| b"[]".to_vec()));
    }
    // The body was read as one JSON object by `inspect`: its members are
    // copied as written, key and value, but for those refused.
    let _ = json::object_entries(body, |key, quoted, value| {
        if refused(key, platform, betas) {
            return Ok(());
        }
        out.put_u8(b',');
        out.put_slice(quoted);
        out.put_u8(b':');
        if key == b"tools" && memchr::memmem::find(value, b"defer_loading").is_some() {
            out.put_slice(&without_defer_loading(value));
        } else {
            out.put_slice(value);
        }
        Ok(())
    });
    out.put_u8(b'}');
    out.freeze()
}

/// Tools without `defer_loading`, which only Anthropic's tool search reads
/// and Bedrock and Vertex refuse as an extra input.
fn without_defer_loading(tools: &[u8]) -> Vec<u8> {
    let Ok(mut list) =
        serde_json::from_slice::<Vec<serde_json::Map<String, serde_json::Value>>>(tools)
    else {
        return tools.to_vec();
    };
    for tool in &mut list {
        tool.remove("defer_loading");
    }
    serde_json::to_vec(&list).unwrap_or_else(|_| tools.to_vec())
}

/// The request's own headers for the deployment: Anthropic gets the
/// client's version and betas as sent, Vertex the betas it takes.
pub fn headers(
    platform: Platform,
    client: &HeaderMap,
    betas: &Betas,
) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    match platform {
        Platform::Anthropic => {
            if let Some(v) = client.get(&ANTHROPIC_VERSION) {
                out.push((ANTHROPIC_VERSION, v.clone()));
            }
            if let Some(v) = client.get(&ANTHROPIC_BETA) {
                out.push((ANTHROPIC_BETA, v.clone()));
            }
        }
        Platform::Vertex if !betas.kept.is_empty() => {
            if let Ok(v) = HeaderValue::from_str(&betas.kept.join(",")) {
                out.push((ANTHROPIC_BETA, v));
            }
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn betas(header: &str, platform: Platform) -> Betas {
        Betas::filter(Some(&HeaderValue::from_str(header).unwrap()), platform)
    }

    const CLAUDE_CODE_BETAS: &str = "claude-code-20250219,context-1m-2025-08-07,interleaved-thinking-2025-05-14,thinking-token-count-2026-05-13,context-management-2025-06-27,prompt-caching-scope-2026-01-05,mid-conversation-system-2026-04-07,effort-2025-11-24";

    #[test]
    fn bedrock_and_vertex_keep_only_their_allowlisted_betas() {
        let b = betas(CLAUDE_CODE_BETAS, Platform::Bedrock);
        assert_eq!(
            b.kept,
            [
                "context-1m-2025-08-07",
                "interleaved-thinking-2025-05-14",
                "context-management-2025-06-27",
                "effort-2025-11-24"
            ]
        );
        assert!(b.dropped.contains(&"claude-code-20250219".to_string()));
        let v = betas(CLAUDE_CODE_BETAS, Platform::Vertex);
        assert!(v.dropped.contains(&"effort-2025-11-24".to_string()));
        assert_eq!(
            betas("advanced-tool-use-2025-11-20", Platform::Vertex).kept,
            ["tool-search-tool-2025-10-19"]
        );
        assert_eq!(
            betas(CLAUDE_CODE_BETAS, Platform::Anthropic),
            Betas::default()
        );
    }

    #[test]
    fn bedrock_gets_its_version_and_betas_in_the_body_and_no_model_or_stream() {
        let raw = br#"{"model":"claude","stream":true,"max_tokens":9,"messages":[{"role":"user","content":[{"type":"thinking","thinking":"x","signature":"sig=="},{"type":"text","text":"hi","cache_control":{"type":"ephemeral"}}]}],"output_config":{"effort":"high"},"service_tier":"auto","tools":[{"name":"t","input_schema":{},"defer_loading":true}]}"#;
        let body = Bytes::from_static(raw);
        let req = super::super::inspect(&body).unwrap();
        let b = betas(
            "interleaved-thinking-2025-05-14,claude-code-20250219",
            Platform::Bedrock,
        );
        let out = super::body(Platform::Bedrock, &req, &body, &Bytes::new(), &b);
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["anthropic_version"], BEDROCK_VERSION);
        assert_eq!(
            v["anthropic_beta"],
            serde_json::json!(["interleaved-thinking-2025-05-14"])
        );
        for gone in ["model", "stream", "output_config", "service_tier"] {
            assert!(v.get(gone).is_none(), "{gone}");
        }
        assert!(v["tools"][0].get("defer_loading").is_none());
        // The conversation goes byte for byte.
        let messages = br#""messages":[{"role":"user","content":[{"type":"thinking","thinking":"x","signature":"sig=="},{"type":"text","text":"hi","cache_control":{"type":"ephemeral"}}]}]"#;
        assert!(memchr::memmem::find(&out, messages).is_some());
    }

    #[test]
    fn vertex_keeps_stream_and_gets_its_version() {
        let body =
            Bytes::from_static(br#"{"model":"claude","stream":true,"max_tokens":9,"messages":[]}"#);
        let req = super::super::inspect(&body).unwrap();
        let out = super::body(
            Platform::Vertex,
            &req,
            &body,
            &Bytes::new(),
            &Betas::default(),
        );
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["anthropic_version"], VERTEX_VERSION);
        assert_eq!(v["stream"], true);
        assert!(v.get("model").is_none());
    }
}
