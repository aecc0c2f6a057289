use super::*;

#[test]
fn the_api_refuses_what_it_refuses() {
    let parse =
        |body: serde_json::Value| request::parse(body.to_string().as_bytes(), Flavor::Anthropic);
    let ok = json!({"model": "claude-x", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
    assert!(parse(ok.clone()).is_ok());
    let mut no_max = ok.clone();
    no_max.as_object_mut().unwrap().remove("max_tokens");
    assert_eq!(
        parse(no_max).unwrap_err().message,
        "max_tokens: Field required"
    );
    let mut extra = ok.clone();
    extra["n"] = json!(1);
    assert!(
        parse(extra)
            .unwrap_err()
            .message
            .contains("n: Extra inputs are not permitted")
    );
    let hot = json!({"model": "m", "max_tokens": 1, "temperature": 1.5, "messages": [{"role": "user", "content": "x"}]});
    assert!(parse(hot).unwrap_err().message.contains("temperature"));
    // Tool results must answer the calls of the turn before, all in one turn.
    let ungrouped = json!({"model": "m", "max_tokens": 5, "messages": [
        {"role": "user", "content": "weather and time"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "a", "name": "w", "input": {}}, {"type": "tool_use", "id": "b", "name": "t", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "a", "content": "sun"}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "b", "content": "noon"}]}]});
    let e = parse(ungrouped).unwrap_err();
    assert!(
        e.message.contains(
            "`tool_use` ids were found without `tool_result` blocks immediately after: b"
        ),
        "{}",
        e.message
    );
}

#[test]
fn tools_are_called_as_the_choice_says() {
    let body = |choice: serde_json::Value, text: &str| {
        json!({"model": "m", "max_tokens": 50, "tool_choice": choice,
            "tools": [{"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}},
                      {"name": "get_time", "input_schema": {"type": "object"}}],
            "messages": [{"role": "user", "content": text}]})
    };
    let calls = |choice, text| {
        request::parse(body(choice, text).to_string().as_bytes(), Flavor::Anthropic)
            .unwrap()
            .calls
    };
    assert_eq!(
        calls(json!({"type": "tool", "name": "get_time"}), "x")[0].0,
        "get_time"
    );
    assert_eq!(calls(json!({"type": "any"}), "x").len(), 2);
    assert_eq!(
        calls(
            json!({"type": "any", "disable_parallel_tool_use": true}),
            "x"
        )
        .len(),
        1
    );
    let auto = calls(json!({"type": "auto"}), "call get_weather please");
    assert_eq!(
        auto,
        vec![(
            "get_weather".to_string(),
            json!({"city": "Paris", "days": 1})
        )]
    );
    assert!(calls(json!({"type": "auto"}), "just talk").is_empty());
    assert!(calls(json!({"type": "none"}), "get_weather").is_empty());
}
