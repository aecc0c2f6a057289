use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::gateway::provider::anthropic::answer;

fn cx(wants_usage: bool) -> AnswerContext<'static> {
    AnswerContext {
        rename: None,
        model: "gpt-4o",
        created: 1_700_000_000,
        wants_usage,
    }
}

/// A block of a generated message.
#[derive(Debug, Clone)]
enum Gen {
    Text(Vec<String>),
    Tool {
        name: String,
        args: Value,
        cuts: Vec<usize>,
    },
    Thinking(String),
}

fn sse(event: Value) -> String {
    format!(
        "event: {}\ndata: {}\n\n",
        event["type"].as_str().unwrap(),
        event
    )
}

/// The same message as Anthropic sends it whole and as a stream.
fn message(blocks: &[Gen], stop: &str) -> (Value, String) {
    let usage = json!({"input_tokens": 12, "output_tokens": 1, "cache_creation_input_tokens": 2, "cache_read_input_tokens": 3});
    let mut content = Vec::new();
    let mut stream = sse(
        json!({"type": "message_start", "message": {"id": "msg_7", "type": "message", "role": "assistant", "content": [], "model": "claude-x", "stop_reason": null, "usage": usage}}),
    );
    stream += &sse(json!({"type": "ping"}));
    for (i, b) in blocks.iter().enumerate() {
        match b {
            Gen::Text(pieces) => {
                content.push(json!({"type": "text", "text": pieces.concat()}));
                stream += &sse(
                    json!({"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}}),
                );
                for p in pieces {
                    stream += &sse(
                        json!({"type": "content_block_delta", "index": i, "delta": {"type": "text_delta", "text": p}}),
                    );
                }
            }
            Gen::Tool { name, args, cuts } => {
                let id = format!("toolu_{i}");
                content.push(json!({"type": "tool_use", "id": id, "name": name, "input": args}));
                stream += &sse(
                    json!({"type": "content_block_start", "index": i, "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}}),
                );
                let text = args.to_string();
                let chars: Vec<char> = text.chars().collect();
                let mut points: Vec<usize> = cuts.iter().map(|c| c % (chars.len() + 1)).collect();
                points.extend([0, chars.len()]);
                points.sort();
                points.dedup();
                for w in points.windows(2) {
                    let piece: String = chars[w[0]..w[1]].iter().collect();
                    stream += &sse(
                        json!({"type": "content_block_delta", "index": i, "delta": {"type": "input_json_delta", "partial_json": piece}}),
                    );
                }
            }
            Gen::Thinking(t) => {
                content.push(json!({"type": "thinking", "thinking": t, "signature": "sig"}));
                stream += &sse(
                    json!({"type": "content_block_start", "index": i, "content_block": {"type": "thinking", "thinking": ""}}),
                );
                stream += &sse(
                    json!({"type": "content_block_delta", "index": i, "delta": {"type": "thinking_delta", "thinking": t}}),
                );
                stream += &sse(
                    json!({"type": "content_block_delta", "index": i, "delta": {"type": "signature_delta", "signature": "sig"}}),
                );
            }
        }
        stream += &sse(json!({"type": "content_block_stop", "index": i}));
    }
    // Cumulative: the last report is the total.
    stream += &sse(
        json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": 20}}),
    );
    stream += &sse(json!({"type": "message_delta", "delta": {}, "usage": {"output_tokens": 42}}));
    stream += &sse(json!({"type": "message_stop"}));
    let mut full_usage = usage.clone();
    full_usage["output_tokens"] = json!(42);
    let whole = json!({"id": "msg_7", "type": "message", "role": "assistant", "model": "claude-x", "content": content, "stop_reason": stop, "stop_sequence": null, "usage": full_usage});
    (whole, stream)
}

/// The OpenAI frames of a stream fed in pieces cut at `cuts`.
fn run(stream: &str, cuts: &[usize], wants_usage: bool) -> (Vec<Value>, Translator) {
    let bytes = stream.as_bytes();
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.extend([0, bytes.len()]);
    points.sort();
    points.dedup();
    let mut t = Translator::new(&cx(wants_usage));
    let mut out = Vec::new();
    for w in points.windows(2) {
        if let Some(b) = t.feed(&bytes[w[0]..w[1]]) {
            out.extend_from_slice(&b);
        }
    }
    if let Some(b) = t.finish() {
        out.extend_from_slice(&b);
    }
    let text = String::from_utf8(out).unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let frames = text
        .split("\n\n")
        .filter_map(|f| f.strip_prefix("data: "))
        .filter(|f| *f != "[DONE]")
        .map(|f| serde_json::from_str(f).unwrap())
        .collect();
    (frames, t)
}

/// What a client's SDK rebuilds from the chunks: the message and its calls.
fn assemble(frames: &[Value]) -> (Option<String>, Vec<(String, String, String)>, String) {
    let mut text: Option<String> = None;
    let mut calls: Vec<(String, String, String)> = Vec::new();
    let mut finish = String::new();
    for (n, f) in frames.iter().enumerate() {
        assert_eq!(f["id"], "msg_7");
        assert_eq!(f["model"], "gpt-4o");
        let Some(choice) = f["choices"].get(0) else {
            continue;
        };
        let delta = &choice["delta"];
        if n == 0 {
            assert_eq!(delta["role"], "assistant", "role first");
        }
        if let Some(c) = delta["content"].as_str() {
            text.get_or_insert_with(String::new).push_str(c);
        }
        for call in delta["tool_calls"].as_array().into_iter().flatten() {
            let index = call["index"].as_u64().unwrap() as usize;
            if index == calls.len() {
                calls.push((
                    call["id"].as_str().unwrap().into(),
                    call["function"]["name"].as_str().unwrap().into(),
                    String::new(),
                ));
            }
            calls[index]
                .2
                .push_str(call["function"]["arguments"].as_str().unwrap_or(""));
        }
        if let Some(r) = choice["finish_reason"].as_str() {
            assert!(finish.is_empty(), "one chunk with finish_reason");
            finish = r.into();
        }
    }
    (text.filter(|t| !t.is_empty()), calls, finish)
}

fn gen_block() -> impl Strategy<Value = Gen> {
    prop_oneof![
        prop::collection::vec("[a-zé \"\\\\\n{}]{0,6}", 1..5).prop_map(Gen::Text),
        (
            "[a-z_]{1,8}",
            prop::collection::btree_map("[a-z]{1,4}", "[a-z0-9 \"é]{0,5}", 0..4),
            prop::collection::vec(0usize..64, 0..5)
        )
            .prop_map(|(name, args, cuts)| Gen::Tool {
                name,
                args: json!(args),
                cuts
            }),
        "[a-z ]{0,8}".prop_map(Gen::Thinking),
    ]
}

proptest! {
    #![proptest_config(crate::props(300))]

    /// Any message, its stream split anywhere: the chunks add up to the
    /// translation of the whole message.
    #[test]
    fn the_chunks_add_up_to_the_whole_answer(
        blocks in prop::collection::vec(gen_block(), 0..5),
        stop in prop::sample::select(vec!["end_turn", "tool_use", "max_tokens", "stop_sequence", "refusal"]),
        cuts in prop::collection::vec(0usize..4096, 0..12),
        wants_usage in any::<bool>(),
    ) {
        let (whole, stream) = message(&blocks, stop);
        let (answer, usage) = answer::translate(whole.to_string().as_bytes(), &cx(false)).unwrap();
        let answer: Value = serde_json::from_slice(&answer).unwrap();
        let (frames, t) = run(&stream, &cuts, wants_usage);
        let (text, calls, finish) = assemble(&frames);
        let message = &answer["choices"][0]["message"];
        prop_assert_eq!(text.as_deref(), message["content"].as_str().filter(|s| !s.is_empty()));
        let expected: Vec<(String, String, String)> = message["tool_calls"].as_array().into_iter().flatten().map(|c| (
            c["id"].as_str().unwrap().to_string(),
            c["function"]["name"].as_str().unwrap().to_string(),
            c["function"]["arguments"].as_str().unwrap().to_string(),
        )).collect();
        for (_, _, args) in &calls {
            prop_assert!(serde_json::from_str::<Value>(args).is_ok(), "arguments concatenate to JSON: {}", args);
        }
        let parsed = |v: &[(String, String, String)]| v.iter().map(|(i, n, a)| (i.clone(), n.clone(), serde_json::from_str::<Value>(a).unwrap())).collect::<Vec<_>>();
        prop_assert_eq!(parsed(&calls), parsed(&expected));
        prop_assert_eq!(finish.as_str(), answer["choices"][0]["finish_reason"].as_str().unwrap());
        prop_assert_eq!(t.usage(), usage);
        let last = frames.last().unwrap();
        if wants_usage {
            prop_assert_eq!(&last["choices"], &json!([]));
            prop_assert_eq!(&last["usage"], &answer["usage"]);
        } else {
            prop_assert!(frames.iter().all(|f| f.get("usage").is_none()));
        }
    }
}

#[test]
fn an_error_event_ends_the_stream_with_an_openai_error() {
    let stream = [
        sse(json!({"type": "message_start", "message": {"id": "m", "usage": {"input_tokens": 1}}})),
        sse(json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})),
        sse(json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}})),
        sse(json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})),
    ]
    .concat();
    let mut t = Translator::new(&cx(false));
    let out = String::from_utf8(t.feed(stream.as_bytes()).unwrap().to_vec()).unwrap();
    assert!(out.contains(r#""content":"Hi""#));
    let last = out.trim_end().rsplit("\n\n").next().unwrap();
    let v: Value = serde_json::from_str(last.strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(v["error"]["code"], "overloaded_error");
    assert_eq!(t.error(), Some("overloaded_error: Overloaded"));
    assert!(!t.done());
}

#[test]
fn an_overloaded_error_is_a_rate_limit_and_other_errors_are_not() {
    let start =
        sse(json!({"type": "message_start", "message": {"id": "m", "usage": {"input_tokens": 1}}}));
    let error = |kind: &str| sse(json!({"type": "error", "error": {"type": kind, "message": "x"}}));
    let mut t = Translator::new(&cx(false));
    t.feed(
        [start.clone(), error("overloaded_error")]
            .concat()
            .as_bytes(),
    );
    assert!(t.rate_limited());
    let mut t = Translator::new(&cx(false));
    t.feed([start, error("api_error")].concat().as_bytes());
    assert!(t.error().is_some() && !t.rate_limited());
}

/// A whole answer (text, the stop reason and usage in `message_delta`)
/// without the events after it.
fn without_message_stop(stop: &str) -> String {
    let (_, stream) = message(&[Gen::Text(vec!["Hi".into(), " there".into()])], stop);
    let end = stream.find("event: message_stop").unwrap();
    stream[..end].to_string()
}

#[test]
fn a_clean_end_after_the_stop_reason_finishes_the_stream() {
    let stream = without_message_stop("max_tokens");
    // A last event without its blank line counts as well.
    for stream in [stream.clone(), stream.trim_end().to_string()] {
        let (frames, t) = run(&stream, &[], true);
        assert!(t.done() && t.error().is_none());
        let finish = &frames[frames.len() - 2];
        assert_eq!(finish["choices"][0]["finish_reason"], "length");
        assert_eq!(frames.last().unwrap()["usage"]["completion_tokens"], 42);
    }
}

#[test]
fn a_stream_cut_before_its_stop_reason_or_broken_off_is_not_finished() {
    let stream = without_message_stop("end_turn");
    let cut = &stream[..stream.find("event: message_delta").unwrap()];
    let mut t = Translator::new(&cx(false));
    t.feed(cut.as_bytes());
    let rest = t.finish().map(|b| String::from_utf8(b.to_vec()).unwrap());
    assert!(!t.done(), "{rest:?}");
    assert!(!rest.unwrap_or_default().contains("[DONE]"));
    // Broken off after the stop reason: never closed as finished.
    let mut t = Translator::new(&cx(false));
    t.feed(stream.as_bytes());
    assert_eq!(t.abandon(), None);
    assert!(!t.done());
}

#[test]
fn an_event_that_is_not_json_mid_stream_is_left_out_and_counted() {
    let (_, stream) = message(&[Gen::Text(vec!["Hi".into(), " there".into()])], "end_turn");
    let at = stream.find("event: content_block_delta").unwrap();
    let bad = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_d\n\n";
    let spoiled = format!("{}{bad}{}", &stream[..at], &stream[at..]);
    let (frames, t) = run(&spoiled, &[], false);
    assert_eq!((t.skipped(), t.error()), (1, None));
    assert!(
        t.last_skipped().unwrap().starts_with("{\\\"type\\\":"),
        "{:?}",
        t.last_skipped()
    );
    let text: String = frames
        .iter()
        .filter_map(|f| f["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Hi there");
}

#[test]
fn a_stream_that_does_not_start_with_a_message_is_invalid() {
    let mut t = Translator::new(&cx(false));
    t.feed(b"data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"x\"}}\n\n");
    assert!(t.invalid());
    let mut t = Translator::new(&cx(false));
    t.feed(b"data: not json\n\n");
    assert!(t.invalid() && t.error().is_some());
    // An error as the very first event is not "invalid": it is the upstream's error.
    let mut t = Translator::new(&cx(false));
    t.feed(b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n");
    assert!(!t.invalid() && t.error().is_some());
}

#[test]
fn a_second_message_start_is_an_error_not_a_second_id() {
    // Found by fuzzing (fuzz/corpus/anthropic_stream/second_message_start).
    let start = |id: &str| {
        sse(json!({"type": "message_start", "message": {"id": id, "usage": {"input_tokens": 5}}}))
    };
    let mut t = Translator::new(&cx(false));
    let out = String::from_utf8(
        t.feed([start("msg_1"), start("msg_0")].concat().as_bytes())
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    assert!(!out.contains("msg_0"), "{out}");
    assert!(t.error().unwrap().contains("second message"));
}
