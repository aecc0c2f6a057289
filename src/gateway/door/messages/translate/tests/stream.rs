use serde_json::{Value, json};

use super::{Said, events, well_formed};
use crate::gateway::door::messages::translate::ChatToMessages;

pub fn frame(chunk: Value) -> String {
    format!("data: {chunk}\n\n")
}

pub fn delta(delta: Value) -> String {
    frame(
        json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "gpt-x",
        "choices": [{"index": 0, "delta": delta, "finish_reason": null}]}),
    )
}

pub fn finish(reason: &str) -> String {
    frame(
        json!({"id": "chatcmpl-1", "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {}, "finish_reason": reason}]}),
    )
}

pub fn usage(prompt: u64, cached: u64, completion: u64) -> String {
    frame(
        json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                  "total_tokens": prompt + completion,
                  "prompt_tokens_details": {"cached_tokens": cached}}}),
    )
}

pub const DONE: &str = "data: [DONE]\n\n";

fn translator() -> ChatToMessages {
    ChatToMessages::new("claude-opus-4-8", "msg_01")
}

/// The whole stream fed at once, then finished: its events and translator.
fn run(stream: &str) -> (Vec<u8>, ChatToMessages) {
    let mut t = translator();
    let mut out = t
        .feed(stream.as_bytes())
        .map(|b| b.to_vec())
        .unwrap_or_default();
    out.extend(t.finish().map(|b| b.to_vec()).unwrap_or_default());
    (out, t)
}

fn said(out: &[u8]) -> Said {
    well_formed(&events(out)).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(out)))
}

fn text_stream() -> String {
    [
        delta(json!({"role": "assistant", "content": ""})),
        delta(json!({"content": "Hel"})),
        delta(json!({"content": "lo \"you\"\n"})),
        finish("stop"),
        usage(100, 60, 5),
        DONE.to_string(),
    ]
    .concat()
}

#[test]
fn a_text_answer_becomes_the_messages_events_in_order() {
    let (out, t) = run(&text_stream());
    let ev = events(&out);
    let kinds: Vec<&str> = ev.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(
        ev[0].1,
        json!({"type": "message_start", "message": {"id": "msg_01", "type": "message", "role": "assistant",
            "model": "claude-opus-4-8", "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 0, "output_tokens": 0}}})
    );
    assert_eq!(
        ev[1].1,
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
    );
    assert_eq!(
        ev[3].1["delta"],
        json!({"type": "text_delta", "text": "lo \"you\"\n"})
    );
    assert_eq!(
        ev[5].1,
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
            "usage": {"input_tokens": 40, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 60, "output_tokens": 5}})
    );
    assert!(t.done());
    assert_eq!(t.usage(), Some((100, 5)));
    assert_eq!(t.frames(), 2);
    assert_eq!((t.skipped(), t.invalid(), t.error()), (0, false, None));
}

#[test]
fn nothing_is_sent_before_the_first_content() {
    let mut t = translator();
    assert!(t.feed(b": keep-alive\n\n").is_none());
    assert!(
        t.feed(delta(json!({"role": "assistant", "content": ""})).as_bytes())
            .is_none()
    );
    assert!(
        t.feed(delta(json!({"reasoning_content": "thinking..."})).as_bytes())
            .is_none()
    );
    assert!(
        t.feed(delta(json!({"content": null, "reasoning": "more"})).as_bytes())
            .is_none()
    );
    let first = t.feed(delta(json!({"content": "Hi"})).as_bytes()).unwrap();
    let kinds: Vec<String> = events(&first).into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        kinds,
        [
            "message_start",
            "content_block_start",
            "content_block_delta"
        ]
    );
}

#[test]
fn the_end_waits_for_the_usage_chunk_or_done() {
    let mut t = translator();
    t.feed(delta(json!({"content": "x"})).as_bytes());
    let after_finish = t.feed(finish("length").as_bytes());
    assert!(after_finish.is_none(), "the usage chunk may still come");
    let end = t.feed(usage(3, 0, 1).as_bytes()).unwrap();
    let ev = events(&end);
    assert_eq!(ev.last().unwrap().0, "message_stop");
    assert_eq!(ev[ev.len() - 2].1["delta"]["stop_reason"], "max_tokens");
    assert!(t.done());
    assert!(t.feed(DONE.as_bytes()).is_none());

    // Without usage: [DONE] ends it, with output_tokens 0.
    let (out, t) = run(&[delta(json!({"content": "x"})), finish("stop"), DONE.into()].concat());
    assert!(t.done());
    assert_eq!(said(&out).usage, Some(json!({"output_tokens": 0})));
}

