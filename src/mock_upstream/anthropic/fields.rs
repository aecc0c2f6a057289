//! Which top-level fields a Messages body may carry, by where it arrives
//! (Anthropic, Vertex AI, Bedrock) and what it asks (a message, or a
//! token count), and the betas Bedrock takes.

/// Where a Messages body arrives, which decides the fields around the
/// messages: Anthropic names the model in the body; Vertex AI in the URL
/// with `anthropic_version` in the body; Bedrock's InvokeModel in the URL,
/// with its own `anthropic_version`, betas in `anthropic_beta` and no
/// `stream` (the operation says it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    Anthropic,
    Vertex,
    Bedrock,
}

/// A message to create, or one whose tokens to count (no `max_tokens`,
/// no sampling parameters, no `stream`; the model named even on Vertex).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Call {
    Create,
    Count,
}

/// Fields every flavor takes for a message; Claude Code's additions
/// (`output_config`, `context_management`, ...) included.
const CREATE_FIELDS: [&str; 19] = [
    "messages",
    "max_tokens",
    "system",
    "tools",
    "tool_choice",
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "metadata",
    "thinking",
    "service_tier",
    "output_config",
    "output_format",
    "context_management",
    "container",
    "mcp_servers",
    "safeguards",
    "inference_geo",
];

/// Fields of a count_tokens body, besides the flavor's own.
const COUNT_FIELDS: [&str; 9] = [
    "messages",
    "system",
    "tools",
    "tool_choice",
    "thinking",
    "output_config",
    "output_format",
    "context_management",
    "mcp_servers",
];

/// Whether `key` belongs in a body of this flavor and call.
pub(super) fn permitted(key: &str, flavor: Flavor, call: Call) -> bool {
    let common = match call {
        Call::Create => CREATE_FIELDS.contains(&key),
        // Bedrock counts an InvokeModel body: it takes what InvokeModel takes.
        Call::Count if flavor == Flavor::Bedrock => CREATE_FIELDS.contains(&key),
        Call::Count => COUNT_FIELDS.contains(&key),
    };
    common
        || match key {
            "model" => {
                flavor == Flavor::Anthropic || (flavor, call) == (Flavor::Vertex, Call::Count)
            }
            "stream" => call == Call::Create && flavor != Flavor::Bedrock,
            "anthropic_version" => flavor != Flavor::Anthropic,
            "anthropic_beta" => flavor == Flavor::Bedrock,
            _ => false,
        }
}

/// The betas Bedrock's InvokeModel takes in `anthropic_beta`: the flags
/// envoy ai-gateway confirmed against Bedrock by live probes, with AWS's
/// Claude parameters page; any other flag is a 400 `ValidationException:
/// invalid beta flag`, as on Bedrock (Claude Code's own flags,
/// `claude-code-20250219` and the like, among them). The real list grows
/// with Bedrock's releases.
pub(crate) const BEDROCK_BETAS: [&str; 17] = [
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
    "tool-examples-2025-10-29",
    "compact-2026-01-12",
];
