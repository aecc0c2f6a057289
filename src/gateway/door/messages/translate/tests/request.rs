use serde_json::{Value, json};

use crate::gateway::door::messages::translate::{Untranslatable, to_chat};

fn chat(body: Value) -> Value {
    let out = to_chat(body.to_string().as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    serde_json::from_slice(&out).unwrap()
}

fn refused(body: Value) -> String {
    match to_chat(body.to_string().as_bytes()) {
        Err(Untranslatable { message }) => message,
        Ok(out) => panic!("translated: {}", String::from_utf8_lossy(&out)),
    }
}

fn with_messages(messages: Value) -> Value {
    json!({"model": "claude-x", "max_tokens": 100, "messages": messages})
}

fn has_key(v: &Value, key: &str) -> bool {
    match v {
        Value::Object(m) => m.contains_key(key) || m.values().any(|v| has_key(v, key)),
        Value::Array(a) => a.iter().any(|v| has_key(v, key)),
        _ => false,
    }
}

#[test]
fn claude_code_requests_translate_whole() {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/agents/claude_code"
    );
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let capture: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let Some(body) = capture["body"]
            .as_str()
            .filter(|b| b.contains("\"messages\""))
        else {
            continue; // HEAD /
        };
        let sent: Value = serde_json::from_str(body).unwrap();
        let out = to_chat(body.as_bytes()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let out: Value = serde_json::from_slice(&out).unwrap();
        seen += 1;
        let name = path.display();
        assert_eq!(out["model"], sent["model"], "{name}");
        assert!(!has_key(&out, "cache_control"), "{name}");
        for extra in [
            "thinking",
            "context_management",
            "output_config",
            "metadata",
        ] {
            assert!(out.get(extra).is_none(), "{name}: {extra}");
        }
        assert_eq!(
            out["tools"].as_array().map(Vec::len),
            sent["tools"].as_array().map(Vec::len).filter(|&n| n > 0),
            "{name}"
        );
        if sent["stream"] == true {
            assert_eq!(
                out["stream_options"],
                json!({"include_usage": true}),
                "{name}"
            );
        } else {
            assert!(out.get("stream").is_none(), "{name}");
        }
        if sent.get("system").is_some() {
            let system = out["messages"][0]["content"].as_str().unwrap();
            assert!(!system.contains("x-anthropic-billing-header"), "{name}");
            assert!(system.starts_with("You are a Claude agent"), "{name}");
            assert!(out.get("reasoning_effort").is_none(), "{name}");
            assert_eq!(out["max_tokens"], 64000, "{name}");
            assert!(
                out["user"].as_str().unwrap().contains("session_id"),
                "{name}"
            );
            // The agent list Claude Code sends as a system entry stays where it was.
            assert_eq!(out["messages"][2]["role"], "system", "{name}");
        }
    }
    assert!(seen >= 20, "only {seen} fixtures");
}

#[test]
fn claude_code_tool_turn_becomes_a_call_and_its_result() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/agents/claude_code/tool_turn3_continue.json"
    );
    let capture: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let out = chat(serde_json::from_str(capture["body"].as_str().unwrap()).unwrap());
    let roles: Vec<&str> = out["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        [
            "system",
            "user",
            "system",
            "assistant",
            "tool",
            "assistant",
            "user"
        ]
    );
    let call = &out["messages"][3]["tool_calls"][0];
    assert_eq!(call["id"], "toolu_capture_002");
    assert_eq!(call["function"]["name"], "Bash");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args["command"], "echo captured");
    assert!(out["messages"][3]["content"].is_null());
    assert_eq!(
        out["messages"][4],
        json!({"role": "tool", "content": "captured", "tool_call_id": "toolu_capture_002"})
    );
    assert_eq!(out["messages"][6]["content"], "say hi again");
}

#[test]
fn system_blocks_join_without_the_billing_line_or_cache_markers() {
    let out = chat(
        json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}],
        "system": [{"type": "text", "text": "x-anthropic-billing-header: cc_version=1; cc_entrypoint=cli;"},
                   {"type": "text", "text": "one", "cache_control": {"type": "ephemeral"}},
                   {"type": "text", "text": "two", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]}),
    );
    assert_eq!(
        out["messages"][0],
        json!({"role": "system", "content": "one\n\ntwo"})
    );
    let out = chat(
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "system": "plain"}),
    );
    assert_eq!(
        out["messages"][0],
        json!({"role": "system", "content": "plain"})
    );
    assert!(out.get("max_tokens").is_none());
    let out =
        chat(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "system": []}));
    assert_eq!(
        out["messages"][0]["role"], "user",
        "an empty system prompt is no message"
    );
}

