use super::*;
use serde_json::{Value, json};

fn cx(wants_usage: bool) -> AnswerContext<'static> {
    AnswerContext {
        rename: None,
        model: "claude",
        created: 1_700_000_000,
        wants_usage,
    }
}

/// A text block, a tool call whose input comes in two fragments, the stop
/// and the metadata, as ConverseStream sends them.
fn stream() -> Vec<u8> {
    let mut out = Vec::new();
    for (kind, payload) in [
        ("messageStart", json!({"role": "assistant"})),
        (
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"text": "Hel"}}),
        ),
        (
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"text": "lo"}}),
        ),
        ("contentBlockStop", json!({"contentBlockIndex": 0})),
        (
            "contentBlockStart",
            json!({"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "tu_1", "name": "weather"}}}),
        ),
        (
            "contentBlockDelta",
            json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "{\"city\":"}}}),
        ),
        (
            "contentBlockDelta",
            json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "\"Paris\"}"}}}),
        ),
        ("contentBlockStop", json!({"contentBlockIndex": 1})),
        ("messageStop", json!({"stopReason": "tool_use"})),
        (
            "metadata",
            json!({"usage": {"inputTokens": 7, "outputTokens": 9, "totalTokens": 16}, "metrics": {"latencyMs": 5}}),
        ),
    ] {
        out.extend_from_slice(&frame(kind, payload.to_string().as_bytes()));
    }
    out
}

fn events(sse: &[u8]) -> Vec<Value> {
    String::from_utf8(sse.to_vec())
        .unwrap()
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

fn run(t: &mut Translator, parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        if let Some(b) = t.feed(p) {
            out.extend_from_slice(&b);
        }
    }
    if let Some(b) = t.finish() {
        out.extend_from_slice(&b);
    }
    out
}

#[test]
fn a_stream_becomes_openai_chunks_in_order() {
    let mut t = Translator::new(&cx(true));
    let out = run(&mut t, &[&stream()]);
    assert!(out.ends_with(b"data: [DONE]\n\n"));
    let e = events(&out);
    assert_eq!(e[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(e[1]["choices"][0]["delta"]["content"], "Hel");
    assert_eq!(e[3]["choices"][0]["delta"]["tool_calls"][0]["id"], "tu_1");
    assert_eq!(e[3]["choices"][0]["delta"]["tool_calls"][0]["index"], 0);
    let args: String = e[4..6]
        .iter()
        .map(|c| {
            c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"city": "Paris"})
    );
    assert_eq!(e[6]["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(e[7]["choices"], json!([]));
    assert_eq!(e[7]["usage"]["total_tokens"], 16);
    let ids: std::collections::HashSet<_> = e.iter().map(|c| c["id"].clone()).collect();
    assert_eq!(ids.len(), 1, "one id for every chunk");
    assert!(e.iter().all(|c| c["model"] == "claude"));
    assert!(t.done() && t.error().is_none());
    assert_eq!(t.usage().unwrap().total(), 16);
}

#[test]
fn cut_anywhere_the_stream_translates_the_same() {
    let whole = stream();
    let reference = events(&run(&mut Translator::new(&cx(false)), &[&whole]));
    for cut in 1..whole.len() {
        let mut t = Translator::new(&cx(false));
        let got = events(&run(&mut t, &[&whole[..cut], &whole[cut..]]));
        let strip = |v: &Vec<Value>| -> Vec<Value> {
            v.iter()
                .map(|c| {
                    let mut c = c.clone();
                    c["id"] = Value::Null;
                    c
                })
                .collect()
        };
        assert_eq!(strip(&got), strip(&reference), "cut at {cut}");
        assert!(t.done());
    }
}

#[test]
fn an_exception_is_an_error_event_and_a_throttle_says_so() {
    let mut bytes = frame("messageStart", br#"{"role":"assistant"}"#).to_vec();
    bytes.extend_from_slice(&exception_frame(
        "throttlingException",
        "Too many tokens, please wait",
    ));
    let mut t = Translator::new(&cx(false));
    let out = run(&mut t, &[&bytes]);
    let e = events(&out);
    assert_eq!(e.last().unwrap()["error"]["code"], "throttlingException");
    assert!(t.throttled() && t.error().unwrap().contains("Too many tokens"));

    let mut t = Translator::new(&cx(false));
    run(
        &mut t,
        &[&exception_frame("modelStreamErrorException", "boom")],
    );
    assert!(!t.throttled() && t.error().is_some());
}

#[test]
fn a_corrupt_frame_is_invalid_not_a_panic() {
    let mut bytes = stream();
    bytes[20] ^= 0xff; // inside the first frame's headers: its CRC no longer matches
    let mut t = Translator::new(&cx(false));
    let out = run(&mut t, &[&bytes]);
    assert!(
        t.invalid() && t.error().unwrap().contains("corrupt"),
        "{:?}",
        t.error()
    );
    assert!(String::from_utf8_lossy(&out).contains("stream_invalid"));
    let mut t = Translator::new(&cx(false));
    run(&mut t, &[&stream()[..30]]);
    assert!(t.error().unwrap().contains("inside a frame"));
}

#[test]
fn a_payload_that_is_not_json_mid_stream_is_left_out_and_counted() {
    let good = stream();
    // After messageStart and the first delta: a well-framed event whose payload is cut.
    let mut spoiled = Vec::new();
    let mut t = Translator::new(&cx(false));
    let first_two = [
        frame("messageStart", br#"{"role":"assistant"}"#),
        frame(
            "contentBlockDelta",
            br#"{"contentBlockIndex":0,"delta":{"text":"Hel"}}"#,
        ),
    ]
    .concat();
    assert!(good.starts_with(&first_two));
    spoiled.extend_from_slice(&first_two);
    spoiled.extend_from_slice(&frame(
        "contentBlockDelta",
        br#"{"contentBlockIndex":0,"delta":{"te"#,
    ));
    spoiled.extend_from_slice(&good[first_two.len()..]);
    let out = run(&mut t, &[&spoiled]);
    assert!(out.ends_with(b"data: [DONE]\n\n"));
    assert_eq!((t.skipped(), t.error()), (1, None));
    assert!(t.last_skipped().unwrap().starts_with("contentBlockDelta: "));
    // The first event is another matter: the stream is not Bedrock's.
    let mut t = Translator::new(&cx(false));
    t.feed(&frame("messageStart", b"{not json"));
    assert!(t.invalid() && t.error().is_some());
}
