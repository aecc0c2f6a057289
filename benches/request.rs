//! Per-request work in the gateway: reading and rewriting the body, scanning SSE.
//! `cargo bench --bench request`

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use switchboard::gateway::request::{Endpoint, inspect, json_string};
use switchboard::gateway::sse::SseScanner;

fn body_rewrite(c: &mut Criterion) {
    let body = serde_json::json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant.".repeat(4)},
            {"role": "user", "content": "Explain smooth weighted round robin in two sentences."}
        ],
        "max_tokens": 200,
        "temperature": 0.2,
    })
    .to_string();
    let model = json_string("gpt-4o-2024-08-06");
    c.bench_function("request/inspect_and_rewrite", |b| {
        b.iter(|| {
            let i = inspect(black_box(body.as_bytes()), Endpoint::ChatCompletions).unwrap();
            i.rewrite(body.as_bytes(), &model)
        })
    });
    let stream_body = body.replace("\"max_tokens\"", "\"stream\":true,\"max_tokens\"");
    c.bench_function("request/inspect_and_rewrite_stream", |b| {
        b.iter(|| {
            let i = inspect(black_box(stream_body.as_bytes()), Endpoint::ChatCompletions).unwrap();
            i.rewrite(stream_body.as_bytes(), &model)
        })
    });
}

fn sse_scan(c: &mut Criterion) {
    let chunk = Bytes::from_static(
        b"data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hello\"}}]}\n\n",
    );
    c.bench_function("sse/scan_chunk_passthrough", |b| {
        let mut s = SseScanner::new(false);
        b.iter(|| s.feed(black_box(chunk.clone())))
    });
    let with_null = Bytes::from_static(
        b"data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hello\"}}],\"usage\":null}\n\n",
    );
    c.bench_function("sse/scan_chunk_strip_usage", |b| {
        let mut s = SseScanner::new(true);
        b.iter(|| s.feed(black_box(with_null.clone())))
    });
}

criterion_group!(benches, body_rewrite, sse_scan);
criterion_main!(benches);
