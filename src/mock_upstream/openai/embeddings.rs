//! Embeddings and the model list.

use serde::Serialize;

use super::{EMBEDDING_DIMS, EmbeddingJob, to_vec};
use crate::mock_upstream::state::{splitmix64, unit_f64};

pub(crate) fn embeddings_json(job: &EmbeddingJob, model: &str) -> Vec<u8> {
    #[derive(Serialize)]
    struct List<'a> {
        object: &'static str,
        data: Vec<Item>,
        model: &'a str,
        usage: EmbeddingUsage,
    }
    #[derive(Serialize)]
    struct Item {
        object: &'static str,
        index: usize,
        embedding: Vector,
    }
    #[derive(Serialize)]
    #[serde(untagged)]
    enum Vector {
        Floats([f32; EMBEDDING_DIMS]),
        Base64(String),
    }
    #[derive(Serialize)]
    struct EmbeddingUsage {
        prompt_tokens: u64,
        total_tokens: u64,
    }
    let data = job
        .inputs
        .iter()
        .enumerate()
        .map(|(index, input)| {
            let vector = embedding(input.seed);
            let embedding = if job.base64 {
                Vector::Base64(base64_f32(&vector))
            } else {
                Vector::Floats(vector)
            };
            Item {
                object: "embedding",
                index,
                embedding,
            }
        })
        .collect();
    let tokens = job.prompt_tokens();
    to_vec(&List {
        object: "list",
        data,
        model,
        usage: EmbeddingUsage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
    })
}

/// A unit vector picked by `seed`: the same input always embeds the same.
pub(crate) fn embedding(seed: u64) -> [f32; EMBEDDING_DIMS] {
    let mut v = [0f32; EMBEDDING_DIMS];
    for (i, x) in v.iter_mut().enumerate() {
        *x = (unit_f64(splitmix64(seed, i as u64)) * 2.0 - 1.0) as f32;
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// `encoding_format: "base64"`: the little-endian f32s, base64-encoded.
pub(crate) fn base64_f32(values: &[f32]) -> String {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    base64(&bytes)
}

pub(crate) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= group.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Models `GET /v1/models` lists when no `--model` is set; the mock answers
/// any model name, these are only what it advertises.
pub(crate) const DEFAULT_MODELS: [&str; 3] = ["gpt-4o", "gpt-4o-mini", "text-embedding-3-small"];

pub(crate) fn models_json(configured: Option<&str>) -> Vec<u8> {
    #[derive(Serialize)]
    struct List<'a> {
        object: &'static str,
        data: Vec<Model<'a>>,
    }
    #[derive(Serialize)]
    struct Model<'a> {
        id: &'a str,
        object: &'static str,
        created: u64,
        owned_by: &'static str,
    }
    let names: Vec<&str> = match configured {
        Some(name) => vec![name],
        None => DEFAULT_MODELS.to_vec(),
    };
    let data = names
        .into_iter()
        .map(|id| Model {
            id,
            object: "model",
            created: 1_715_367_049,
            owned_by: "mock-upstream",
        })
        .collect();
    to_vec(&List {
        object: "list",
        data,
    })
}
