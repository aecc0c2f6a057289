use super::*;
use bytes::Bytes;
use hyper::StatusCode;
use serde_json::{Value, json};

fn reply(kind: Kind, tokens: u64, model: &str) -> Reply<'_> {
    Reply {
        kind,
        id: "chatcmpl-test",
        created: 1_700_000_000,
        model,
        usage: Usage::new(10, tokens),
        finish_reason: "stop",
        azure: false,
        calls: &[],
    }
}

fn frame_json(frame: &Bytes) -> Value {
    let text = std::str::from_utf8(frame).unwrap();
    let data = text
        .strip_prefix("data: ")
        .unwrap()
        .strip_suffix("\n\n")
        .unwrap();
    serde_json::from_str(data).unwrap()
}

#[test]
fn words_need_no_escaping() {
    for w in WORDS {
        assert_eq!(serde_json::to_string(w).unwrap(), format!("\"{w}\""));
    }
}

#[test]
fn chat_prompt_tokens_follow_the_documented_rule() {
    let body = json!({"model": "m", "messages": [
        {"role": "system", "content": "12345"},
        {"role": "user", "content": [{"type": "text", "text": "abc"}, {"type": "image_url", "image_url": {"url": "x"}}]},
        {"role": "assistant", "content": null, "tool_calls": []},
    ]});
    let g = parse_chat(body.to_string().as_bytes()).unwrap();
    // 8 characters -> 2 tokens, plus 3 per message.
    assert_eq!(g.prompt_tokens, 2 + 9);
    assert_eq!(g.model, "m");
    assert!(!g.stream);
}

#[test]
fn characters_not_bytes_are_counted() {
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "héhé"}]});
    assert_eq!(
        parse_chat(body.to_string().as_bytes())
            .unwrap()
            .prompt_tokens,
        1 + 3
    );
}

#[test]
fn max_completion_tokens_wins_over_max_tokens() {
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 9, "max_completion_tokens": 4});
    assert_eq!(
        parse_chat(body.to_string().as_bytes()).unwrap().max_tokens,
        Some(4)
    );
}

#[test]
fn bad_requests_are_invalid_request_errors() {
    let cases: [&[u8]; 6] = [
        b"{not json",
        b"",
        br#"{"messages":[{"role":"user","content":"x"}]}"#,
        br#"{"model":"","messages":[{"role":"user","content":"x"}]}"#,
        br#"{"model":"m"}"#,
        br#"{"model":"m","messages":[],"max_tokens":-1}"#,
    ];
    for body in cases {
        let e = parse_chat(body).unwrap_err();
        assert_eq!(
            e.status,
            StatusCode::BAD_REQUEST,
            "{}",
            String::from_utf8_lossy(body)
        );
        assert_eq!(e.kind, "invalid_request_error");
    }
    let e = parse_chat(br#"{"messages":[{"role":"user","content":"x"}]}"#).unwrap_err();
    assert_eq!(e.message, "you must provide a model parameter");
}

#[test]
fn error_bodies_have_openai_shape() {
    let v: Value = serde_json::from_slice(&ApiError::invalid_request("nope").to_json()).unwrap();
    assert_eq!(
        v,
        json!({"error": {"message": "nope", "type": "invalid_request_error", "param": null, "code": null}})
    );
    let v: Value = serde_json::from_slice(
        &ApiError::for_status(StatusCode::TOO_MANY_REQUESTS, None).to_json(),
    )
    .unwrap();
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
}

#[test]
fn completion_prompts_count_text_and_tokens() {
    let g = parse_completion(br#"{"model":"m","prompt":["abcd","efgh1"]}"#).unwrap();
    assert_eq!(g.prompt_tokens, 3);
    let g = parse_completion(
        br#"{"model":"m","prompt":[1,2,3],"stream":true,"stream_options":{"include_usage":true}}"#,
    )
    .unwrap();
    assert_eq!(
        (g.prompt_tokens, g.stream, g.include_usage),
        (3, true, true)
    );
}

#[test]
fn chat_completion_has_openai_shape() {
    let v: Value =
        serde_json::from_slice(&completion_json(&reply(Kind::Chat, 3, "gpt-4o"))).unwrap();
    assert_eq!(
        v,
        json!({
            "id": "chatcmpl-test", "object": "chat.completion", "created": 1_700_000_000, "model": "gpt-4o",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "The quick brown", "refusal": null},
                         "logprobs": null, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13},
            "system_fingerprint": FINGERPRINT,
        })
    );
}

