//! Translating for providers that do not speak OpenAI's API: a chat request
//! into Anthropic's Messages, an Anthropic answer back, and one streamed
//! text delta into an OpenAI chunk; for Bedrock, the SigV4 signing of a
//! typical request and one event-stream frame decoded (CRCs checked) and
//! translated into a chunk.
//! `cargo bench --bench translate`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use switchboard::gateway::provider::AnswerContext;
use switchboard::gateway::provider::anthropic::{answer, request, stream::Translator};

/// A typical chat request of about 2 KB: a system prompt, a few turns.
fn chat_2kb() -> String {
    let long = "The gateway routes each model over several deployments by their limits. ".repeat(7);
    let body = json!({
        "model": "gpt-4o",
        "max_tokens": 300,
        "temperature": 0.3,
        "messages": [
            {"role": "system", "content": long},
            {"role": "user", "content": "How does failover work when one region is rate limited?"},
            {"role": "assistant", "content": long},
            {"role": "user", "content": "And what happens to a stream that breaks after its first byte?"},
            {"role": "assistant", "content": "It ends with an error event rather than a clean finish."},
            {"role": "user", "content": long},
        ],
    })
    .to_string();
    assert!((1800..2600).contains(&body.len()), "{}", body.len());
    body
}

fn translate(c: &mut Criterion) {
    let body = chat_2kb();
    c.bench_function("anthropic/request_2kb", |b| {
        b.iter(|| request::translate(black_box(body.as_bytes()), "claude-sonnet-4-5").unwrap())
    });
    let cx = AnswerContext {
        rename: None,
        model: "gpt-4o",
        created: 1_700_000_000,
        wants_usage: false,
    };
    let message = json!({"id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": "It ends with an error event rather than a clean finish, so the SDK raises."}],
        "stop_reason": "end_turn", "usage": {"input_tokens": 512, "output_tokens": 20}})
    .to_string();
    c.bench_function("anthropic/answer", |b| {
        b.iter(|| answer::translate(black_box(message.as_bytes()), &cx).unwrap())
    });
    let start = b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01\",\"usage\":{\"input_tokens\":512}}}\n\nevent: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n";
    let delta = bytes::Bytes::from_static(b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\" gateway\"}}\n\n");
    let mut t = Translator::new(&cx);
    t.feed(start);
    c.bench_function("anthropic/stream_text_delta", |b| {
        b.iter(|| t.feed(black_box(&delta)).unwrap())
    });
}

fn bedrock(c: &mut Criterion) {
    use switchboard::config::{ApiKey, AwsKeys};
    use switchboard::gateway::provider::bedrock::{self, sign::Signer, stream};
    let body = chat_2kb();
    c.bench_function("bedrock/request_2kb", |b| {
        b.iter(|| {
            bedrock::request::translate(
                black_box(body.as_bytes()),
                "anthropic.claude-sonnet-4-5-20250929-v1:0",
            )
            .unwrap()
        })
    });
    let converse =
        bedrock::request::translate(body.as_bytes(), "anthropic.claude-sonnet-4-5-20250929-v1:0")
            .unwrap();
    let signer = Signer::new(
        &AwsKeys {
            access_key_id: ApiKey::literal("AKIAIOSFODNN7EXAMPLE"),
            secret_access_key: ApiKey::literal("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
            session_token: None,
        },
        "us-east-1",
    );
    let url = "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse";
    c.bench_function("bedrock/sigv4_sign_2kb", |b| {
        b.iter(|| {
            signer
                .sign(
                    black_box(url),
                    "bedrock-runtime.us-east-1.amazonaws.com",
                    &converse,
                    std::time::SystemTime::now(),
                )
                .unwrap()
        })
    });
    let cx = AnswerContext {
        rename: None,
        model: "claude",
        created: 1_700_000_000,
        wants_usage: false,
    };
    let mut t = stream::Translator::new(&cx);
    t.feed(&stream::frame("messageStart", br#"{"role":"assistant"}"#));
    let delta = stream::frame(
        "contentBlockDelta",
        br#"{"contentBlockIndex":0,"delta":{"text":" gateway"}}"#,
    );
    c.bench_function("bedrock/stream_frame_text_delta", |b| {
        b.iter(|| t.feed(black_box(&delta)).unwrap())
    });
}

criterion_group!(benches, translate, bedrock);
criterion_main!(benches);