#[test]
fn a_clean_end_after_the_finish_reason_closes_and_one_before_does_not() {
    let mut t = translator();
    t.feed(
        [delta(json!({"content": "x"})), finish("stop")]
            .concat()
            .as_bytes(),
    );
    let end = t.finish().unwrap();
    assert_eq!(events(&end).last().unwrap().0, "message_stop");

    let mut t = translator();
    t.feed(delta(json!({"content": "x"})).as_bytes());
    assert!(t.finish().is_none(), "a cut stream is not finished");
    assert!(!t.done());

    // The last frame without its blank line still counts.
    let mut t = translator();
    t.feed(delta(json!({"content": "x"})).as_bytes());
    t.feed(finish("stop").trim_end().as_bytes());
    assert!(t.finish().is_some() && t.done());
}

#[test]
fn an_empty_answer_still_starts_and_stops() {
    let (out, t) = run(&[
        delta(json!({"role": "assistant", "content": ""})),
        finish("stop"),
        DONE.into(),
    ]
    .concat());
    let kinds: Vec<String> = events(&out).into_iter().map(|(k, _)| k).collect();
    assert_eq!(kinds, ["message_start", "message_delta", "message_stop"]);
    assert!(t.done());
}

#[test]
fn parallel_tool_calls_become_blocks_in_order_with_whole_inputs() {
    let call = |index: usize, id: Option<&str>, name: Option<&str>, args: &str| {
        let mut f = json!({"arguments": args});
        if let Some(n) = name {
            f["name"] = json!(n);
        }
        let mut c = json!({"index": index, "type": "function", "function": f});
        if let Some(id) = id {
            c["id"] = json!(id);
        }
        delta(json!({"tool_calls": [c]}))
    };
    let stream = [
        delta(json!({"content": "Checking."})),
        call(0, Some("call_a"), Some("weather"), ""),
        call(0, None, None, "{\"city\":"),
        call(1, Some("call_b"), Some("time"), "{}"),
        call(0, None, None, "\"Paris\"}"), // late, after call 1 began
        call(2, None, Some("broken"), "{\"x\": "),
        finish("tool_calls"),
        usage(10, 0, 20),
    ]
    .concat();
    let (out, t) = run(&stream);
    let s = said(&out);
    assert_eq!(s.text, "Checking.");
    assert_eq!(
        s.calls,
        vec![
            ("weather".into(), json!({"city": "Paris"})),
            ("time".into(), json!({})),
            ("broken".into(), json!({"_raw": "{\"x\": "})),
        ]
    );
    assert_eq!(s.stop_reason.as_deref(), Some("tool_use"));
    let ev = events(&out);
    let starts: Vec<&Value> = ev
        .iter()
        .filter(|(k, _)| k == "content_block_start")
        .map(|(_, d)| d)
        .collect();
    assert_eq!(
        starts[1]["content_block"],
        json!({"type": "tool_use", "id": "call_a", "name": "weather", "input": {}})
    );
    assert_eq!(
        starts[3]["content_block"]["id"], "toolu_01_2",
        "made up for a call without one"
    );
    assert_eq!(t.frames(), 6);
}

#[test]
fn the_first_named_call_opens_its_block_at_once() {
    let mut t = translator();
    let first = delta(
        json!({"tool_calls": [{"index": 0, "id": "c", "type": "function", "function": {"name": "Bash", "arguments": ""}}]}),
    );
    let kinds: Vec<String> = events(&t.feed(first.as_bytes()).unwrap())
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        kinds,
        ["message_start", "content_block_start"],
        "the failover window ends here"
    );
}

#[test]
fn calls_without_an_index_follow_their_ids() {
    let stream = [
        delta(json!({"tool_calls": [{"id": "a", "function": {"name": "f", "arguments": "{\"n\":1}"}}]})),
        delta(json!({"tool_calls": [{"id": "b", "function": {"name": "g", "arguments": "{\"n\":"}}]})),
        delta(json!({"tool_calls": [{"function": {"arguments": "2}"}}]})),
        finish("stop"),
        DONE.into(),
    ]
    .concat();
    let s = said(&run(&stream).0);
    assert_eq!(
        s.calls,
        vec![("f".into(), json!({"n": 1})), ("g".into(), json!({"n": 2}))]
    );
    assert_eq!(
        s.stop_reason.as_deref(),
        Some("tool_use"),
        "calls under a plain stop"
    );
}

