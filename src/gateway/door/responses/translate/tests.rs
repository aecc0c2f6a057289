use serde_json::{Value, json};

use super::*;

fn chat(body: Value) -> Value {
    let out = to_chat(body.to_string().as_bytes()).expect("translates");
    serde_json::from_slice(&out).unwrap()
}

fn refused(body: Value) -> String {
    to_chat(body.to_string().as_bytes())
        .expect_err("refused")
        .message
}

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/agents/codex/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let capture: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    capture["body"].as_str().unwrap().as_bytes().to_vec()
}

// ---- request ----

#[test]
fn instructions_and_string_input() {
    let c = chat(
        json!({"model": "m", "instructions": "be brief", "input": "hi",
                        "max_output_tokens": 50, "temperature": 0.5, "top_p": 0.9}),
    );
    assert_eq!(
        c,
        json!({"model": "m", "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hi"}],
            "max_tokens": 50, "temperature": 0.5, "top_p": 0.9})
    );
}

#[test]
fn stream_asks_for_usage() {
    let c = chat(json!({"model": "m", "input": "hi", "stream": true}));
    assert_eq!(c["stream"], json!(true));
    assert_eq!(c["stream_options"], json!({"include_usage": true}));
}

#[test]
fn messages_roles_and_parts() {
    let c = chat(json!({"model": "m", "input": [
        {"type": "message", "role": "developer", "content": [
            {"type": "input_text", "text": "a"}, {"type": "input_text", "text": "b"}]},
        {"role": "user", "content": "no type (Agents SDK)"},
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "look"},
            {"type": "input_image", "image_url": "data:image/png;base64,AA", "detail": "low"}]},
        {"type": "message", "role": "assistant", "content": [
            {"type": "output_text", "text": "seen", "annotations": []}]},
        {"type": "reasoning", "id": "rs_1", "encrypted_content": "xx", "summary": []},
    ]}));
    assert_eq!(
        c["messages"],
        json!([
            {"role": "system", "content": "a\nb"},
            {"role": "user", "content": "no type (Agents SDK)"},
            {"role": "user", "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA", "detail": "low"}}]},
            {"role": "assistant", "content": "seen"},
        ])
    );
}

#[test]
fn image_by_file_id_is_refused() {
    let m = refused(json!({"model": "m", "input": [{"role": "user", "content": [
        {"type": "input_image", "file_id": "file-1"}]}]}));
    assert!(m.contains("file_id"), "{m}");
    let m = refused(json!({"model": "m", "input": [{"role": "user", "content": [
        {"type": "input_file", "file_id": "file-1"}]}]}));
    assert!(m.contains("input_file"), "{m}");
}

#[test]
fn calls_and_outputs() {
    let c = chat(json!({"model": "m", "input": [
        {"role": "user", "content": "go"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "ok"}]},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{\"a\":1}"},
        {"type": "custom_tool_call", "call_id": "c2", "name": "exec", "input": "echo hi"},
        {"type": "function_call_output", "call_id": "c1", "output": "one"},
        {"type": "custom_tool_call_output", "call_id": "c2", "output": [
            {"type": "input_text", "text": "x"}, {"type": "input_text", "text": "y"},
            {"type": "input_image", "image_url": "https://i/png"}]},
        {"role": "user", "content": "next"},
    ]}));
    assert_eq!(
        c["messages"],
        json!([
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": "ok", "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}},
                {"id": "c2", "type": "function", "function": {"name": "exec", "arguments": "{\"input\":\"echo hi\"}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "one"},
            {"role": "tool", "tool_call_id": "c2", "content": "x\ny"},
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://i/png"}}]},
            {"role": "user", "content": "next"},
        ])
    );
}

