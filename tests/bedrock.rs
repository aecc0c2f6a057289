//! Bedrock end to end on loopback: boto3's bedrock-runtime client against
//! `mock-upstream --provider bedrock` (the mock is faithful: signatures,
//! answers, event streams, errors), and the openai SDK through the gateway
//! to Bedrock deployments signed with SigV4 or a Bedrock API key (every
//! translation rule, streams and tool calls), with throttling, wrong
//! signatures and failover as the routing rules say.
//!
//! Needs `python3 -m pip install openai boto3`; .ci/run installs them.

mod common;

use common::sdk::{python, sdk_available};
use common::*;
use serde_json::{Value, json};
use switchboard::mock_upstream::{MockHandle, MockProvider, Mode};

const KEY_ID: &str = "AKIDSWITCHBOARDTEST";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYzSWITCH";
const API_KEY: &str = "bedrock-api-key-0123456789";
const MODEL_ID: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";

async fn bedrock_mock(
    tune: impl FnOnce(&mut switchboard::mock_upstream::MockOptions),
) -> MockHandle {
    mock_with(|o| {
        o.provider = MockProvider::Bedrock;
        o.aws_access_key_id = Some(KEY_ID.into());
        o.aws_secret_access_key = Some(SECRET.into());
        o.api_key = Some(API_KEY.into());
        tune(o);
    })
    .await
}

/// A Bedrock deployment signing with `secret` (SigV4), or sending the API key.
fn bedrock(name: &str, m: &MockHandle, auth: Auth) -> String {
    let auth = match auth {
        Auth::SigV4(secret) => {
            format!("aws_access_key_id = \"{KEY_ID}\"\naws_secret_access_key = \"{secret}\"\n")
        }
        Auth::ApiKey => format!("api_key = \"{API_KEY}\"\n"),
    };
    format!(
        "\n[[models.deployments]]\nname = \"{name}\"\nprovider = \"bedrock\"\nregion = \"us-east-1\"\napi_base = \"{}\"\n{auth}model_id = \"{MODEL_ID}\"\n",
        m.base_url()
    )
}

