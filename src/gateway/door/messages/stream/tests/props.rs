//! Any Anthropic event stream comes out of the Bedrock event-stream path
//! byte for byte as out of the direct (Anthropic, Vertex) SSE path, cut
//! anywhere on either, with the same usage, content count and end.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

/// One generated content block.
#[derive(Debug, Clone)]
enum Block {
    /// Text in pieces, with a citation after the first when asked.
    Text(Vec<String>, bool),
    /// Thinking the model keeps to itself: one start, no deltas.
    Redacted(String),
    /// Thinking text in pieces, then its signature.
    Thinking(Vec<String>, String),
    /// A tool call: name, input, where its JSON is cut into deltas.
    Tool(String, Value, Vec<usize>),
}

/// Text as a model may write it: any printable character, and the ones
/// JSON escapes.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "\\PC{0,16}",
        1 => Just("\"quoted\" \\back\\slash\\ \nnew\r\nline\t\u{2028}\u{0}".to_string()),
        1 => "[\"\\\\\n\r\t\u{1}{}:,]{1,6}",
    ]
}

fn input() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        Just(Value::Null),
        text().prop_map(Value::from),
    ];
    let value = leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map(text(), inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    prop::collection::btree_map(text(), value, 0..4)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

fn block() -> impl Strategy<Value = Block> {
    prop_oneof![
        (prop::collection::vec(text(), 1..4), any::<bool>())
            .prop_map(|(t, cited)| Block::Text(t, cited)),
        "[A-Za-z0-9+/]{8,40}".prop_map(Block::Redacted),
        (
            prop::collection::vec(text(), 0..4),
            "[A-Za-z0-9+/]{8,40}={0,2}"
        )
            .prop_map(|(t, s)| Block::Thinking(t, s)),
        (
            "[a-zA-Z0-9_-]{1,12}",
            input(),
            prop::collection::vec(any::<usize>(), 0..5)
        )
            .prop_map(|(n, i, c)| Block::Tool(n, i, c)),
    ]
}

/// The pieces of `s` cut at `cuts` (moved to char boundaries), empty
/// pieces kept: Anthropic sends an empty `partial_json` first.
fn pieces(s: &str, cuts: &[usize]) -> Vec<String> {
    let mut at: Vec<usize> = cuts.iter().map(|&c| c % (s.len() + 1)).collect();
    for c in &mut at {
        while !s.is_char_boundary(*c) {
            *c -= 1;
        }
    }
    at.sort_unstable();
    let mut out = vec![String::new()];
    let mut from = 0;
    for c in at.into_iter().chain([s.len()]) {
        out.push(s[from..c].to_string());
        from = c;
    }
    out
}

/// A stream's events (the JSON each `data:` carries), pings put in after
/// the events at `pings`.
fn events(
    usage: (u64, u64, u64, u64),
    blocks: &[Block],
    stop: &str,
    full_usage: bool,
    pings: &[usize],
) -> Vec<String> {
    let (input, cache_write, cache_read, output) = usage;
    let mut ev = vec![json!({
        "type": "message_start",
        "message": {
            "id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant",
            "model": "claude-sonnet-4-5-20250929", "content": [], "stop_reason": null,
            "stop_sequence": null,
            "usage": {"input_tokens": input, "cache_creation_input_tokens": cache_write,
                      "cache_read_input_tokens": cache_read,
                      "cache_creation": {"ephemeral_5m_input_tokens": cache_write, "ephemeral_1h_input_tokens": 0},
                      "output_tokens": 1, "service_tier": "standard"},
        },
    })];
    for (index, b) in blocks.iter().enumerate() {
        let delta = |d: Value| json!({"type": "content_block_delta", "index": index, "delta": d});
        match b {
            Block::Text(parts, cited) => {
                ev.push(json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}));
                for (i, p) in parts.iter().enumerate() {
                    ev.push(delta(json!({"type": "text_delta", "text": p})));
                    if i == 0 && *cited {
                        ev.push(delta(json!({"type": "citations_delta", "citation": {
                            "type": "char_location", "cited_text": p, "document_index": 0,
                            "document_title": "A \"title\"", "start_char_index": 0, "end_char_index": p.len()}})));
                    }
                }
            }
            Block::Redacted(data) => {
                ev.push(json!({"type": "content_block_start", "index": index, "content_block": {"type": "redacted_thinking", "data": data}}));
            }
            Block::Thinking(parts, signature) => {
                ev.push(json!({"type": "content_block_start", "index": index, "content_block": {"type": "thinking", "thinking": "", "signature": ""}}));
                ev.extend(
                    parts
                        .iter()
                        .map(|p| delta(json!({"type": "thinking_delta", "thinking": p}))),
                );
                ev.push(delta(
                    json!({"type": "signature_delta", "signature": signature}),
                ));
            }
            Block::Tool(name, input, cuts) => {
                ev.push(json!({"type": "content_block_start", "index": index, "content_block": {"type": "tool_use", "id": format!("toolu_{index:02}"), "name": name, "input": {}}}));
                let args = input.to_string();
                ev.extend(
                    pieces(&args, cuts)
                        .iter()
                        .map(|p| delta(json!({"type": "input_json_delta", "partial_json": p}))),
                );
            }
        }
        ev.push(json!({"type": "content_block_stop", "index": index}));
    }
    // Newer models repeat the input counts in the last usage.
    let last_usage = if full_usage {
        json!({"input_tokens": input, "cache_creation_input_tokens": cache_write,
               "cache_read_input_tokens": cache_read, "output_tokens": output,
               "server_tool_use": {"web_search_requests": 0}})
    } else {
        json!({"output_tokens": output})
    };
    ev.push(json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": last_usage}));
    ev.push(json!({"type": "message_stop"}));
    let mut out: Vec<String> = ev.iter().map(Value::to_string).collect();
    // Anthropic's ping, as it writes it; after message_start, anywhere.
    let mut at: Vec<usize> = pings.iter().map(|p| 1 + p % out.len()).collect();
    at.sort_unstable_by(|a, b| b.cmp(a));
    for p in at {
        out.insert(p, r#"{"type": "ping"}"#.to_string());
    }
    out
}

fn kind(event: &str) -> String {
    serde_json::from_str::<Value>(event).unwrap()["type"]
        .as_str()
        .unwrap()
        .to_string()
}

/// `data` fed in the pieces `cuts` makes of it, then finished.
fn cut_run(stream: &mut MessagesStream, data: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut at: Vec<usize> = cuts.iter().map(|&c| c % (data.len() + 1)).collect();
    at.sort_unstable();
    let mut chunks = Vec::new();
    let mut from = 0;
    for c in at.into_iter().chain([data.len()]) {
        chunks.push(&data[from..c]);
        from = c;
    }
    run(stream, &chunks)
}

proptest! {
    #![proptest_config(crate::props(256))]

    #[test]
    fn bedrocks_event_stream_comes_out_as_the_direct_path_does(
        usage in (0u64..200_000, 0u64..5_000, 0u64..50_000, 0u64..64_000),
        blocks in prop::collection::vec(block(), 1..5),
        stop in prop::sample::select(vec!["end_turn", "tool_use", "max_tokens", "stop_sequence", "pause_turn", "refusal"]),
        full_usage in any::<bool>(),
        padding in prop::collection::vec(0usize..62, 1..8),
        pings in prop::collection::vec(any::<usize>(), 0..3),
        sse_cuts in prop::collection::vec(any::<usize>(), 0..16),
        aws_cuts in prop::collection::vec(any::<usize>(), 0..16),
    ) {
        let events = events(usage, &blocks, stop, full_usage, &pings);
        let sse: String = events.iter().map(|e| format!("event: {}\ndata: {e}\n\n", kind(e))).collect();
        let mut framed = Vec::new();
        for (i, e) in events.iter().enumerate() {
            let json = if kind(e) == "message_stop" {
                // What Bedrock adds to the last event.
                json!({"type": "message_stop", "amazon-bedrock-invocationMetrics": {
                    "inputTokenCount": usage.0, "outputTokenCount": usage.3,
                    "invocationLatency": 1234, "firstByteLatency": 321}}).to_string()
            } else {
                e.clone()
            };
            // Bedrock pads its chunks (`p`) so their sizes say nothing.
            let pad = &"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"[..padding[i % padding.len()]];
            let payload = json!({"bytes": aws_smithy_types::base64::encode(&json), "p": pad}).to_string();
            framed.extend_from_slice(&crate::gateway::provider::bedrock::stream::frame("chunk", payload.as_bytes()));
        }

        let mut direct = MessagesStream::sse();
        let direct_out = cut_run(&mut direct, sse.as_bytes(), &sse_cuts);
        let mut bedrock = MessagesStream::bedrock();
        let bedrock_out = cut_run(&mut bedrock, &framed, &aws_cuts);

        // The direct path passes the events through as they came.
        prop_assert_eq!(String::from_utf8_lossy(&direct_out), sse.as_str());
        prop_assert_eq!(String::from_utf8_lossy(&bedrock_out), String::from_utf8_lossy(&direct_out));
        prop_assert!(bedrock_out == direct_out, "byte for byte");
        prop_assert!(direct.done() && bedrock.done());
        prop_assert_eq!(direct.error(), None);
        prop_assert_eq!(bedrock.error(), None);
        prop_assert_eq!((direct.skipped(), bedrock.skipped()), (0, 0));
        prop_assert_eq!(direct.usage(), bedrock.usage());
        let (input, cache_write, cache_read, output) = usage;
        let want = direct.usage().unwrap_or_default();
        prop_assert_eq!(want.prompt_tokens, input + cache_write + cache_read);
        prop_assert_eq!(want.completion_tokens, output);
        prop_assert_eq!(direct.frames(), bedrock.frames());
    }
}
