//! The Bedrock ConverseStream path: AWS event-stream frames decoded (CRCs
//! checked) and translated, on arbitrary input, cut at arbitrary points.
//!
//! Input: one byte whose low 4 bits say how many split-size bytes follow,
//! those bytes (chunk sizes, cycled), one mode byte, then the body. Mode
//! bit 0: whether the client asked for usage. Bit 1: the body is raw bytes
//! (the frame decoder on garbage); else it is a list of events, each one
//! byte for its kind (message start, text, tool start, tool delta, stop,
//! metadata, an exception, an unknown event) and one length byte, then
//! that many payload bytes, written as valid frames, so that the
//! translator behind the decoder is reached. Bit 2 flips one byte of the
//! encoded stream (a corrupt CRC or length mid-stream). Checks:
//! - no panic; the output and findings do not depend on how it was cut;
//! - every frame out is `data: <JSON object>` or `data: [DONE]`; JSON
//!   frames are errors or chunks of the client's model with one id;
//! - `[DONE]` comes once, last, only when the upstream finished;
//! - tool-call indexes count up from 0.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::gateway::provider::AnswerContext;
use switchboard::gateway::provider::bedrock::stream::{Translator, exception_frame, frame};

fn run<'a>(wants_usage: bool, chunks: impl IntoIterator<Item = &'a [u8]>) -> (Vec<u8>, String) {
    let cx = AnswerContext { model: "claude", created: 1, wants_usage };
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
    assert!(String::from_utf8(out.clone()).is_ok(), "the output is UTF-8");
    // Each translator makes its own id: compared without it.
    let out = String::from_utf8_lossy(&out).replace(t.id(), "ID").into_bytes();
    let findings = format!(
        "{:?} {} {:?} {} {} {}",
        t.usage(),
        t.done(),
        t.error(),
        t.invalid(),
        t.frames(),
        t.throttled()
    );
    (out, findings)
}

/// Valid frames from the fuzzer's list of events.
fn encode(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let [kind, len, rest @ ..] = body {
        let n = usize::from(*len).min(rest.len());
        let (payload, next) = rest.split_at(n);
        body = next;
        let text = String::from_utf8_lossy(payload);
        let s = serde_json::to_string(&text).unwrap();
        let i = kind >> 4;
        let bytes = match kind & 0x0f {
            0 => frame("messageStart", br#"{"role":"assistant"}"#),
            1 => frame("contentBlockDelta", format!(r#"{{"contentBlockIndex":{i},"delta":{{"text":{s}}}}}"#).as_bytes()),
            2 => frame("contentBlockStart", format!(r#"{{"contentBlockIndex":{i},"start":{{"toolUse":{{"toolUseId":{s},"name":"f"}}}}}}"#).as_bytes()),
            3 => frame("contentBlockDelta", format!(r#"{{"contentBlockIndex":{i},"delta":{{"toolUse":{{"input":{s}}}}}}}"#).as_bytes()),
            4 => frame("messageStop", br#"{"stopReason":"tool_use"}"#),
            5 => frame("metadata", br#"{"usage":{"inputTokens":3,"outputTokens":4}}"#),
            6 => exception_frame("throttlingException", &text),
            7 => frame("contentBlockStop", format!(r#"{{"contentBlockIndex":{i}}}"#).as_bytes()),
            _ => frame(&text, payload),
        };
        out.extend_from_slice(&bytes);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&head, rest)) = data.split_first() else { return };
    let n = usize::from(head & 0x0f).min(rest.len());
    let (sizes, rest) = rest.split_at(n);
    let Some((&mode, body)) = rest.split_first() else { return };
    let wants_usage = mode & 1 == 1;
    let mut stream = if mode & 2 == 2 { body.to_vec() } else { encode(body) };
    if mode & 4 == 4 && !stream.is_empty() {
        let at = usize::from(head) * 7 % stream.len();
        stream[at] ^= 0x5a;
    }
    let whole = run(wants_usage, [stream.as_slice()]);
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
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(data).expect("every frame is JSON");
        if v.get("error").is_some() {
            continue;
        }
        assert_eq!(v["model"], "claude");
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