#[test]
fn stream_chunks_carry_null_usage_only_when_usage_is_asked() {
    let model = "we\"ird";
    let with = stream_frames(&reply(Kind::Chat, 2, model), StreamUsage::OwnChunk);
    assert_eq!(with.chunks, 4);
    assert_eq!(with.frames.len(), 6);
    for frame in &with.frames[..4] {
        let v = frame_json(frame);
        assert_eq!(v["usage"], Value::Null);
        assert!(v.as_object().unwrap().contains_key("usage"));
        assert_eq!(v["model"], model);
    }
    let usage = frame_json(&with.frames[4]);
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["total_tokens"], 12);
    assert_eq!(&with.frames[5][..], DONE_FRAME);

    let without = stream_frames(&reply(Kind::Chat, 2, model), StreamUsage::None);
    assert_eq!(without.frames.len(), 5);
    assert!(
        !frame_json(&without.frames[1])
            .as_object()
            .unwrap()
            .contains_key("usage")
    );
}

#[test]
fn usage_can_ride_in_the_finish_chunk() {
    let s = stream_frames(&reply(Kind::Chat, 2, "m"), StreamUsage::InFinishChunk);
    assert_eq!((s.chunks, s.frames.len()), (4, 5));
    let finish = frame_json(&s.frames[3]);
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    assert_eq!(finish["usage"]["total_tokens"], 12);
    assert_eq!(frame_json(&s.frames[2])["usage"], Value::Null);
    assert_eq!(&s.frames[4][..], DONE_FRAME);
}

#[test]
fn counts_are_integers_as_json_schema_has_them() {
    let chat = |extra: &str| {
        let body =
            format!(r#"{{"model":"m","messages":[{{"role":"user","content":"x"}}]{extra}}}"#);
        parse_chat(body.as_bytes()).map(|g| g.max_tokens)
    };
    assert_eq!(chat(r#","max_tokens":8.0"#).unwrap(), Some(8));
    assert_eq!(chat(r#","max_completion_tokens":1e1"#).unwrap(), Some(10));
    assert_eq!(chat(r#","max_tokens":null"#).unwrap(), None);
    for bad in [
        r#","max_tokens":8.5"#,
        r#","max_tokens":-1"#,
        r#","max_tokens":"8""#,
    ] {
        assert_eq!(
            chat(bad).unwrap_err().status,
            StatusCode::BAD_REQUEST,
            "{bad}"
        );
    }
}

#[test]
fn text_streams_have_no_role_chunk() {
    let s = stream_frames(&reply(Kind::Text, 2, "m"), StreamUsage::None);
    let texts: Vec<Value> = s.frames[..s.chunks]
        .iter()
        .map(|f| frame_json(f)["choices"][0]["text"].clone())
        .collect();
    assert_eq!(texts, [json!("The"), json!(" quick"), json!("")]);
    assert_eq!(frame_json(&s.frames[0])["object"], "text_completion");
}

#[test]
fn cutting_a_stream_drops_usage_and_done() {
    let s = stream_frames(&reply(Kind::Chat, 5, "m"), StreamUsage::OwnChunk);
    assert_eq!(
        stream_frames(&reply(Kind::Chat, 5, "m"), StreamUsage::OwnChunk)
            .cut_after(2)
            .len(),
        2
    );
    assert_eq!(s.cut_after(100).len(), 7);
}

#[test]
fn embeddings_are_unit_vectors_per_input() {
    let job =
        parse_embeddings(br#"{"model":"e","input":["hello world","hello world","x"]}"#).unwrap();
    let v: Value = serde_json::from_slice(&embeddings_json(&job, "e")).unwrap();
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    assert_eq!(data[0]["embedding"], data[1]["embedding"]);
    assert_ne!(data[0]["embedding"], data[2]["embedding"]);
    let norm: f64 = data[2]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap().powi(2))
        .sum();
    assert!((norm - 1.0).abs() < 1e-4);
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 3 + 3 + 1, "total_tokens": 7})
    );
    assert!(parse_embeddings(br#"{"model":"e","input":[]}"#).is_err());
    assert!(parse_embeddings(br#"{"model":"e"}"#).is_err());
    assert!(parse_embeddings(br#"{"model":"e","input":"x","encoding_format":"hex"}"#).is_err());
}

#[test]
fn base64_matches_the_standard_alphabet() {
    assert_eq!(base64(b""), "");
    assert_eq!(base64(b"f"), "Zg==");
    assert_eq!(base64(b"fo"), "Zm8=");
    assert_eq!(base64(b"foo"), "Zm9v");
    assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    assert_eq!(base64_f32(&[1.0]), "AACAPw==");
}