enum Auth {
    SigV4(&'static str),
    ApiKey,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_accepts_the_bedrock_mock() {
    if !sdk_available("boto3") {
        return;
    }
    let m = bedrock_mock(|o| o.tokens = 8).await;
    let seen = python(
        "bedrock_client.py",
        vec![m.base_url(), KEY_ID.into(), SECRET.into(), API_KEY.into()],
    )
    .await;
    assert_eq!(seen["converse"]["stop"], "max_tokens", "{seen}");
    assert_eq!(seen["converse"]["text"], "The quick brown fox jumps");
    assert_eq!(seen["converse"]["usage"]["outputTokens"], 5);
    assert_eq!(seen["tool_use"]["stop"], "tool_use");
    assert_eq!(seen["tool_use"]["names"], json!(["get_weather"]));
    assert_eq!(seen["tool_use"]["input"], json!({"city": "Paris"}));
    assert_eq!(seen["after_tools"], "end_turn");
    assert_eq!(seen["stream"]["first"], "messageStart");
    assert_eq!(seen["stream"]["last"], "metadata");
    assert_eq!(
        seen["stream"]["tool_input"],
        json!({"city": "Paris"}),
        "tool input fragments from event-stream frames boto3 decoded"
    );
    assert_eq!(
        seen["wrong_secret"],
        json!(["InvalidSignatureException", 403])
    );
    assert_eq!(seen["validation"], "ValidationException");
    assert_eq!(seen["api_key"], "end_turn", "a Bedrock API key as Bearer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_sdk_through_the_gateway_to_bedrock_is_translated_both_ways() {
    if !sdk_available("openai") {
        return;
    }
    let m = bedrock_mock(|o| {
        o.tokens = 6;
        o.cache_read_tokens = 7;
    })
    .await;
    let gw = gateway(&format!(
        "[[models]]\nname = \"claude\"\n{}",
        bedrock("bedrock-east", &m, Auth::SigV4(SECRET))
    ))
    .await;
    let seen = python(
        "translation_client.py",
        vec![gw.url("/v1"), "claude".into(), "converse".into()],
    )
    .await;
    let chat = &seen["chat"];
    assert_eq!(chat["object"], "chat.completion", "{seen}");
    assert!(chat["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(chat["model"], "claude");
    assert_eq!(chat["content"], "The quick brown fox jumps over");
    assert_eq!(chat["finish"], "stop");
    assert_eq!(chat["cached"], 7);
    assert!(chat["prompt_tokens"].as_u64().unwrap() > 7);
    assert_eq!(chat["deployment"], "bedrock-east");
    assert_eq!(
        seen["short"],
        json!({"content": "The quick", "finish": "length"})
    );
    assert_eq!(
        seen["stopped"],
        json!({"content": "The quick brown", "finish": "stop"})
    );
    let stream = &seen["stream"];
    assert_eq!(stream["text"], chat["content"], "{seen}");
    assert_eq!(stream["usage_chunks"], 0);
    assert_eq!(stream["ids"], 1);
    assert_eq!(stream["roles"], json!(["assistant"]));
    assert!(seen["stream_usage"].as_u64().unwrap() > 0);
    assert_eq!(seen["final"], chat["content"]);
    let tools = &seen["tools"];
    assert_eq!(tools["finish"], "tool_calls", "{seen}");
    assert_eq!(tools["names"], json!(["get_weather", "get_time"]));
    assert_eq!(tools["args"][0], json!({"city": "Paris"}));
    assert_eq!(seen["single"], "refused: parallel_tool_calls");
    assert_eq!(seen["named"], json!(["get_time"]));
    assert_eq!(seen["followup"], "stop", "tool results in one turn");
    assert_eq!(seen["stream_tools"]["names"], tools["names"]);
    assert_eq!(seen["stream_tools"]["args"], tools["args"]);
    assert_eq!(seen["stream_tools"]["finish"], "tool_calls");
    assert_eq!(seen["image"], "stop");
    assert_eq!(
        seen["refused_image_url"],
        "messages[0].content[0].image_url.url"
    );
    assert_eq!(seen["refused_n"], "n");
    assert_eq!(seen["refused_logprobs"], "logprobs");
    assert_eq!(seen["refused_presence_penalty"], "presence_penalty");
    assert_eq!(seen["embeddings"], "endpoint_not_supported");
    // What went upstream: Converse, signed (the mock checked), no model in the body.
    let sent: Value = serde_json::from_str(&m.stats().last_body.unwrap()).unwrap();
    assert!(sent.get("model").is_none(), "{sent}");
    assert_eq!(
        sent["messages"][0]["content"][1]["image"]["format"], "png",
        "{sent}"
    );
}

#[tokio::test]
async fn an_api_key_deployment_answers_and_a_wrong_signature_fails_over_without_the_secret() {
    let m = bedrock_mock(|_| {}).await;
    let gw = gateway(&one_model(
        "",
        &[
            bedrock("signed-wrong", &m, Auth::SigV4("not-the-secret-xyz")),
            bedrock("api-key", &m, Auth::ApiKey),
        ],
    ))
    .await;
    for _ in 0..4 {
        let r = gw.chat("m").await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-switchboard-deployment"), "api-key");
    }
    let wrong = gw.deployment("signed-wrong").await;
    assert!(wrong["failures"].as_u64().unwrap() >= 1, "{wrong}");
    let state = gw.state().await.to_string();
    assert!(!state.contains("not-the-secret-xyz"), "{state}");
    assert!(!state.contains(API_KEY), "{state}");
}

#[tokio::test]
async fn throttling_cools_bedrock_down_over_http_and_inside_the_stream() {
    let throttled = bedrock_mock(|_| {}).await;
    let other = mock().await;
    let gw = gateway(&one_model(
        "",
        &[
            bedrock("bedrock", &throttled, Auth::SigV4(SECRET)),
            deployment("openai", &other, ""),
        ],
    ))
    .await;
    // Over HTTP: 429 ThrottlingException.
    throttled.set_mode(fail(429, None, None));
    for _ in 0..3 {
        assert_eq!(gw.chat("m").await.status(), 200);
    }
    let d = gw.deployment("bedrock").await;
    assert_eq!(d["cooldown_cause"], "rate_limited", "{d}");

    // In the stream, before anything reached the client: a throttlingException.
    let throttled = bedrock_mock(|_| {}).await;
    let gw = gateway(&one_model(
        "",
        &[
            bedrock("bedrock", &throttled, Auth::SigV4(SECRET)),
            deployment("openai", &other, ""),
        ],
    ))
    .await;
    throttled.set_mode(Mode::ErrorMidStream {
        after_chunks: 0,
        exception: Some("throttlingException".into()),
    });
    for _ in 0..3 {
        let r = gw
            .post(
                "/v1/chat/completions",
                json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
            )
            .await;
        assert_eq!(r.status(), 200);
        let frames = sse_data(r).await;
        assert_eq!(frames.last().unwrap(), "[DONE]", "{frames:?}");
        assert!(!frames.iter().any(|f| f.contains("error")), "{frames:?}");
    }
    let d = gw.deployment("bedrock").await;
    assert_eq!(d["cooldown_cause"], "rate_limited", "{d}");

    // After the first byte: the SSE error event of the routing rules.
    throttled.set_mode(Mode::ErrorMidStream {
        after_chunks: 3,
        exception: None,
    });
    let gw = gateway(&one_model(
        "",
        &[bedrock("bedrock", &throttled, Auth::SigV4(SECRET))],
    ))
    .await;
    let r = gw
        .post(
            "/v1/chat/completions",
            json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(header(&r, "content-type"), "text/event-stream");
    let frames = sse_data(r).await;
    assert!(
        frames
            .iter()
            .any(|f| f.contains("modelStreamErrorException")),
        "{frames:?}"
    );
    assert_eq!(
        gw.deployment("bedrock").await["state"],
        "healthy",
        "one failure"
    );

    // Throttled after the first byte: the client's stream ends with the
    // error, and the deployment cools down as for a 429.
    throttled.set_mode(Mode::ErrorMidStream {
        after_chunks: 3,
        exception: Some("throttlingException".into()),
    });
    let r = gw
        .post(
            "/v1/chat/completions",
            json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    let frames = sse_data(r).await;
    assert!(
        frames.iter().any(|f| f.contains("throttlingException")),
        "{frames:?}"
    );
    let d = gw.deployment("bedrock").await;
    assert_eq!(d["cooldown_cause"], "rate_limited", "{d}");
}
