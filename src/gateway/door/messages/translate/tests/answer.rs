use serde_json::{Value, json};

use crate::gateway::door::messages::translate::from_chat;

fn message(chat: Value) -> (Value, Option<(u64, u64)>) {
    let (out, usage) = from_chat(chat.to_string().as_bytes(), "claude-opus-4-8").unwrap();
    (serde_json::from_slice(&out).unwrap(), usage)
}

fn completion(message: Value, finish: &str) -> Value {
    json!({"id": "chatcmpl-abc", "object": "chat.completion", "model": "gpt-x",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 7, "total_tokens": 107,
                  "prompt_tokens_details": {"cached_tokens": 60}}})
}

#[test]
fn text_and_tool_calls_become_blocks_under_the_asked_name() {
    let (m, usage) = message(completion(
        json!({"role": "assistant", "content": "Let me check.", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
            {"id": "call_2", "type": "function", "function": {"name": "time", "arguments": ""}}]}),
        "tool_calls",
    ));
    assert_eq!(
        m,
        json!({"id": "msg_abc", "type": "message", "role": "assistant", "model": "claude-opus-4-8",
            "content": [{"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "call_2", "name": "time", "input": {}}],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 40, "output_tokens": 7,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 60}})
    );
    assert_eq!(usage, Some((100, 7)), "the windows count cached input too");
}

#[test]
fn finish_reasons_map_to_stop_reasons() {
    for (finish, stop) in [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("function_call", "tool_use"),
        ("content_filter", "refusal"),
        ("something_new", "end_turn"),
    ] {
        let (m, _) = message(completion(json!({"content": "x"}), finish));
        assert_eq!(m["stop_reason"], stop, "{finish}");
    }
    let mut body = completion(json!({"content": "x"}), "stop");
    body["choices"][0]["finish_reason"] = Value::Null;
    assert_eq!(message(body).0["stop_reason"], "end_turn");
}

#[test]
fn a_stop_string_vllm_reports_is_a_stop_sequence() {
    let mut body = completion(json!({"content": "x"}), "stop");
    body["choices"][0]["stop_reason"] = json!("END");
    let (m, _) = message(body.clone());
    assert_eq!(
        (&m["stop_reason"], &m["stop_sequence"]),
        (&json!("stop_sequence"), &json!("END"))
    );
    body["choices"][0]["stop_reason"] = json!(128001); // the EOS token: no sequence
    let (m, _) = message(body);
    assert_eq!(
        (&m["stop_reason"], &m["stop_sequence"]),
        (&json!("end_turn"), &Value::Null)
    );
}

#[test]
fn tool_calls_under_a_plain_stop_are_still_tool_use() {
    let (m, _) = message(completion(
        json!({"content": null, "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{}"}}]}),
        "stop",
    ));
    assert_eq!(m["stop_reason"], "tool_use");
    assert_eq!(
        m["content"].as_array().unwrap().len(),
        1,
        "no empty text block"
    );
}

#[test]
fn arguments_that_are_not_an_object_are_kept_raw() {
    let (m, _) = message(completion(
        json!({"tool_calls": [
            {"id": "a", "function": {"name": "f", "arguments": "{\"x\": 1"}},
            {"id": "b", "function": {"name": "f", "arguments": "[1]"}},
            {"function": {"name": "f", "arguments": "  {\"ok\": true}  "}}]}),
        "tool_calls",
    ));
    assert_eq!(m["content"][0]["input"], json!({"_raw": "{\"x\": 1"}));
    assert_eq!(m["content"][1]["input"], json!({"_raw": "[1]"}));
    assert_eq!(m["content"][2]["input"], json!({"ok": true}));
    assert_eq!(
        m["content"][2]["id"], "toolu_abc_2",
        "made up when the upstream gave none"
    );
}

#[test]
fn reasoning_is_dropped_and_refusals_are_text() {
    let (m, _) = message(completion(
        json!({"content": "4", "reasoning_content": "2+2", "reasoning": "2+2"}),
        "stop",
    ));
    assert_eq!(m["content"], json!([{"type": "text", "text": "4"}]));
    let (m, _) = message(completion(
        json!({"content": null, "refusal": "I can't."}),
        "stop",
    ));
    assert_eq!(m["content"], json!([{"type": "text", "text": "I can't."}]));
    assert_eq!(m["stop_reason"], "refusal");
}

#[test]
fn content_given_as_parts_is_joined() {
    let (m, _) = message(completion(
        json!({"content": [{"type": "text", "text": "a"}, {"type": "thinking", "thinking": []}, {"type": "text", "text": "b"}]}),
        "stop",
    ));
    assert_eq!(m["content"], json!([{"type": "text", "text": "ab"}]));
}

#[test]
fn no_usage_no_choices_and_errors() {
    let mut body = completion(json!({"content": ""}), "stop");
    body.as_object_mut().unwrap().remove("usage");
    body.as_object_mut().unwrap().remove("id");
    let (m, usage) = message(body);
    assert_eq!(usage, None);
    assert_eq!(m["usage"]["input_tokens"], 0);
    assert_eq!(m["id"], "msg_switchboard");
    assert_eq!(m["content"], json!([]));
    assert!(
        from_chat(br#"{"choices": []}"#, "m")
            .unwrap_err()
            .contains("without choices")
    );
    let e = from_chat(
        br#"{"error": {"message": "bad key", "type": "invalid_request_error"}}"#,
        "m",
    );
    assert!(e.unwrap_err().contains("bad key"));
    assert!(from_chat(b"<html>", "m").is_err());
}