#[test]
fn errors_end_the_translation_with_their_message() {
    let mut t = translator();
    t.feed(delta(json!({"content": "x"})).as_bytes());
    let out =
        t.feed(b"data: {\"error\": {\"message\": \"overloaded\", \"type\": \"server_error\"}}\n\n");
    assert!(out.is_none());
    assert_eq!(t.error(), Some("overloaded"));
    assert!(t.feed(finish("stop").as_bytes()).is_none());
    assert!(t.finish().is_none() && !t.done());
    let mut t = translator();
    t.feed(b"event: error\ndata: {\"error\": \"plain\"}\n\n");
    assert_eq!(t.error(), Some("plain"));
}

#[test]
fn frames_that_are_not_json_are_skipped_and_a_first_one_is_invalid() {
    let mut t = translator();
    t.feed(b"data: <html>\n\n");
    assert!(t.invalid());
    let (out, t2) = run(&["data: {oops\n\n".to_string(), text_stream()].concat());
    assert_eq!(said(&out).text, "Hello \"you\"\n");
    assert!(t2.invalid() && t2.skipped() == 1);
    let (_, t3) = run(&[
        delta(json!({"content": "x"})),
        "data: {oops\n\n".into(),
        finish("stop"),
    ]
    .concat());
    assert!(!t3.invalid() && t3.skipped() == 1 && t3.done());
}

#[test]
fn comments_event_lines_and_crlf_are_read() {
    let stream = text_stream()
        .replace("\n\n", "\r\n\r\n")
        .replace("data: {", "event: chunk\r\ndata:{");
    let (out, t) = run(&[": hello\r\n\r\n".to_string(), stream].concat());
    assert_eq!(said(&out).text, "Hello \"you\"\n");
    assert!(t.done());
}

#[test]
fn refusals_and_stop_strings_carry_over() {
    let mut stop = frame(
        json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop", "stop_reason": "END"}]}),
    );
    stop += DONE;
    let (out, _) = run(&[delta(json!({"content": "x"})), stop].concat());
    let ev = events(&out);
    assert_eq!(
        ev[ev.len() - 2].1["delta"],
        json!({"stop_reason": "stop_sequence", "stop_sequence": "END"})
    );
    let (out, _) = run(&[
        delta(json!({"refusal": "No."})),
        finish("content_filter"),
        DONE.into(),
    ]
    .concat());
    let s = said(&out);
    assert_eq!(
        (s.text.as_str(), s.stop_reason.as_deref()),
        ("No.", Some("refusal"))
    );
}

#[test]
fn a_stream_split_at_any_byte_gives_the_same_events() {
    let stream = [
        ": comment\n\n".to_string(),
        text_stream().replace(DONE, ""),
        delta(json!({"tool_calls": [{"index": 0, "id": "c", "function": {"name": "f", "arguments": "{\"ü\":"}}]})),
        delta(json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"ö\\n\"}"}}]})),
        finish("tool_calls"),
        usage(5, 0, 9),
        DONE.into(),
    ]
    .concat();
    let (whole, _) = run(&stream);
    let bytes = stream.as_bytes();
    for cut in 0..=bytes.len() {
        let mut t = translator();
        let mut out = Vec::new();
        for piece in [&bytes[..cut], &bytes[cut..]] {
            out.extend(t.feed(piece).map(|b| b.to_vec()).unwrap_or_default());
        }
        out.extend(t.finish().map(|b| b.to_vec()).unwrap_or_default());
        assert_eq!(out, whole, "cut at {cut}");
    }
    let mut t = translator();
    let mut out = Vec::new();
    for b in bytes {
        out.extend(
            t.feed(std::slice::from_ref(b))
                .map(|b| b.to_vec())
                .unwrap_or_default(),
        );
    }
    out.extend(t.finish().map(|b| b.to_vec()).unwrap_or_default());
    assert_eq!(out, whole, "byte by byte");
}
