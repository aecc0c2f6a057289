//! The Anthropic stream translator on arbitrary streams, cut into chunks at
//! arbitrary points.
//!
//! Input: one byte whose low 4 bits say how many split-size bytes follow,
//! those bytes (chunk sizes, cycled; 0 feeds an empty chunk), one byte for
//! whether the client asked for usage, then the stream. Checks:
//! - no panic; the output and the findings (usage, done, error, invalid,
//!   frames) do not depend on how the stream was cut;
//! - every frame out is `data: <JSON object>` or `data: [DONE]`, and each
//!   JSON frame is a chunk of the client's model with one id, or an error;
//! - `[DONE]` comes only once, last, and only when the upstream finished;
//! - tool-call indexes start at 0 and grow by one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::gateway::provider::AnswerContext;
use switchboard::gateway::provider::anthropic::stream::Translator;

fn run<'a>(wants_usage: bool, chunks: impl IntoIterator<Item = &'a [u8]>) -> (Vec<u8>, String) {
    let cx = AnswerContext { model: "gpt-4o", created: 1, wants_usage };
    let mut t = Translator::new(&cx);
    let mut out = Vec::new();
    for c in chunks {
        if let Some(b) = t.feed(c) {
            assert!(!b.is_empty());
            out.extend_from_slice(&b);
        }
    }
    if let Some(b) = t.finish() {
        out.extend_from_slice(&b);
    }
    let findings = format!("{:?} {} {:?} {} {}", t.usage(), t.done(), t.error(), t.invalid(), t.frames());
    (out, findings)
}

fuzz_target!(|data: &[u8]| {
    let Some((&head, rest)) = data.split_first() else { return };
    let n = usize::from(head & 0x0f).min(rest.len());
    let (sizes, rest) = rest.split_at(n);
    let Some((&usage_byte, stream)) = rest.split_first() else { return };
    let wants_usage = usage_byte & 1 == 1;
    let whole = run(wants_usage, [stream]);
    let mut pieces = Vec::new();
    let mut at = 0;
    let mut i = 0;
    while at < stream.len() {
        let size = if sizes.is_empty() { 1 } else { usize::from(sizes[i % sizes.len()]) };
        let end = (at + size).min(stream.len());
        pieces.push(&stream[at..end]);
        at = end;
        i += 1;
        if i > 100_000 {
            return;
        }
    }
    assert_eq!(run(wants_usage, pieces), whole, "the cut changed the translation");

    let text = String::from_utf8(whole.0).expect("the output is UTF-8");
    let frames: Vec<&str> = text.split_terminator("\n\n").collect();
    let mut id: Option<String> = None;
    let mut next_call = 0u64;
    for (k, frame) in frames.iter().enumerate() {
        let data = frame.strip_prefix("data: ").expect("every frame is one data line");
        if data == "[DONE]" {
            assert_eq!(k, frames.len() - 1, "[DONE] comes last");
            assert!(whole.1.contains(" true "), "[DONE] only after the upstream finished");
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(data).expect("every frame is JSON");
        if v.get("error").is_some() {
            continue;
        }
        assert_eq!(v["model"], "gpt-4o");
        assert_eq!(v["object"], "chat.completion.chunk");
        let this = v["id"].as_str().expect("an id").to_string();
        assert_eq!(id.get_or_insert(this.clone()), &this, "one id per stream");
        for call in v["choices"][0]["delta"]["tool_calls"].as_array().into_iter().flatten() {
            let index = call["index"].as_u64().unwrap();
            if call.get("id").is_some() {
                assert_eq!(index, next_call, "tool-call indexes count up from 0");
                next_call += 1;
            } else {
                assert!(index < next_call, "arguments of a call that started");
            }
        }
    }
});