#[test]
fn system_entries_inside_messages_stay_in_place() {
    let out = chat(with_messages(json!([
        {"role": "user", "content": "a"},
        {"role": "system", "content": [{"type": "text", "text": "agents: x"}]},
        {"role": "user", "content": "b"}])));
    assert_eq!(
        out["messages"][1],
        json!({"role": "system", "content": "agents: x"})
    );
    assert_eq!(out["messages"][2]["content"], "b");
}

#[test]
fn tool_results_come_right_after_the_calls_before_the_users_words() {
    let out = chat(with_messages(json!([
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "sig"},
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_2", "name": "time", "input": {}}]},
        {"role": "user", "content": [
            {"type": "text", "text": "also this"},
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "sunny"}, {"type": "text", "text": "20C"}]},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": "boom", "is_error": true, "cache_control": {"type": "ephemeral"}}]}])));
    let m = out["messages"].as_array().unwrap();
    assert_eq!(m.len(), 5, "{m:?}");
    assert_eq!(m[1]["content"], "Checking.", "thinking left out");
    assert_eq!(
        m[1]["tool_calls"][0]["function"]["arguments"],
        r#"{"city":"Paris"}"#
    );
    assert_eq!(m[1]["tool_calls"][1]["type"], "function");
    assert_eq!(
        m[2],
        json!({"role": "tool", "content": "sunny\n\n20C", "tool_call_id": "toolu_1"})
    );
    assert_eq!(
        m[3],
        json!({"role": "tool", "content": "Error: boom", "tool_call_id": "toolu_2"})
    );
    assert_eq!(m[4], json!({"role": "user", "content": "also this"}));
}

#[test]
fn images_become_image_urls_and_result_images_follow_the_results() {
    let png = json!({"type": "base64", "media_type": "image/png", "data": "iVBOR"});
    let out = chat(with_messages(json!([
        {"role": "user", "content": [{"type": "text", "text": "look"},
            {"type": "image", "source": png},
            {"type": "image", "source": {"type": "url", "url": "https://x.test/cat.png"}}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "Read", "input": {"path": "a.png"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "image", "source": png}]}]}])));
    let m = out["messages"].as_array().unwrap();
    assert_eq!(
        m[0]["content"],
        json!([{"type": "text", "text": "look"},
               {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}},
               {"type": "image_url", "image_url": {"url": "https://x.test/cat.png"}}])
    );
    assert_eq!(m[2]["role"], "tool");
    assert_eq!(m[2]["content"], "(images follow in the next message)");
    assert_eq!(m[3]["role"], "user");
    assert_eq!(m[3]["content"][0]["text"], "The images of tool result t:");
    assert_eq!(
        m[3]["content"][1]["image_url"]["url"],
        "data:image/png;base64,iVBOR"
    );
}

#[test]
fn an_assistant_turn_of_thinking_alone_is_left_out() {
    let out = chat(with_messages(json!([
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": [{"type": "redacted_thinking", "data": "xx"}]},
        {"role": "user", "content": "b"}])));
    assert_eq!(out["messages"].as_array().unwrap().len(), 2);
}