#[test]
fn tools_function_custom_namespace() {
    let (out, tools) = to_chat_with_tools(
        json!({"model": "m", "input": "hi", "tool_choice": "auto", "parallel_tool_calls": false,
        "tools": [
            {"type": "function", "name": "f", "description": "d", "strict": true,
             "parameters": {"type": "object", "properties": {}}},
            {"type": "custom", "name": "exec", "description": "run",
             "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"}},
            {"type": "namespace", "name": "ns", "description": "", "tools": [
                {"type": "function", "name": "g"}]},
            {"type": "tool_search"},
        ]})
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    let c: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(c["tool_choice"], json!("auto"));
    assert_eq!(c["parallel_tool_calls"], json!(false));
    let t = c["tools"].as_array().unwrap();
    assert_eq!(t.len(), 3);
    assert_eq!(
        t[0],
        json!({"type": "function", "function": {"name": "f", "description": "d", "strict": true,
               "parameters": {"type": "object", "properties": {}}}})
    );
    assert_eq!(t[1]["function"]["name"], "exec");
    assert_eq!(t[1]["function"]["parameters"]["required"], json!(["input"]));
    let desc = t[1]["function"]["parameters"]["properties"]["input"]["description"]
        .as_str()
        .unwrap();
    assert!(
        desc.contains("lark") && desc.contains("start: /.+/"),
        "{desc}"
    );
    assert_eq!(t[2]["function"]["name"], "g");
    assert!(tools.is_custom("exec") && !tools.is_custom("f"));
    assert_eq!(tools.namespace("g"), Some("ns"));
}

#[test]
fn no_tools_no_choice() {
    let c = chat(
        json!({"model": "m", "input": "hi", "tool_choice": "auto", "parallel_tool_calls": true}),
    );
    assert!(c.get("tool_choice").is_none() && c.get("parallel_tool_calls").is_none());
}

#[test]
fn tool_choice_by_name() {
    let c = chat(json!({"model": "m", "input": "hi",
        "tools": [{"type": "function", "name": "f"}],
        "tool_choice": {"type": "function", "name": "f"}}));
    assert_eq!(
        c["tool_choice"],
        json!({"type": "function", "function": {"name": "f"}})
    );
}

#[test]
fn hosted_tools_refused_by_name() {
    for kind in [
        "web_search",
        "web_search_preview",
        "file_search",
        "code_interpreter",
        "computer_use_preview",
        "image_generation",
        "mcp",
    ] {
        let m = refused(json!({"model": "m", "input": "hi", "tools": [{"type": kind}]}));
        assert!(m.contains(&format!("`{kind}`")), "{m}");
    }
    let m = refused(json!({"model": "m", "input": "hi", "tool_choice": {"type": "web_search"}}));
    assert!(m.contains("web_search"), "{m}");
}

#[test]
fn stored_state_refused_by_name() {
    let m = refused(json!({"model": "m", "input": "hi", "previous_response_id": "resp_1"}));
    assert!(m.contains("previous_response_id"), "{m}");
    let m = refused(json!({"model": "m", "input": "hi", "conversation": "conv_1"}));
    assert!(m.contains("conversation"), "{m}");
    let m = refused(json!({"model": "m", "input": [{"type": "item_reference", "id": "x"}]}));
    assert!(m.contains("item_reference"), "{m}");
    // null is no state.
    chat(json!({"model": "m", "input": "hi", "previous_response_id": null}));
}

