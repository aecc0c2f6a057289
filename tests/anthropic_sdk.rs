//! The official anthropic Python SDK against a real gateway's Messages
//! door: `messages.create` (text, tools, a tool result), `messages.stream`
//! with `get_final_message`, `count_tokens`, the beta client, and its
//! exception classes for the door's errors. Natively to a Claude
//! deployment (the Anthropic mock) and translated to an OpenAI-compatible
//! one. Needs `python3 -m pip install anthropic`; .ci/run installs it.
//! Outside CI a test says so and passes when the SDK is missing.

mod common;

use common::claude::{anthropic, anthropic_mock};
use common::sdk::{python, sdk_available};
use common::*;
use serde_json::{Value, json};

const CLIENT_KEY: &str = "client-key-sdk-123456";

fn server() -> String {
    format!("[server]\napi_keys = [\"{CLIENT_KEY}\"]\n")
}

fn model(name: &str, deployments: &[String]) -> String {
    format!("\n[[models]]\nname = \"{name}\"\n{}", deployments.concat())
}

/// What the script saw, for `model` (and the error cases with `limited`).
async fn run(gw: &TestGateway, model: &str, limited: Option<&str>) -> Value {
    let mut args = vec![gw.url(""), CLIENT_KEY.into(), model.into()];
    args.extend(limited.map(String::from));
    python("anthropic_door.py", args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_anthropic_sdk_works_through_the_door_to_claude() {
    if !sdk_available("anthropic") {
        return;
    }
    let (a, limited) = (anthropic_mock().await, anthropic_mock().await);
    limited.set_mode(fail(
        429,
        Some(30.0),
        Some("Number of request tokens has exceeded your per-minute rate limit"),
    ));
    let gw = gateway(
        &[
            server(),
            model("claude", &[anthropic("a", &a)]),
            model("limited", &[anthropic("l", &limited)]),
        ]
        .concat(),
    )
    .await;
    let seen = run(&gw, "claude", Some("limited")).await;

    let create = &seen["create"];
    assert_eq!(create["type"], "message", "{seen}");
    assert_eq!(create["role"], "assistant");
    assert_eq!(create["blocks"], json!(["text"]));
    assert!(!create["text"].as_str().unwrap().is_empty(), "{seen}");
    assert_eq!(create["stop_reason"], "end_turn");
    // Native: the upstream's answer as it sent it, its model included.
    assert_eq!(create["model"], "claude-sonnet-4-5-20250929");
    assert!(create["input_tokens"].as_u64().unwrap() > 0);
    assert_eq!(create["output_tokens"], 6);

    let tools = &seen["tools"];
    assert_eq!(tools["stop_reason"], "tool_use", "{seen}");
    assert_eq!(tools["name"], "get_weather");
    assert!(tools["input"]["city"].is_string(), "{seen}");
    assert!(tools["id"].as_str().unwrap().starts_with("toolu_"));
    assert_eq!(tools["deployment"], "a");
    // The mock checks that every tool_result answers a tool_use of the turn
    // before: the SDK's own blocks went back through the door intact.
    let turn = &seen["tool_result_turn"];
    assert_eq!(turn["stop_reason"], "end_turn", "{seen}");
    assert_eq!(turn["blocks"], json!(["text"]));

    let stream = &seen["stream"];
    assert_eq!(stream["text"], stream["final_text"], "{seen}");
    assert_eq!(stream["text"], create["text"]);
    assert_eq!(stream["stop_reason"], "end_turn");
    assert_eq!(stream["output_tokens"], 6);
    assert!(stream["input_tokens"].as_u64().unwrap() > 0);
    let st = &seen["stream_tools"];
    assert_eq!(st["stop_reason"], "tool_use", "{seen}");
    assert_eq!(st["name"], "get_weather");
    assert!(st["input"]["city"].is_string(), "{seen}");
    assert!(st["input_json_events"].as_u64().unwrap() > 0, "{seen}");
    assert_eq!(st["first_event"], "message_start");
    assert_eq!(st["last_event"], "message_stop");

    // Counted by the deployment, not estimated.
    let count = &seen["count"];
    assert!(count["input_tokens"].as_u64().unwrap() > 0, "{seen}");
    assert_eq!(count["estimate"], Value::Null, "{seen}");
    assert_eq!(count["deployment"], "a");

    let beta = &seen["beta"];
    assert_eq!(beta["stop_reason"], "end_turn", "{seen}");
    assert_eq!(
        beta["dropped"],
        Value::Null,
        "Anthropic takes every beta: {seen}"
    );
    let last = a.stats();
    assert_eq!(
        last.last_headers.get("anthropic-beta").map(String::as_str),
        Some("interleaved-thinking-2025-05-14,token-efficient-tools-2025-02-19"),
        "{:?}",
        last.last_headers
    );
    assert!(
        last.last_path
            .as_deref()
            .unwrap_or_default()
            .starts_with("/v1/messages"),
        "{:?}",
        last.last_path
    );

    let errors = &seen["errors"];
    let expect = |case: &str, class: &str, status: u16, kind: &str| {
        let e = &errors[case];
        assert_eq!(e["class"], class, "{case}: {seen}");
        assert_eq!(e["status"], status, "{case}: {seen}");
        assert_eq!(
            e["envelope"], "error",
            "{case}: Anthropic's envelope: {seen}"
        );
        assert_eq!(e["type"], kind, "{case}: {seen}");
    };
    expect("unknown_model", "NotFoundError", 404, "not_found_error");
    expect(
        "count_unknown_model",
        "NotFoundError",
        404,
        "not_found_error",
    );
    expect(
        "bad_key",
        "AuthenticationError",
        401,
        "authentication_error",
    );
    expect("rate_limited", "RateLimitError", 429, "rate_limit_error");
    expect(
        "rate_limited_stream",
        "RateLimitError",
        429,
        "rate_limit_error",
    );
    for case in ["rate_limited", "rate_limited_stream"] {
        let wait: u64 = errors[case]["retry_after"]
            .as_str()
            .unwrap_or_else(|| panic!("{case}: no retry-after: {seen}"))
            .parse()
            .unwrap();
        assert!((1..=30).contains(&wait), "{case}: {seen}");
    }
    expect(
        "upstream_400",
        "BadRequestError",
        400,
        "invalid_request_error",
    );
    assert_eq!(
        errors["upstream_400"]["message"], "temperature: range: 0..1",
        "the upstream's own message: {seen}"
    );
    assert!(
        errors["unknown_model"]["message"]
            .as_str()
            .unwrap()
            .contains("no-such-model"),
        "{seen}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_anthropic_sdk_works_through_the_door_to_an_openai_compatible_deployment() {
    if !sdk_available("anthropic") {
        return;
    }
    let o = mock_with(|o| o.tokens = 5).await;
    let gw = gateway(&[server(), model("gpt", &[deployment("o", &o, "")])].concat()).await;
    let seen = run(&gw, "gpt", None).await;

    let create = &seen["create"];
    assert_eq!(create["type"], "message", "{seen}");
    assert_eq!(create["blocks"], json!(["text"]));
    assert!(!create["text"].as_str().unwrap().is_empty(), "{seen}");
    assert_eq!(create["stop_reason"], "end_turn");
    // Translated: named as the client asked.
    assert_eq!(create["model"], "gpt");
    assert_eq!(create["output_tokens"], 5);

    let tools = &seen["tools"];
    assert_eq!(tools["stop_reason"], "tool_use", "{seen}");
    assert_eq!(tools["name"], "get_weather");
    assert!(tools["input"].is_object(), "{seen}");
    assert_eq!(tools["deployment"], "o");
    let turn = &seen["tool_result_turn"];
    assert_eq!(turn["stop_reason"], "end_turn", "{seen}");
    let stream = &seen["stream"];
    assert_eq!(stream["text"], stream["final_text"], "{seen}");
    assert!(!stream["text"].as_str().unwrap().is_empty());
    assert_eq!(stream["stop_reason"], "end_turn");
    assert_eq!(stream["output_tokens"], 5);
    let st = &seen["stream_tools"];
    assert_eq!(st["stop_reason"], "tool_use", "{seen}");
    assert_eq!(st["name"], "get_weather");
    assert!(st["input"].is_object(), "{seen}");
    assert_eq!(st["first_event"], "message_start");
    assert_eq!(st["last_event"], "message_stop");

    // No deployment counts tokens: the gateway's estimate, marked so.
    let count = &seen["count"];
    assert!(count["input_tokens"].as_u64().unwrap() > 0, "{seen}");
    assert_eq!(count["estimate"], "true", "{seen}");

    assert_eq!(seen["beta"]["stop_reason"], "end_turn", "{seen}");
}