#[test]
fn text_documents_become_text_and_pdfs_are_refused_by_name() {
    let out = chat(with_messages(json!([{"role": "user", "content": [
        {"type": "document", "title": "Notes", "source": {"type": "text", "media_type": "text/plain", "data": "the text"}},
        {"type": "document", "source": {"type": "content", "content": [{"type": "text", "text": "chunk"}]}}]}])));
    assert_eq!(
        out["messages"][0]["content"],
        json!([{"type": "text", "text": "Notes\n\nthe text"}, {"type": "text", "text": "chunk"}])
    );
    let e = refused(with_messages(
        json!([{"role": "user", "content": [{"type": "text", "text": "read"},
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBER"}}]}]),
    ));
    assert!(
        e.contains("`messages[0].content[1]`") && e.contains("application/pdf"),
        "{e}"
    );
}

#[test]
fn unknown_blocks_roles_and_sources_are_refused_by_name() {
    let e = refused(with_messages(json!([{"role": "assistant", "content": [
        {"type": "server_tool_use", "id": "s", "name": "web_search", "input": {}}]}])));
    assert!(
        e.contains("`messages[0].content[0]`") && e.contains("server_tool_use"),
        "{e}"
    );
    let e = refused(with_messages(json!([{"role": "tool", "content": "x"}])));
    assert!(e.contains("messages[0].role"), "{e}");
    let e = refused(with_messages(json!([{"role": "user", "content": [
        {"type": "image", "source": {"type": "file", "file_id": "f"}}]}])));
    assert!(
        e.contains("`messages[0].content[0]`") && e.contains("`file` source"),
        "{e}"
    );
    let e = refused(with_messages(
        json!([{"role": "user", "content": [{"type": "tool_result",
        "tool_use_id": "t", "content": [{"type": "search_result", "source": "s"}]}]}]),
    ));
    assert!(e.contains("`messages[0].content[0].content[0]`"), "{e}");
    assert!(refused(json!({"model": "m"})).contains("not a Messages request"));
    assert!(
        refused(json!({"model": "m", "messages": [{"role": "user", "content": 5}]}))
            .contains("messages[0].content")
    );
}

#[test]
fn custom_tools_become_functions_and_server_tools_are_refused() {
    let schema = json!({"type": "object", "properties": {"q": {"type": "string"}}});
    let out = chat(
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [
        {"name": "search", "description": "find", "input_schema": schema, "defer_loading": true, "cache_control": {"type": "ephemeral"}},
        {"type": "custom", "name": "strict_one", "input_schema": schema, "strict": true}]}),
    );
    assert_eq!(
        out["tools"][0],
        json!({"type": "function", "function": {"name": "search", "description": "find", "parameters": schema}})
    );
    assert_eq!(out["tools"][1]["function"]["strict"], true);
    for kind in [
        "web_search_20250305",
        "bash_20250124",
        "text_editor_20250728",
        "computer_20250124",
    ] {
        let e = refused(json!({"model": "m", "messages": [], "tools": [
            {"name": "ok", "input_schema": schema}, {"type": kind, "name": "x"}]}));
        assert!(e.contains("`tools[1]`") && e.contains(kind), "{e}");
    }
}

#[test]
fn tool_choice_maps_and_needs_tools() {
    let with = |choice: Value| {
        chat(json!({"model": "m", "messages": [], "tool_choice": choice,
            "tools": [{"name": "f", "input_schema": {"type": "object"}}]}))
    };
    assert_eq!(with(json!({"type": "auto"}))["tool_choice"], "auto");
    assert_eq!(with(json!({"type": "any"}))["tool_choice"], "required");
    assert_eq!(with(json!({"type": "none"}))["tool_choice"], "none");
    assert_eq!(
        with(json!({"type": "tool", "name": "f"}))["tool_choice"],
        json!({"type": "function", "function": {"name": "f"}})
    );
    let single = with(json!({"type": "auto", "disable_parallel_tool_use": true}));
    assert_eq!(single["parallel_tool_calls"], false);
    assert!(
        with(json!({"type": "auto"}))
            .get("parallel_tool_calls")
            .is_none()
    );
    // OpenAI refuses tool_choice without tools: it has nothing to choose.
    let out = chat(json!({"model": "m", "messages": [], "tool_choice": {"type": "any"}}));
    assert!(out.get("tool_choice").is_none() && out.get("parallel_tool_calls").is_none());
    assert!(
        refused(
            json!({"model": "m", "messages": [], "tool_choice": {"type": "tool"},
        "tools": [{"name": "f", "input_schema": {}}]})
        )
        .contains("no name")
    );
}

#[test]
fn effort_is_left_to_the_upstreams_default() {
    // Claude Code sends effort on every turn; OpenAI refuses
    // `reasoning_effort` for models that do not reason.
    for extra in [
        json!({"output_config": {"effort": "high"}}),
        json!({"output_config": {"effort": "max"}, "thinking": {"type": "adaptive"}}),
    ] {
        let mut b = json!({"model": "m", "messages": []});
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        assert!(chat(b).get("reasoning_effort").is_none());
    }
}

#[test]
fn sampling_limits_and_user_carry_over_and_extras_drop() {
    let out = chat(
        json!({"model": "claude-x", "max_tokens": 321, "messages": [{"role": "user", "content": "x"}],
        "stop_sequences": ["END", "STOP"], "temperature": 0.5, "top_p": 0.9, "top_k": 40,
        "metadata": {"user_id": "u-1"}, "stream": true,
        "context_management": {"edits": []}, "safeguards": {"x": 1}, "container": "c",
        "mcp_servers": [], "service_tier": "auto", "thinking": {"type": "disabled"}}),
    );
    assert_eq!(
        out,
        json!({"model": "claude-x", "messages": [{"role": "user", "content": "x"}], "max_tokens": 321,
               "stop": ["END", "STOP"], "temperature": 0.5, "top_p": 0.9, "user": "u-1",
               "stream": true, "stream_options": {"include_usage": true}})
    );
}