#[test]
fn extras_dropped_or_kept() {
    let c = chat(json!({"model": "m", "input": "hi", "store": false,
        "include": ["reasoning.encrypted_content"], "prompt_cache_key": "k",
        "reasoning": {"effort": "low"}, "text": {"verbosity": "low"},
        "metadata": {"a": "b"}, "client_metadata": {"x": "y"}, "truncation": "auto",
        "service_tier": "auto"}));
    assert_eq!(
        c,
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    );
    let c = chat(json!({"model": "m", "input": "hi", "text": {"format":
        {"type": "json_schema", "name": "n", "schema": {"type": "object"}, "strict": true}}}));
    assert_eq!(
        c["response_format"],
        json!({"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "object"}, "strict": true}})
    );
}

#[test]
fn not_json_is_untranslatable() {
    assert!(to_chat(b"{").is_err());
    assert!(to_chat(b"[]").is_err());
    assert!(to_chat(br#"{"input":"x"}"#).is_err());
}

#[test]
fn codex_fixtures_translate() {
    for name in [
        "oneshot.json",
        "builtin_openai_oneshot.json",
        "tool_turn1.json",
        "tool_turn2_custom_tool_call_output.json",
        "tool_turn3_resume.json",
    ] {
        let body = fixture(name);
        let (out, tools) = to_chat_with_tools(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
        let c: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(c["model"], "gpt-6.2-sol", "{name}");
        assert_eq!(c["stream"], true);
        // Codex's code-mode tools come in an `additional_tools` item.
        assert!(tools.is_custom("exec"), "{name}");
        assert_eq!(tools.namespace("exec"), Some("functions"));
        let names: Vec<&str> = c["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["function"]["name"].as_str().unwrap())
            .collect();
        assert!(
            names.contains(&"exec") && names.contains(&"wait"),
            "{name}: {names:?}"
        );
        assert!(c.get("reasoning_effort").is_none());
        let messages = c["messages"].as_array().unwrap();
        assert!(messages.iter().all(|m| m["role"] != "developer"));
        if name.starts_with("tool_turn2") || name.starts_with("tool_turn3") {
            let call = messages
                .iter()
                .find(|m| m.get("tool_calls").is_some())
                .unwrap();
            assert_eq!(call["tool_calls"][0]["id"], "call_capture_001");
            let args: Value = serde_json::from_str(
                call["tool_calls"][0]["function"]["arguments"]
                    .as_str()
                    .unwrap(),
            )
            .unwrap();
            assert!(args["input"].as_str().unwrap().contains("echo captured"));
            assert!(messages.iter().any(|m| m["role"] == "tool"
                && m["tool_call_id"] == "call_capture_001"
                && m["content"].as_str().unwrap().contains("captured")));
        }
    }
}

#[test]
fn codex_fixtures_with_web_search_refuse_it_by_name() {
    for name in [
        "unknown_model_turn1.json",
        "unknown_model_turn2_function_call_output.json",
    ] {
        let body = fixture(name);
        let m = to_chat(&body).unwrap_err().message;
        assert!(m.contains("`web_search`"), "{name}: {m}");
        // Without it, the rest translates, namespace flattened.
        let mut v: Value = serde_json::from_slice(&body).unwrap();
        v["tools"]
            .as_array_mut()
            .unwrap()
            .retain(|t| t["type"] != "web_search");
        let (out, tools) = to_chat_with_tools(v.to_string().as_bytes()).unwrap();
        let c: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(c["tools"].as_array().unwrap().len(), 7 + 5);
        assert_eq!(tools.namespace("spawn_agent"), Some("multi_agent_v1"));
        assert_eq!(c["parallel_tool_calls"], true);
    }
}

// ---- answer ----

#[test]
fn answer_text_and_usage() {
    let a = from_chat(
        json!({"id": "chatcmpl-abc", "created": 7, "model": "gpt-x", "choices": [{"index": 0,
            "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 3,
                      "prompt_tokens_details": {"cached_tokens": 4}}})
        .to_string()
        .as_bytes(),
        "asked",
    )
    .unwrap();
    let r: Value = serde_json::from_slice(&a).unwrap();
    assert_eq!(r["id"], "resp_abc");
    assert_eq!(r["object"], "response");
    assert_eq!(r["status"], "completed");
    assert_eq!(r["model"], "asked");
    assert_eq!(r["output"][0]["type"], "message");
    assert_eq!(r["output"][0]["content"][0]["type"], "output_text");
    assert_eq!(r["output"][0]["content"][0]["text"], "hello");
    assert_eq!(r["usage"]["input_tokens"], 10);
    assert_eq!(r["usage"]["output_tokens"], 3);
    assert_eq!(r["usage"]["total_tokens"], 13);
    assert_eq!(r["usage"]["input_tokens_details"]["cached_tokens"], 4);
}

#[test]
fn answer_calls_and_length() {
    let body = json!({"id": "chatcmpl-1", "choices": [{"message": {"role": "assistant",
        "content": null, "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "f", "arguments": "{}"}},
            {"id": "call_b", "type": "function", "function": {"name": "exec", "arguments": "{\"input\":\"ls\"}"}}]},
        "finish_reason": "length"}]})
    .to_string();
    let r: Value = serde_json::from_slice(&from_chat(body.as_bytes(), "m").unwrap()).unwrap();
    assert_eq!(r["status"], "incomplete");
    assert_eq!(r["incomplete_details"]["reason"], "max_output_tokens");
    assert_eq!(r["output"].as_array().unwrap().len(), 2);
    assert_eq!(r["output"][0]["type"], "function_call");
    assert_eq!(r["output"][0]["call_id"], "call_a");
    assert_eq!(r["output"][1]["type"], "function_call");
    // With the request's tools, the custom tool's call is a custom_tool_call.
    let (_, tools) = to_chat_with_tools(
        json!({"model": "m", "input": "x", "tools": [{"type": "namespace", "name": "functions",
            "tools": [{"type": "custom", "name": "exec"}]}]})
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    let r: Value =
        serde_json::from_slice(&from_chat_with_tools(body.as_bytes(), "m", &tools).unwrap())
            .unwrap();
    assert_eq!(
        r["output"][1],
        json!({"type": "custom_tool_call", "id": "fc_1_1", "status": "completed",
               "call_id": "call_b", "name": "exec", "input": "ls", "namespace": "functions"})
    );
}

#[test]
fn answer_not_json() {
    assert!(from_chat(b"nope", "m").is_err());
    assert!(from_chat(b"{}", "m").is_err());
}

// ---- stream ----

fn sse(chunks: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in chunks {
        out.extend_from_slice(format!("data: {c}\n\n").as_bytes());
    }
    out.extend_from_slice(b"data: [DONE]\n\n");
    out
}

fn events(bytes: &[u8]) -> Vec<(String, Value)> {
    let text = std::str::from_utf8(bytes).unwrap();
    text.split("\n\n")
        .filter(|f| !f.is_empty())
        .map(|f| {
            let (event, data) = f.split_once('\n').unwrap();
            let kind = event.strip_prefix("event: ").unwrap().to_string();
            let v: Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
            assert_eq!(v["type"], kind.as_str());
            (kind, v)
        })
        .collect()
}

fn run(input: &[u8], tools: Tools) -> (Vec<u8>, ChatToResponses) {
    let mut t = ChatToResponses::new("asked", "resp_x").with_tools(tools);
    let mut out = Vec::new();
    out.extend_from_slice(&t.feed(input).unwrap_or_default());
    out.extend_from_slice(&t.finish().unwrap_or_default());
    (out, t)
}

fn text_stream() -> Vec<u8> {
    sse(&[
        json!({"id": "c", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}),
        json!({"id": "c", "choices": [{"index": 0, "delta": {"content": "Hel"}}]}),
        json!({"id": "c", "choices": [{"index": 0, "delta": {"content": "lo \"x\"\n"}}]}),
        json!({"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
        json!({"id": "c", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}}),
    ])
}

fn tool_stream() -> Vec<u8> {
    sse(&[
        json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Let me"}}]}),
        json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_1",
            "type": "function", "function": {"name": "f", "arguments": ""}}]}}]}),
        json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0,
            "function": {"arguments": "{\"a\":"}}]}}]}),
        json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0,
            "function": {"arguments": "1}"}}]}}]}),
        json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 1, "id": "call_2",
            "function": {"name": "exec", "arguments": "{\"input\":\"ls -l\"}"}}]}}]}),
        json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
        json!({"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 4}}),
    ])
}

