//! Vertex AI end to end on loopback: google-auth against
//! `mock-upstream --provider vertex` (the mock's token endpoint and token
//! checks are faithful), the openai SDK through the gateway to Claude on
//! Vertex and to a model behind Vertex's OpenAI-compatible endpoint, one
//! token for many requests, quota errors cooling down, and one model on
//! Anthropic, Bedrock and Vertex failing over on each one's own signals.
//!
//! Needs `python3 -m pip install openai google-auth requests`; .ci/run
//! installs them.

mod common;

use common::sdk::{python, sdk_available};
use common::*;
use serde_json::{Value, json};
use switchboard::mock_upstream::{MockHandle, MockProvider};

/// A Vertex mock and the service-account file it issues tokens for.
async fn vertex_mock(tokens: u32) -> (MockHandle, tempfile::TempDir, String) {
    let m = mock_with(|o| {
        o.provider = MockProvider::Vertex;
        o.tokens = tokens;
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vertex-sa.json");
    std::fs::write(&path, m.credentials_json()).unwrap();
    (m, dir, path.display().to_string())
}

fn vertex(name: &str, m: &MockHandle, credentials: &str, model_id: &str) -> String {
    format!(
        "\n[[models.deployments]]\nname = \"{name}\"\nprovider = \"vertex\"\nproject = \"mock-project\"\nregion = \"us-east5\"\napi_base = \"{}\"\ncredentials = \"file:{credentials}\"\nmodel_id = \"{model_id}\"\n",
        m.base_url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_auth_refreshes_against_the_mock_and_its_token_opens_raw_predict() {
    if !sdk_available("google.auth") || !sdk_available("requests") {
        return;
    }
    let (m, _dir, credentials) = vertex_mock(8).await;
    let seen = python("vertex_client.py", vec![m.base_url(), credentials]).await;
    assert_eq!(seen["valid"], true, "{seen}");
    assert_eq!(seen["token_prefix"], "ya29.mock-");
    assert_eq!(
        seen["raw_predict"],
        json!({"status": 200, "stop_reason": "max_tokens"})
    );
    assert_eq!(
        seen["wrong_token"],
        json!({"status": 401, "error": "UNAUTHENTICATED"})
    );
    assert_eq!(
        seen["model_in_body"], 400,
        "Vertex names the model in the URL"
    );
    assert_eq!(m.stats().token_requests, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_sdk_through_the_gateway_to_claude_on_vertex_is_translated_both_ways() {
    if !sdk_available("openai") {
        return;
    }
    let (m, _dir, credentials) = vertex_mock(6).await;
    let gw = gateway(&format!(
        "[[models]]\nname = \"claude\"\n{}",
        vertex(
            "vertex-claude",
            &m,
            &credentials,
            "claude-sonnet-4-5@20250929"
        )
    ))
    .await;
    let seen = python(
        "translation_client.py",
        vec![gw.url("/v1"), "claude".into()],
    )
    .await;
    let chat = &seen["chat"];
    assert_eq!(chat["model"], "claude", "{seen}");
    assert_eq!(chat["content"], "The quick brown fox jumps over");
    assert_eq!(chat["deployment"], "vertex-claude");
    assert_eq!(
        seen["short"],
        json!({"content": "The quick", "finish": "length"})
    );
    assert_eq!(seen["stream"]["text"], chat["content"], "{seen}");
    assert_eq!(seen["stream"]["ids"], 1);
    assert_eq!(seen["final"], chat["content"]);
    assert_eq!(seen["tools"]["finish"], "tool_calls");
    assert_eq!(seen["tools"]["names"], json!(["get_weather", "get_time"]));
    assert_eq!(seen["single"], 1, "parallel_tool_calls: false");
    assert_eq!(seen["named"], json!(["get_time"]));
    assert_eq!(seen["followup"], "stop");
    assert_eq!(seen["stream_tools"]["args"], seen["tools"]["args"]);
    assert_eq!(seen["image"], "stop");
    assert_eq!(seen["refused_n"], "n");
    assert_eq!(seen["embeddings"], "endpoint_not_supported");
    let sent: Value = serde_json::from_str(&m.stats().last_body.unwrap()).unwrap();
    assert_eq!(sent["anthropic_version"], "vertex-2023-10-16", "{sent}");
    assert!(sent.get("model").is_none(), "{sent}");
    assert_eq!(
        m.stats().token_requests,
        1,
        "one token for the whole conversation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_models_use_the_openai_endpoint_and_every_deployment_of_an_account_shares_a_token() {
    let (m, _dir, credentials) = vertex_mock(4).await;
    let gw = gateway(&format!(
        "[[models]]\nname = \"gemini\"\n{}\n[[models]]\nname = \"claude\"\n{}",
        vertex("gemini", &m, &credentials, "google/gemini-2.0-flash"),
        vertex("claude", &m, &credentials, "claude-sonnet-4-5@20250929"),
    ))
    .await;
    let gw = std::sync::Arc::new(gw);
    let answers = futures_util::future::join_all((0..20).map(|i| {
        let gw = gw.clone();
        async move {
            let model = if i % 2 == 0 { "gemini" } else { "claude" };
            gw.chat(model).await.status().as_u16()
        }
    }))
    .await;
    assert!(answers.iter().all(|s| *s == 200), "{answers:?}");
    let r = gw
        .post(
            "/v1/chat/completions",
            json!({"model": "gemini", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    let frames = sse_data(r).await;
    assert_eq!(frames.last().unwrap(), "[DONE]");
    let sent: Value = serde_json::from_str(&m.stats().last_body.unwrap()).unwrap();
    assert_eq!(
        sent["model"], "google/gemini-2.0-flash",
        "passed through to the OpenAI-compatible endpoint"
    );
    assert_eq!(
        m.stats().token_requests,
        1,
        "21 requests over two deployments of one account, one token"
    );
    let state = gw.state().await.to_string();
    assert!(!state.contains("PRIVATE KEY"), "{state}");
    assert!(!state.contains("ya29."), "{state}");
}

#[tokio::test]
async fn one_model_on_anthropic_bedrock_and_vertex_fails_over_on_each_ones_own_signals() {
    let anthropic = mock_with(|o| {
        o.provider = MockProvider::Anthropic;
        o.api_key = Some("sk-ant-test-0123456789".into());
    })
    .await;
    let bedrock = mock_with(|o| {
        o.provider = MockProvider::Bedrock;
        o.aws_access_key_id = Some("AKIDTEST".into());
        o.aws_secret_access_key = Some("bedrock-secret".into());
    })
    .await;
    let (vertex_m, _dir, credentials) = vertex_mock(4).await;
    let gw = gateway(&format!(
        "[[models]]\nname = \"m\"\n\n[[models.deployments]]\nname = \"anthropic\"\nprovider = \"anthropic\"\napi_base = \"{}\"\napi_key = \"sk-ant-test-0123456789\"\nmodel_id = \"claude-sonnet-4-5\"\n\n[[models.deployments]]\nname = \"bedrock\"\nprovider = \"bedrock\"\nregion = \"us-east-1\"\napi_base = \"{}\"\naws_access_key_id = \"AKIDTEST\"\naws_secret_access_key = \"bedrock-secret\"\nmodel_id = \"anthropic.claude-sonnet-4-5-20250929-v1:0\"\n{}",
        anthropic.base_url(),
        bedrock.base_url(),
        vertex("vertex", &vertex_m, &credentials, "claude-sonnet-4-5@20250929"),
    ))
    .await;
    let served = |gw: &TestGateway| {
        let gw = gw.url("");
        async move {
            let client = reqwest::Client::new();
            let mut by = std::collections::BTreeMap::<String, u32>::new();
            for _ in 0..9 {
                let r = client
                    .post(format!("{gw}/v1/chat/completions"))
                    .header("content-type", "application/json")
                    .body(r#"{"model": "m", "messages": [{"role": "user", "content": "hi"}]}"#)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                *by.entry(header(&r, "x-switchboard-deployment"))
                    .or_default() += 1;
            }
            by
        }
    };
    let all = served(&gw).await;
    assert_eq!(all.len(), 3, "all three take traffic: {all:?}");

    anthropic.set_mode(fail(429, Some(30.0), None));
    let two = served(&gw).await;
    assert!(!two.contains_key("anthropic"), "{two:?}");
    assert_eq!(
        gw.deployment("anthropic").await["cooldown_cause"],
        "rate_limited"
    );

    bedrock.set_mode(fail(429, None, None));
    let one = served(&gw).await;
    assert_eq!(one.keys().collect::<Vec<_>>(), ["vertex"], "{one:?}");
    assert_eq!(
        gw.deployment("bedrock").await["cooldown_cause"],
        "rate_limited"
    );

    vertex_m.set_mode(fail(429, None, None));
    let r = gw.chat("m").await;
    assert_eq!(r.status(), 429, "all three cooling down");
    let d = gw.deployment("vertex").await;
    assert_eq!(
        d["cooldown_cause"], "rate_limited",
        "RESOURCE_EXHAUSTED: {d}"
    );
}

/// The issue's "done when": one model on Anthropic, Bedrock (SigV4 and an
/// API key) and Vertex answers the openai SDK, streams and tool calls
/// included, whichever deployment each request reaches. What Bedrock
/// cannot honour (one tool call per turn, an image URL) goes to the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_model_on_anthropic_bedrock_both_ways_and_vertex_answers_the_openai_sdk() {
    if !sdk_available("openai") {
        return;
    }
    let anthropic = mock_with(|o| {
        o.provider = MockProvider::Anthropic;
        o.api_key = Some("sk-ant-test-0123456789".into());
        o.tokens = 6;
    })
    .await;
    let bedrock = mock_with(|o| {
        o.provider = MockProvider::Bedrock;
        o.aws_access_key_id = Some("AKIDTEST".into());
        o.aws_secret_access_key = Some("bedrock-secret".into());
        o.api_key = Some("bedrock-api-key-0123456789".into());
        o.tokens = 6;
    })
    .await;
    let (vertex_m, _dir, credentials) = vertex_mock(6).await;
    let bedrock_d = |name: &str, auth: &str| {
        format!(
            "\n[[models.deployments]]\nname = \"{name}\"\nprovider = \"bedrock\"\nregion = \"us-east-1\"\napi_base = \"{}\"\n{auth}\nmodel_id = \"anthropic.claude-sonnet-4-5-20250929-v1:0\"\n",
            bedrock.base_url()
        )
    };
    let gw = gateway(&format!(
        "[[models]]\nname = \"claude\"\n\n[[models.deployments]]\nname = \"anthropic\"\nprovider = \"anthropic\"\napi_base = \"{}\"\napi_key = \"sk-ant-test-0123456789\"\nmodel_id = \"claude-sonnet-4-5\"\n{}{}{}",
        anthropic.base_url(),
        bedrock_d(
            "bedrock-sigv4",
            "aws_access_key_id = \"AKIDTEST\"\naws_secret_access_key = \"bedrock-secret\""
        ),
        bedrock_d("bedrock-api-key", "api_key = \"bedrock-api-key-0123456789\""),
        vertex("vertex", &vertex_m, &credentials, "claude-sonnet-4-5@20250929"),
    ))
    .await;
    let seen = python(
        "translation_client.py",
        vec![gw.url("/v1"), "claude".into()],
    )
    .await;
    assert_eq!(seen["chat"]["model"], "claude", "{seen}");
    assert_eq!(seen["stream"]["text"], seen["chat"]["content"], "{seen}");
    assert_eq!(seen["final"], seen["chat"]["content"]);
    assert_eq!(seen["tools"]["finish"], "tool_calls", "{seen}");
    assert_eq!(seen["tools"]["names"], json!(["get_weather", "get_time"]));
    assert_eq!(seen["stream_tools"]["args"], seen["tools"]["args"]);
    assert_eq!(
        seen["single"], 1,
        "refused by Bedrock, answered by the others"
    );
    assert_eq!(seen["image"], "stop", "the URL image too");
    assert_eq!(seen["followup"], "stop");
    let served: Vec<u64> = [&anthropic, &bedrock, &vertex_m]
        .iter()
        .map(|m| m.stats().ok)
        .collect();
    assert!(
        served.iter().all(|n| *n > 0),
        "every provider answered: {served:?}"
    );
    for name in ["bedrock-sigv4", "bedrock-api-key"] {
        let d = gw.deployment(name).await;
        assert!(d["requests"].as_u64().unwrap() > 0, "{d}");
        assert_eq!(d["failures"], 0, "{d}");
    }
}

/// A service account the token endpoint refuses: the attempt fails as an
/// auth failure naming the file, not as an unreachable upstream.
#[tokio::test]
async fn a_refused_service_account_is_said_to_be_an_auth_failure_naming_the_file() {
    let (m, dir, _) = vertex_mock(4).await;
    let mut sa: Value = serde_json::from_str(&m.credentials_json()).unwrap();
    sa["client_email"] = json!("someone-else@mock-project.iam.gserviceaccount.com");
    let path = dir.path().join("other-sa.json");
    std::fs::write(&path, sa.to_string()).unwrap();
    let gw = gateway(&one_model(
        "",
        &[vertex(
            "v",
            &m,
            &path.display().to_string(),
            "claude-sonnet-4-5",
        )],
    ))
    .await;
    let r = gw.chat("m").await;
    assert_eq!(r.status(), 502);
    let body = json(r).await.to_string();
    assert!(body.contains("could not authenticate"), "{body}");
    let r = gw
        .post("/admin/models/m/deployments/v/test", json!({}))
        .await;
    let v = json(r).await;
    let e = v["error"].as_str().unwrap();
    assert!(
        e.starts_with("could not authenticate")
            && e.contains("other-sa.json")
            && e.contains("invalid_grant"),
        "{v}"
    );
    assert!(!e.contains("PRIVATE KEY"), "{v}");
}

/// A parameter no deployment of the model can honour: refused by the
/// gateway itself, naming no deployment, in words about the model.
#[tokio::test]
async fn what_no_deployment_can_honour_is_refused_without_naming_one() {
    let bedrock = mock_with(|o| {
        o.provider = MockProvider::Bedrock;
        o.api_key = Some("bedrock-api-key-0123456789".into());
    })
    .await;
    let (vertex_m, _dir, credentials) = vertex_mock(4).await;
    let gw = gateway(&format!(
        "[[models]]\nname = \"m\"\n\n[[models.deployments]]\nname = \"bedrock\"\nprovider = \"bedrock\"\nregion = \"us-east-1\"\napi_base = \"{}\"\napi_key = \"bedrock-api-key-0123456789\"\nmodel_id = \"anthropic.claude-v2:1\"\n{}",
        bedrock.base_url(),
        vertex("vertex", &vertex_m, &credentials, "claude-sonnet-4-5"),
    ))
    .await;
    for _ in 0..2 {
        let r = gw
            .post(
                "/v1/chat/completions",
                json!({"model": "m", "n": 2, "messages": [{"role": "user", "content": "hi"}]}),
            )
            .await;
        assert_eq!(r.status(), 400);
        assert!(r.headers().get("x-switchboard-deployment").is_none());
        let v = json(r).await;
        assert_eq!(v["error"]["param"], "n", "{v}");
        assert_eq!(
            v["error"]["message"], "`n` = 2: none of the deployments of `m` can honour it",
            "{v}"
        );
    }
    assert_eq!(bedrock.stats().requests + vertex_m.stats().requests, 0);
}
