//! The providers' official SDKs against `mock-upstream --provider ...`
//! (proof that the mocks are faithful), and the openai SDK through the
//! gateway to deployments that speak Anthropic's and Azure's APIs (proof of
//! the translation, as a user sees it).
//!
//! Needs `python3 -m pip install openai anthropic`; .ci/run installs them.
//! Outside CI a test says so and passes when an SDK is missing; in CI
//! (CI=true) it fails.

mod common;

use common::sdk::{python, sdk_available};
use common::*;
use serde_json::Value;
use switchboard::mock_upstream::{MockHandle, MockProvider};

async fn provider_mock(
    provider: MockProvider,
    key: &str,
    tune: impl FnOnce(&mut switchboard::mock_upstream::MockOptions),
) -> MockHandle {
    mock_with(|o| {
        o.provider = provider;
        o.api_key = Some(key.into());
        tune(o);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_anthropic_sdk_accepts_the_anthropic_mock() {
    if !sdk_available("anthropic") {
        return;
    }
    let m = provider_mock(MockProvider::Anthropic, "sk-ant-test-0123456789", |o| {
        o.cache_read_tokens = 3
    })
    .await;
    let seen = python(
        "anthropic_client.py",
        vec![m.base_url(), "sk-ant-test-0123456789".into()],
    )
    .await;
    assert_eq!(seen["message"]["stop_reason"], "end_turn", "{seen}");
    assert!(
        seen["message"]["text"]
            .as_str()
            .unwrap()
            .starts_with("The quick"),
        "{seen}"
    );
    assert_eq!(seen["message"]["cache_read"], 3);
    assert_eq!(seen["message"]["model"], "claude-sonnet-4-5");
    assert_eq!(
        seen["stream"]["text"], seen["stream"]["final_text"],
        "{seen}"
    );
    assert_eq!(seen["stream"]["text"], seen["message"]["text"]);
    assert_eq!(seen["tool_use"]["stop_reason"], "tool_use");
    assert_eq!(
        seen["tool_use"]["names"],
        serde_json::json!(["get_weather", "get_time"])
    );
    assert_eq!(
        seen["tool_use"]["input"],
        serde_json::json!({"city": "Paris"})
    );
    assert_eq!(seen["after_tools"], "end_turn");
    assert_eq!(
        seen["stream_tool_input"],
        serde_json::json!([{"city": "Paris"}]),
        "partial JSON assembled by the SDK"
    );
    assert_eq!(
        seen["ungrouped"], "invalid_request_error",
        "a tool result missing from its turn is refused"
    );
    assert_eq!(seen["wrong_key"], 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_azure_client_of_the_openai_sdk_accepts_the_azure_mock() {
    if !sdk_available("openai") {
        return;
    }
    let m = provider_mock(MockProvider::Azure, "azure-key-0123456789", |_| {}).await;
    let seen = python(
        "azure_client.py",
        vec![m.base_url(), "azure-key-0123456789".into()],
    )
    .await;
    assert!(
        !seen["chat"]["content"].as_str().unwrap().is_empty(),
        "{seen}"
    );
    assert_eq!(seen["chat"]["filtered"], true);
    assert!(!seen["stream"]["text"].as_str().unwrap().is_empty());
    assert_eq!(
        seen["stream"]["empty_choice_chunks"], 1,
        "Azure's prompt-filter chunk: {seen}"
    );
    assert_eq!(seen["embeddings"], 8);
    assert_eq!(seen["wrong_key"], 401);
    let last = m.stats().last_body.unwrap();
    assert!(last.contains("gpt-4o-east"), "{last}");
}

/// A gateway with `claude` on an Anthropic mock, `azure` on an Azure
/// classic mock, `mixed` on both and an OpenAI mock.
async fn translating_gateway(
    anthropic: &MockHandle,
    azure: &MockHandle,
    openai: &MockHandle,
) -> TestGateway {
    let claude = format!(
        "[[models.deployments]]\nname = \"direct\"\nprovider = \"anthropic\"\napi_base = \"{}\"\napi_key = \"sk-ant-test-0123456789\"\nmodel_id = \"claude-sonnet-4-5\"\n",
        anthropic.base_url()
    );
    let azure_d = format!(
        "[[models.deployments]]\nname = \"eastus\"\nprovider = \"azure\"\napi_base = \"{}\"\napi_version = \"2024-10-21\"\napi_key = \"azure-key-0123456789\"\nmodel_id = \"gpt-4o-east\"\n",
        azure.base_url()
    );
    let openai_d = format!(
        "[[models.deployments]]\nname = \"openai\"\napi_base = \"{}\"\nmodel_id = \"gpt-4o\"\n",
        openai.base_url()
    );
    gateway(&format!(
        "[[models]]\nname = \"claude\"\n{claude}\n[[models]]\nname = \"azure\"\n{azure_d}\n[[models]]\nname = \"mixed\"\n{}\n{}\n{}",
        claude.replace("\"direct\"", "\"claude-direct\""),
        azure_d.replace("\"eastus\"", "\"azure-eastus\""),
        openai_d
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_sdk_through_the_gateway_to_anthropic_is_translated_both_ways() {
    if !sdk_available("openai") {
        return;
    }
    let anthropic = provider_mock(MockProvider::Anthropic, "sk-ant-test-0123456789", |o| {
        o.cache_read_tokens = 7;
        o.tokens = 6;
    })
    .await;
    let azure = provider_mock(MockProvider::Azure, "azure-key-0123456789", |_| {}).await;
    let openai = mock().await;
    let gw = translating_gateway(&anthropic, &azure, &openai).await;
    let seen = python(
        "translation_client.py",
        vec![gw.url("/v1"), "claude".into()],
    )
    .await;
    let chat = &seen["chat"];
    assert_eq!(chat["object"], "chat.completion", "{seen}");
    assert!(chat["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(chat["model"], "claude", "the name the client asked for");
    assert_eq!(chat["content"], "The quick brown fox jumps over");
    assert_eq!(chat["finish"], "stop");
    assert_eq!(chat["cached"], 7);
    assert!(
        chat["prompt_tokens"].as_u64().unwrap() > 7,
        "prompt tokens include cached input"
    );
    assert_eq!(chat["deployment"], "direct");
    assert_eq!(
        seen["short"],
        serde_json::json!({"content": "The quick", "finish": "length"})
    );
    assert_eq!(
        seen["stopped"],
        serde_json::json!({"content": "The quick brown", "finish": "stop"})
    );
    let stream = &seen["stream"];
    assert_eq!(stream["text"], chat["content"], "{seen}");
    assert_eq!(stream["usage_chunks"], 0, "no usage chunk unless asked");
    assert_eq!(stream["ids"], 1, "one id for every chunk");
    assert_eq!(stream["models"], serde_json::json!(["claude"]));
    assert_eq!(
        stream["roles"],
        serde_json::json!(["assistant"]),
        "the role once, first"
    );
    assert!(seen["stream_usage"].as_u64().unwrap() > 0);
    assert_eq!(
        seen["final"], chat["content"],
        "chat.completions.stream(...).get_final_completion()"
    );
    let tools = &seen["tools"];
    assert_eq!(tools["finish"], "tool_calls", "{seen}");
    assert_eq!(
        tools["names"],
        serde_json::json!(["get_weather", "get_time"])
    );
    assert_eq!(tools["args"][0], serde_json::json!({"city": "Paris"}));
    assert_eq!(seen["single"], 1, "parallel_tool_calls: false");
    assert_eq!(seen["named"], serde_json::json!(["get_time"]));
    assert_eq!(
        seen["followup"], "stop",
        "tool results grouped into one turn were accepted"
    );
    assert_eq!(seen["stream_tools"]["names"], tools["names"]);
    assert_eq!(
        seen["stream_tools"]["args"], tools["args"],
        "streamed arguments concatenate to the JSON"
    );
    assert_eq!(seen["stream_tools"]["finish"], "tool_calls");
    assert_eq!(seen["image"], "stop");
    assert_eq!(seen["refused_n"], "n");
    assert_eq!(seen["refused_logprobs"], "logprobs");
    assert_eq!(seen["refused_presence_penalty"], "presence_penalty");
    assert_eq!(seen["embeddings"], "endpoint_not_supported");
    // What went upstream: the client's key never, the gateway's own.
    let sent: Value = serde_json::from_str(&anthropic.stats().last_body.unwrap()).unwrap();
    assert_eq!(sent["model"], "claude-sonnet-4-5");
    assert_eq!(sent["max_tokens"], 4096, "the documented default");
    assert_eq!(
        sent["messages"][0]["content"][1]["source"]["type"], "base64",
        "{sent}"
    );
    assert_eq!(
        sent["messages"][0]["content"][2]["source"]["url"], "https://example.com/cat.png",
        "a URL, not downloaded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_sdk_through_the_gateway_to_azure_classic_streams_clean() {
    if !sdk_available("openai") {
        return;
    }
    let anthropic = provider_mock(MockProvider::Anthropic, "sk-ant-test-0123456789", |_| {}).await;
    let azure = provider_mock(MockProvider::Azure, "azure-key-0123456789", |o| {
        o.tokens = 4
    })
    .await;
    let openai = mock().await;
    let gw = translating_gateway(&anthropic, &azure, &openai).await;
    // Plain HTTP first: the body goes through, the path is Azure's.
    let r = gw.chat("azure").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-switchboard-deployment"), "eastus");
    let body = json(r).await;
    assert!(
        body["prompt_filter_results"].is_array(),
        "Azure's answer passes through: {body}"
    );
    let stream = gw
        .post(
            "/v1/chat/completions",
            serde_json::json!({"model": "azure", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(stream.status(), 200);
    let frames = sse_data(stream).await;
    assert!(frames[0].contains("prompt_filter_results"), "{frames:?}");
    assert_eq!(frames.last().unwrap(), "[DONE]");
    assert!(
        !frames.iter().any(|f| f.contains("\"usage\"")),
        "the gateway's own usage request stripped: {frames:?}"
    );
    assert!(azure.stats().ok >= 2);
}

/// The "done when": one model on an OpenAI deployment, an Azure
/// classic one and an Anthropic one answers the openai SDK, streams and
/// tool calls included, whichever deployment each request reaches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_model_on_openai_azure_and_anthropic_answers_the_openai_sdk() {
    if !sdk_available("openai") {
        return;
    }
    let anthropic = provider_mock(MockProvider::Anthropic, "sk-ant-test-0123456789", |o| {
        o.tokens = 6
    })
    .await;
    let azure = provider_mock(MockProvider::Azure, "azure-key-0123456789", |o| {
        o.tokens = 6
    })
    .await;
    let openai = mock_with(|o| o.tokens = 6).await;
    let gw = translating_gateway(&anthropic, &azure, &openai).await;
    let seen = python("translation_client.py", vec![gw.url("/v1"), "mixed".into()]).await;
    assert_eq!(seen["chat"]["model"], "mixed", "{seen}");
    assert_eq!(seen["stream"]["text"], seen["chat"]["content"], "{seen}");
    assert_eq!(seen["final"], seen["chat"]["content"]);
    assert_eq!(seen["tools"]["finish"], "tool_calls", "{seen}");
    assert_eq!(
        seen["tools"]["names"],
        serde_json::json!(["get_weather", "get_time"])
    );
    assert_eq!(
        seen["tools"]["args"][0],
        serde_json::json!({"city": "Paris"})
    );
    assert_eq!(seen["named"], serde_json::json!(["get_time"]));
    assert_eq!(seen["single"], 1);
    assert_eq!(seen["followup"], "stop");
    assert_eq!(seen["stream_tools"]["args"], seen["tools"]["args"]);
    assert_eq!(seen["stream_tools"]["finish"], "tool_calls");
    // n = 2 and embeddings are the OpenAI deployments' to serve.
    assert!(seen["refused_n"].is_null(), "{seen}");
    assert!(seen["embeddings"].is_null(), "{seen}");
    for (name, m) in [
        ("anthropic", &anthropic),
        ("azure", &azure),
        ("openai", &openai),
    ] {
        assert!(
            m.stats().ok >= 3,
            "{name} served its share: {:?}",
            m.stats()
        );
    }
}