#[test]
fn stream_text() {
    let (out, t) = run(&text_stream(), Tools::default());
    let ev = events(&out);
    let kinds: Vec<&str> = ev.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    for (i, (_, v)) in ev.iter().enumerate() {
        assert_eq!(v["sequence_number"], i as u64);
    }
    assert_eq!(ev[6].1["text"], "Hello \"x\"\n");
    let r = &ev[9].1["response"];
    assert_eq!(r["id"], "resp_x");
    assert_eq!(r["model"], "asked");
    assert_eq!(r["status"], "completed");
    assert_eq!(r["output"][0]["content"][0]["text"], "Hello \"x\"\n");
    assert_eq!(r["usage"]["input_tokens"], 5);
    assert!(t.done());
    assert_eq!(t.usage(), Some((5, 2)));
    assert_eq!(t.frames(), 2);
}

#[test]
fn stream_tool_calls() {
    let (_, tools) = to_chat_with_tools(
        json!({"model": "m", "input": "x", "tools": [{"type": "function", "name": "f"},
            {"type": "namespace", "name": "functions", "tools": [{"type": "custom", "name": "exec"}]}]})
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    let (out, t) = run(&tool_stream(), tools);
    assert!(t.done());
    let ev = events(&out);
    let kinds: Vec<&str> = ev.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.output_item.added",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.custom_tool_call_input.delta",
            "response.custom_tool_call_input.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    assert_eq!(ev[8].1["item"]["call_id"], "call_1");
    assert_eq!(ev[8].1["item"]["arguments"], "");
    assert_eq!(ev[12].1["arguments"], "{\"a\":1}");
    assert_eq!(ev[11].1["item"]["type"], "custom_tool_call");
    assert_eq!(ev[11].1["item"]["namespace"], "functions");
    let out = &ev[17].1["response"]["output"];
    assert_eq!(out.as_array().unwrap().len(), 3);
    assert_eq!(out[1]["type"], "function_call");
    assert_eq!(out[2]["input"], "ls -l");
}

#[test]
fn stream_holds_until_content() {
    let mut t = ChatToResponses::new("m", "resp_1");
    let role = json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]});
    assert!(
        t.feed(format!("data: {role}\n\n: keepalive\n\n").as_bytes())
            .is_none()
    );
    let first = t
        .feed(b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\n")
        .unwrap();
    let kinds: Vec<String> = events(&first).into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        kinds,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta"
        ]
    );
}

