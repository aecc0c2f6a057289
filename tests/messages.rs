//! The Anthropic Messages door: Claude Code's and the anthropic SDKs'
//! requests routed like chat, served natively by Claude deployments, with
//! failover before the first content and errors in Anthropic's shape.

mod common;

use common::*;
use serde_json::{Value, json};
use switchboard::mock_upstream::{MockHandle, MockProvider, Mode};

const KEY: &str = "sk-ant-test-0123456789";

async fn anthropic_mock() -> MockHandle {
    mock_with(|o| {
        o.provider = MockProvider::Anthropic;
        o.api_key = Some(KEY.into());
        o.tokens = 4;
    })
    .await
}

fn anthropic(name: &str, m: &MockHandle) -> String {
    format!(
        "\n[[models.deployments]]\nname = \"{name}\"\nprovider = \"anthropic\"\napi_base = \"{}\"\napi_key = \"{KEY}\"\nmodel_id = \"claude-up-{name}\"\n",
        m.base_url()
    )
}

fn ask(stream: bool) -> Value {
    json!({
        "model": "m",
        "max_tokens": 64,
        "stream": stream,
        "system": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "hello"}],
        "thinking": {"type": "adaptive"},
    })
}

async fn messages(gw: &TestGateway, body: Value, key: Option<&str>) -> reqwest::Response {
    let mut r = gw
        .client
        .post(gw.url("/v1/messages?beta=true"))
        .header("anthropic-version", "2023-06-01")
        .header(
            "anthropic-beta",
            "claude-code-20250219,interleaved-thinking-2025-05-14",
        )
        .header("x-claude-code-session-id", "s-1");
    if let Some(k) = key {
        r = r.header("x-api-key", k);
    }
    r.header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

fn sent_body(m: &MockHandle) -> Value {
    serde_json::from_str(&m.stats().last_body.expect("the mock got a body")).unwrap()
}

/// The SSE events of a body: (event name, data as JSON).
async fn events(r: reqwest::Response) -> Vec<(String, Value)> {
    let text = r.text().await.unwrap();
    text.split("\n\n")
        .filter(|f| !f.trim().is_empty())
        .map(|f| {
            let name = f
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or_default()
                .to_string();
            let data = f.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
            (name, serde_json::from_str(data).unwrap())
        })
        .collect()
}

#[tokio::test]
async fn a_messages_request_passes_through_to_anthropic_whole_and_streamed() {
    let a = anthropic_mock().await;
    let gw = gateway(&one_model("", &[anthropic("a", &a)])).await;
    let r = messages(&gw, ask(false), None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-switchboard-deployment"), "a");
    let v = json(r).await;
    assert_eq!(v["type"], "message");
    // Passed through as the upstream sent it, its own model included.
    assert_eq!(v["model"], "claude-up-a");
    let r = messages(&gw, ask(true), None).await;
    assert_eq!(r.status(), 200);
    assert!(header(&r, "content-type").starts_with("text/event-stream"));
    let ev = events(r).await;
    let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(names.last(), Some(&"message_stop"));
    assert!(names.contains(&"content_block_delta"));
    // Counted as traffic like chat, by the door's name.
    let s = gw.deployment("a").await;
    assert_eq!(s["requests"], 2, "{s}");
}

#[tokio::test]
async fn a_529_before_the_first_content_fails_over_invisibly() {
    let (a, b) = (anthropic_mock().await, anthropic_mock().await);
    a.set_mode(fail(529, None, Some("Overloaded")));
    let gw = gateway(&one_model("", &[anthropic("a", &a), anthropic("b", &b)])).await;
    for _ in 0..4 {
        let r = messages(&gw, ask(true), None).await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-switchboard-deployment"), "b");
        let ev = events(r).await;
        assert_eq!(ev[0].0, "message_start");
        assert_eq!(ev.iter().filter(|(n, _)| n == "message_start").count(), 1);
    }
    assert_eq!(gw.deployment("a").await["cooldown_cause"], "rate_limited");
}

#[tokio::test]
async fn an_error_event_before_the_first_content_fails_over() {
    let (a, b) = (anthropic_mock().await, anthropic_mock().await);
    a.set_mode(Mode::ErrorMidStream {
        after_chunks: 0,
        exception: None,
    });
    let gw = gateway(&one_model("", &[anthropic("a", &a), anthropic("b", &b)])).await;
    for _ in 0..3 {
        let r = messages(&gw, ask(true), None).await;
        assert_eq!(header(&r, "x-switchboard-deployment"), "b");
        let ev = events(r).await;
        assert!(ev.iter().all(|(n, _)| n != "error"), "{ev:?}");
        assert_eq!(ev.last().unwrap().0, "message_stop");
    }
}

#[tokio::test]
async fn a_cut_after_content_ends_with_anthropics_error_event() {
    let a = anthropic_mock().await;
    a.set_mode(Mode::ResetMidStream { after_chunks: 5 });
    let gw = gateway(&one_model("", &[anthropic("a", &a)])).await;
    let r = messages(&gw, ask(true), None).await;
    assert_eq!(r.status(), 200);
    let ev = events(r).await;
    let (name, data) = ev.last().unwrap();
    assert_eq!(name, "error", "{ev:?}");
    assert_eq!(data["type"], "error");
    assert_eq!(data["error"]["type"], "api_error");
    assert!(ev.iter().all(|(n, _)| n != "message_stop"));
}

#[tokio::test]
async fn errors_come_in_anthropics_envelope_by_status() {
    let a = anthropic_mock().await;
    let gw = gateway(&one_model(
        "api_keys = [\"client-key-123456\"]",
        &[anthropic("a", &a)],
    ))
    .await;
    let r = messages(&gw, ask(false), None).await;
    assert_eq!(r.status(), 401);
    // Anthropic's SDKs (Claude Code: ten times over three minutes) retry a
    // 401 unless told it is the client's to fix.
    assert_eq!(header(&r, "x-should-retry"), "false");
    let v = json(r).await;
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "authentication_error");
    // x-api-key is a client key on this door.
    let mut unknown = ask(false);
    unknown["model"] = json!("nope");
    let r = messages(&gw, unknown, Some("client-key-123456")).await;
    assert_eq!(r.status(), 404);
    assert_eq!(json(r).await["error"]["type"], "not_found_error");
    let r = messages(&gw, json!({"max_tokens": 5}), Some("client-key-123456")).await;
    assert_eq!(r.status(), 400);
    assert_eq!(json(r).await["error"]["type"], "invalid_request_error");
    a.set_mode(fail(429, Some(30.0), None));
    let r = messages(&gw, ask(false), Some("client-key-123456")).await;
    assert_eq!(r.status(), 429);
    assert!(!header(&r, "retry-after").is_empty());
    assert!(
        header(&r, "x-should-retry").is_empty(),
        "a 429 is worth retrying"
    );
    assert_eq!(json(r).await["error"]["type"], "rate_limit_error");
}

#[tokio::test]
async fn count_tokens_without_a_counting_deployment_is_an_estimate_marked_so() {
    let o = mock().await;
    let gw = gateway(&one_model("", &[deployment("o", &o, "")])).await;
    let r = gw
        .post("/v1/messages/count_tokens?beta=true", json!({"model": "m", "messages": [{"role": "user", "content": "hello there, count me"}]}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-switchboard-estimate"), "true");
    assert!(json(r).await["input_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn an_openai_deployment_serves_the_messages_door_through_one_translation() {
    let o = mock_with(|o| o.tokens = 5).await;
    let gw = gateway(&one_model("", &[deployment("gpt", &o, "")])).await;
    let r = messages(&gw, ask(false), None).await;
    assert_eq!(r.status(), 200);
    let v = json(r).await;
    assert_eq!(v["type"], "message");
    // Translated answers carry the name the client asked for.
    assert_eq!(v["model"], "m");
    assert_eq!(v["content"][0]["type"], "text");
    assert_eq!(v["stop_reason"], "end_turn");
    assert!(v["usage"]["output_tokens"].as_u64().unwrap() > 0);
    // The upstream got chat completions.
    let sent = sent_body(&o);
    assert_eq!(sent["model"], "gpt-model");
    assert_eq!(sent["messages"][0]["role"], "system");
    let r = messages(&gw, ask(true), None).await;
    assert_eq!(r.status(), 200);
    let ev = events(r).await;
    let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names[0], "message_start");
    assert_eq!(names[1], "content_block_start");
    assert_eq!(names.last(), Some(&"message_stop"));
    let text: String = ev
        .iter()
        .filter_map(|(_, d)| d["delta"]["text"].as_str())
        .collect();
    assert!(!text.is_empty());
}

#[tokio::test]
async fn one_claude_model_fails_over_from_anthropic_to_openai_mid_session() {
    let a = anthropic_mock().await;
    let o = mock_with(|o| o.tokens = 5).await;
    a.set_mode(fail(529, None, Some("Overloaded")));
    let gw = gateway(&one_model(
        "",
        &[anthropic("a", &a), deployment("gpt", &o, "")],
    ))
    .await;
    for stream in [true, false] {
        let r = messages(&gw, ask(stream), None).await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-switchboard-deployment"), "gpt");
    }
}

#[tokio::test]
async fn tool_use_goes_through_the_translation_both_ways() {
    let o = mock_with(|o| o.tokens = 5).await;
    let gw = gateway(&one_model("", &[deployment("gpt", &o, "")])).await;
    let tools = json!([{"name": "get_weather", "description": "weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]);
    let mut body = ask(true);
    body["tools"] = tools.clone();
    body["tool_choice"] = json!({"type": "tool", "name": "get_weather"});
    let ev = events(messages(&gw, body, None).await).await;
    let start = ev
        .iter()
        .find(|(n, d)| n == "content_block_start" && d["content_block"]["type"] == "tool_use")
        .expect("a tool_use block");
    let id = start.1["content_block"]["id"].as_str().unwrap().to_string();
    let input: String = ev
        .iter()
        .filter_map(|(_, d)| d["delta"]["partial_json"].as_str())
        .collect();
    assert!(serde_json::from_str::<Value>(&input).unwrap().is_object());
    let delta = ev.iter().find(|(n, _)| n == "message_delta").unwrap();
    assert_eq!(delta.1["delta"]["stop_reason"], "tool_use");
    // The result goes back as a tool message.
    let mut next = ask(false);
    next["tools"] = tools;
    next["messages"] = json!([
        {"role": "user", "content": "weather in Paris?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": id, "name": "get_weather", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": "sunny"}]}
    ]);
    let r = messages(&gw, next, None).await;
    assert_eq!(r.status(), 200);
    let sent = sent_body(&o);
    let roles: Vec<&str> = sent["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["system", "user", "assistant", "tool"]);
}

#[tokio::test]
async fn what_chat_cannot_carry_is_refused_by_name() {
    let o = mock().await;
    let gw = gateway(&one_model("", &[deployment("gpt", &o, "")])).await;
    let mut body = ask(false);
    body["tools"] = json!([{"type": "web_search_20250305", "name": "web_search"}]);
    let r = messages(&gw, body, None).await;
    assert_eq!(r.status(), 400);
    let v = json(r).await;
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("web_search"),
        "{v}"
    );
    assert_eq!(o.stats().requests, 0);
}

#[tokio::test]
async fn a_deployments_max_output_tokens_caps_what_claude_code_asks_for() {
    let o = mock_with(|o| o.tokens = 5).await;
    let gw = gateway(&one_model(
        "",
        &[deployment("gpt", &o, "max_output_tokens = 16384")],
    ))
    .await;
    let mut body = ask(false);
    body["max_tokens"] = json!(32000);
    let r = messages(&gw, body, None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(sent_body(&o)["max_tokens"], 16384);
    // A request under the cap goes as asked.
    let r = messages(&gw, ask(false), None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(sent_body(&o)["max_tokens"], 64);
    // A cap that is no number of tokens is refused by name.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        one_model("", &[deployment("gpt", &o, "max_output_tokens = 0")]),
    )
    .unwrap();
    let err = switchboard::config::Config::load(&path)
        .unwrap_err()
        .to_string();
    assert!(err.contains("max_output_tokens"), "{err}");
}

#[tokio::test]
async fn a_base_url_given_with_v1_still_reaches_the_door() {
    let a = anthropic_mock().await;
    let gw = gateway(&one_model("", &[anthropic("a", &a)])).await;
    let count = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    for (path, body) in [
        ("/v1/v1/messages", ask(false)),
        ("/v1/v1/messages/count_tokens", count),
    ] {
        let r = gw
            .client
            .post(gw.url(path))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
}
