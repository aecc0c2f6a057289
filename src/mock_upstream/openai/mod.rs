//! The OpenAI wire format: what the mock reads from a request and the JSON
//! and SSE frames it answers with.
//!
//! Requests are parsed into borrowing structs that ignore unknown fields;
//! answers are serialized from borrowing structs or, for stream chunks,
//! spliced from a per-reply template, so no JSON DOM is ever built.

mod embeddings;
mod error;
mod reply;
mod request;
mod response_reply;
mod responses;

use serde::Serialize;

pub(super) use embeddings::*;
pub(super) use error::*;
pub(super) use reply::*;
pub(super) use request::*;
pub(super) use response_reply::*;
pub(super) use responses::*;

/// What OpenAI puts in `system_fingerprint`; any stable value will do.
pub(super) const FINGERPRINT: &str = "fp_7e1d2c9a4b";

/// The completion text cycles through these, one token per word. They must
/// need no JSON escaping: stream chunks splice them in verbatim.
pub(super) const WORDS: [&str; 16] = [
    "The", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "while", "the",
    "gateway", "routes", "every", "request", "along",
];

/// The stream's last frame.
pub(super) const DONE_FRAME: &[u8] = b"data: [DONE]\n\n";

/// Embeddings have this many dimensions.
pub(super) const EMBEDDING_DIMS: usize = 8;

/// Serializes a value made only of strings, numbers and options, which
/// cannot fail; an empty body is still better than a panic if it ever did.
pub(super) fn to_vec<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

/// Seconds since the Unix epoch, for `created`.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests;
