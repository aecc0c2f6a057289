//! Per-request work in the gateway: reading and rewriting the body, checking
//! an answer, scanning SSE.
//! `cargo bench --bench request`

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use switchboard::gateway::json;
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
    // Once per stream: an upstream that puts the usage in its finish chunk.
    let finish_with_usage = Bytes::from_static(
        b"data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":9,\"total_tokens\":21}}\n\n",
    );
    c.bench_function("sse/strip_usage_from_finish_chunk", |b| {
        let mut s = SseScanner::new(true);
        b.iter(|| s.feed(black_box(finish_with_usage.clone())))
    });
}

/// Checking a non-streaming answer before passing it on: our scanner, and
/// serde_json skipping everything but `usage` (what it replaced) alongside.
fn answer_check(c: &mut Criterion) {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(default)]
        #[allow(dead_code)]
        usage: Option<serde::de::IgnoredAny>,
    }
    let short = r#"{"id":"chatcmpl-bench0001","object":"chat.completion","created":1700000000,"model":"bench-model","system_fingerprint":"fp_bench","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! This is a fixed benchmark reply.","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":9,"total_tokens":21}}"#;
    let long = short.replace(
        "Hello! This is a fixed benchmark reply.",
        &"A longer answer, as a model writes them, with \\\"quotes\\\" and\\nnew lines. "
            .repeat(50),
    );
    for (name, doc) in [("short", short.to_string()), ("4k", long)] {
        c.bench_function(&format!("answer/{name}/scanner"), |b| {
            b.iter(|| json::object_members(black_box(doc.as_bytes()), |_, _| Ok(())).unwrap())
        });
        c.bench_function(&format!("answer/{name}/serde_json"), |b| {
            b.iter(|| serde_json::from_slice::<Probe>(black_box(doc.as_bytes())).unwrap())
        });
    }
}

/// The Messages door's read of a Claude Code turn for routing (model,
/// stream, estimate): a real captured body (tests/fixtures/agents), grown
/// to 50 KB of conversation.
fn messages_inspect(c: &mut Criterion) {
    let fixture: serde_json::Value = serde_json::from_str(include_str!(
        "../tests/fixtures/agents/claude_code/tool_turn1.json"
    ))
    .unwrap();
    let mut body: serde_json::Value =
        serde_json::from_str(fixture["body"].as_str().unwrap()).unwrap();
    let filler = "fn main() {\n    println!(\"hello\");\n}\n".repeat(40);
    while body.to_string().len() < 50_000 {
        body["messages"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!(
                {"role": "user", "content": [{"type": "text", "text": filler}]}
            ));
    }
    let body = body.to_string();
    let captured = fixture["body"].as_str().unwrap().to_string();
    c.bench_function("messages/inspect_claude_code_captured", |b| {
        b.iter(|| {
            switchboard::gateway::door::messages::inspect(black_box(captured.as_bytes())).unwrap()
        })
    });
    c.bench_function("messages/inspect_claude_code_50k", |b| {
        b.iter(|| {
            switchboard::gateway::door::messages::inspect(black_box(body.as_bytes())).unwrap()
        })
    });
}

/// The Responses door's read of a Codex turn for routing: a captured
/// body (tests/fixtures/agents), its history grown to 40 KB.
fn responses_inspect(c: &mut Criterion) {
    let fixture: serde_json::Value = serde_json::from_str(include_str!(
        "../tests/fixtures/agents/codex/tool_turn3_resume.json"
    ))
    .unwrap();
    let mut body: serde_json::Value =
        serde_json::from_str(fixture["body"].as_str().unwrap()).unwrap();
    let filler = "fn main() {\n    println!(\"hello\");\n}\n".repeat(40);
    while body.to_string().len() < 40_000 {
        body["input"].as_array_mut().unwrap().push(serde_json::json!(
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": filler}]}
        ));
    }
    let body = body.to_string();
    c.bench_function("responses/inspect_codex_40k", |b| {
        b.iter(|| {
            switchboard::gateway::door::responses::inspect(black_box(body.as_bytes())).unwrap()
        })
    });
}

criterion_group!(
    benches,
    body_rewrite,
    sse_scan,
    answer_check,
    messages_inspect,
    responses_inspect
);
criterion_main!(benches);