#[test]
fn stream_cut_before_finish_is_not_clean() {
    let mut t = ChatToResponses::new("m", "resp_1");
    t.feed(b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\n");
    assert!(t.finish().is_none());
    assert!(!t.done());
}

#[test]
fn stream_length_is_incomplete() {
    let body = sse(&[
        json!({"choices": [{"index": 0, "delta": {"content": "a"}}]}),
        json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}),
    ]);
    let (out, t) = run(&body, Tools::default());
    let ev = events(&out);
    let (kind, last) = ev.last().unwrap();
    assert_eq!(kind, "response.incomplete");
    assert_eq!(
        last["response"]["incomplete_details"]["reason"],
        "max_output_tokens"
    );
    assert!(t.done());
}

#[test]
fn stream_error_and_garbage() {
    let mut t = ChatToResponses::new("m", "resp_1");
    assert!(t.feed(b"data: not json\n\n").is_none());
    assert!(t.invalid());
    assert_eq!(t.skipped(), 1);
    assert!(
        t.feed(b"data: {\"error\":{\"message\":\"boom\"}}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n")
            .is_none()
    );
    assert_eq!(t.error(), Some("boom"));
    assert!(t.finish().is_none());
}

#[test]
fn stream_empty_answer_still_completes() {
    let body = sse(&[json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})]);
    let (out, _) = run(&body, Tools::default());
    let kinds: Vec<String> = events(&out).into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        kinds,
        [
            "response.created",
            "response.in_progress",
            "response.completed"
        ]
    );
}

/// The output with the clock-dependent `created_at` taken out.
fn stable(out: &[u8]) -> Vec<Value> {
    events(out)
        .into_iter()
        .map(|(_, mut v)| {
            if let Some(r) = v.get_mut("response").and_then(Value::as_object_mut) {
                r.remove("created_at");
            }
            v
        })
        .collect()
}

#[test]
fn stream_split_at_every_byte() {
    for (body, crlf) in [
        (text_stream(), false),
        (tool_stream(), false),
        (tool_stream(), true),
    ] {
        let body = if crlf {
            String::from_utf8(body)
                .unwrap()
                .replace('\n', "\r\n")
                .into_bytes()
        } else {
            body
        };
        let (whole, _) = run(&body, Tools::default());
        let mut t = ChatToResponses::new("asked", "resp_x");
        let mut pieces = Vec::new();
        for b in &body {
            pieces.extend_from_slice(&t.feed(std::slice::from_ref(b)).unwrap_or_default());
        }
        pieces.extend_from_slice(&t.finish().unwrap_or_default());
        assert_eq!(stable(&whole), stable(&pieces));
        assert!(t.done());
    }
}

mod props {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(crate::props(256))]
        #[test]
        fn any_split_same_output(cut in proptest::collection::vec(0usize..2000, 0..8)) {
            let body = tool_stream();
            let (whole, _) = run(&body, Tools::default());
            let mut cuts: Vec<usize> = cut.into_iter().map(|c| c % (body.len() + 1)).collect();
            cuts.sort_unstable();
            let mut t = ChatToResponses::new("asked", "resp_x");
            let mut out = Vec::new();
            let mut at = 0;
            for c in cuts.into_iter().chain([body.len()]) {
                out.extend_from_slice(&t.feed(&body[at..c]).unwrap_or_default());
                at = c;
            }
            out.extend_from_slice(&t.finish().unwrap_or_default());
            prop_assert_eq!(stable(&whole), stable(&out));
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let mut t = ChatToResponses::new("m", "resp_1");
            let _ = t.feed(&bytes);
            let _ = t.finish();
            let _ = to_chat(&bytes);
            let _ = from_chat(&bytes, "m");
        }
    }
}
