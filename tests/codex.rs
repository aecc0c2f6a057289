//! Codex CLI itself (npm `@openai/codex`) through the gateway's Responses
//! door, offline: a task answered, a tool turn run in its sandbox, one
//! model on an OpenAI and an Azure mock surviving 429, 500 and a stream cut
//! before its first output, and runs bridged to a Chat-Completions-only
//! server and to Anthropic.

mod common;

use common::agents::{agent, codex_blocking};
use common::*;
use switchboard::mock_upstream::{MockEndpoint, MockHandle, MockProvider, Mode};

async fn azure_mock() -> MockHandle {
    mock_with(|o| {
        o.provider = MockProvider::Azure;
        o.tokens = 6;
    })
    .await
}

/// An Azure deployment on its v1 API (`/openai/v1`, no api_version).
fn azure(name: &str, m: &MockHandle) -> String {
    format!(
        "\n[[models.deployments]]\nname = \"{name}\"\nprovider = \"azure\"\napi_base = \"{}/openai/v1\"\napi_key = \"azure-key-0123456789\"\nmodel_id = \"gpt-5-codex\"\n",
        m.base_url().trim_end_matches("/v1")
    )
}

fn openai(name: &str, m: &MockHandle) -> String {
    format!(
        "\n[[models.deployments]]\nname = \"{name}\"\napi_base = \"{}\"\napi_key = \"sk-test-{name}-123456\"\nmodel_id = \"gpt-5-codex\"\n",
        m.base_url()
    )
}

async fn codex_gateway(deployments: &[String]) -> TestGateway {
    gateway(&format!(
        "[server]\napi_keys = [\"sk-client-key-123456\"]\n\n[[models]]\nname = \"gpt-5-codex\"\n{}",
        deployments.concat()
    ))
    .await
}

async fn run(gw: &TestGateway, prompt: &str) -> common::agents::Run {
    run_as(gw, "gpt-5-codex", prompt).await
}

async fn run_as(gw: &TestGateway, model: &str, prompt: &str) -> common::agents::Run {
    let bin = agent("codex", "@openai/codex").unwrap();
    let url = gw.url("/v1");
    let (model, prompt) = (model.to_string(), prompt.to_string());
    tokio::task::spawn_blocking(move || codex_blocking(&bin, &url, &model, &prompt))
        .await
        .unwrap()
}

#[tokio::test]
async fn codex_completes_a_task_and_a_tool_turn_through_the_gateway() {
    if agent("codex", "@openai/codex").is_none() {
        return;
    }
    let o = mock_with(|o| o.tokens = 6).await;
    let gw = codex_gateway(&[openai("openai", &o)]).await;
    let r = run(&gw, "say hi").await;
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    assert!(!r.stdout.trim().is_empty());
    let r = run(&gw, "use exec_command to run a command").await;
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    let last: serde_json::Value =
        serde_json::from_str(o.stats().last_body.as_deref().unwrap()).unwrap();
    let output_sent = last["input"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["type"] == "custom_tool_call_output" || i["type"] == "function_call_output");
    assert!(output_sent, "the tool's output went back: {last}");
}

#[tokio::test]
async fn codex_never_sees_a_429_and_then_a_500_of_one_of_two_providers() {
    if agent("codex", "@openai/codex").is_none() {
        return;
    }
    let o = mock_with(|o| o.tokens = 6).await;
    let z = azure_mock().await;
    let gw = codex_gateway(&[openai("openai", &o), azure("azure", &z)]).await;
    let r = run(&gw, "say hi").await;
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    o.set_mode(fail(429, Some(1.0), None));
    let r = run(&gw, "say hi").await;
    assert!(r.ok, "429: {}\n{}", r.stdout, r.stderr);
    o.set_mode(fail(500, None, None));
    let r = run(&gw, "say hi").await;
    assert!(r.ok, "500: {}\n{}", r.stdout, r.stderr);
    assert!(z.stats().ok >= 2, "azure served what openai could not");
}

#[tokio::test]
async fn codex_works_bridged_to_an_anthropic_deployment() {
    if agent("codex", "@openai/codex").is_none() {
        return;
    }
    let a = mock_with(|o| {
        o.provider = MockProvider::Anthropic;
        o.tokens = 6;
    })
    .await;
    // Codex's own default model (it knows its tools: `exec` and `wait`,
    // sent in an `additional_tools` item); `gpt-5-codex`, a model it has
    // no metadata for, always adds the hosted `web_search`, which no chat
    // upstream can run and the bridge refuses by name.
    let gw = gateway(&format!(
        "[server]\napi_keys = [\"sk-client-key-123456\"]\n\n[[models]]\nname = \"gpt-6.2-sol\"\n\n[[models.deployments]]\nname = \"claude\"\nprovider = \"anthropic\"\napi_base = \"{}\"\nmodel_id = \"claude-sonnet-4-5\"\n",
        a.base_url()
    ))
    .await;
    let r = run_as(&gw, "gpt-6.2-sol", "say hi").await;
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    assert!(!r.stdout.trim().is_empty());
    let r = run_as(&gw, "gpt-6.2-sol", "use exec to run a command").await;
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    let last: serde_json::Value =
        serde_json::from_str(a.stats().last_body.as_deref().unwrap()).unwrap();
    let result_sent = last["messages"].as_array().unwrap().iter().any(|m| {
        m["content"]
            .as_array()
            .is_some_and(|c| c.iter().any(|b| b["type"] == "tool_result"))
    });
    assert!(result_sent, "the tool's output reached Claude: {last}");
}

#[tokio::test]
async fn codex_never_sees_a_stream_cut_before_its_first_output() {
    if agent("codex", "@openai/codex").is_none() {
        return;
    }
    // The cut one in tier 1, so that it is always asked first.
    let o = mock_with(|o| o.tokens = 6).await;
    let z = azure_mock().await;
    let first = openai("openai", &o).replace("model_id", "priority = 1\nmodel_id");
    let second = azure("azure", &z).replace("model_id", "priority = 2\nmodel_id");
    let gw = codex_gateway(&[first, second]).await;
    // `response.created`, then the connection aborted; then a clean end
    // with no output at all.
    for (i, cut) in [
        Mode::ResetMidStream { after_chunks: 1 },
        Mode::TruncatedStream { after_chunks: 1 },
    ]
    .into_iter()
    .enumerate()
    {
        o.set_mode(cut.clone());
        let r = run(&gw, "say hi").await;
        assert!(r.ok, "{cut:?}: {}\n{}", r.stdout, r.stderr);
        assert!(!r.stdout.trim().is_empty());
        assert!(z.stats().ok > i as u64, "{cut:?}: azure served the run");
    }
    assert!(o.stats().ok >= 1, "the cut deployment was asked first");
}

#[tokio::test]
async fn codex_works_bridged_to_a_chat_completions_only_server() {
    if agent("codex", "@openai/codex").is_none() {
        return;
    }
    // An OpenAI-compatible server without /responses (vLLM, Ollama): its
    // 404 sends the run through chat, and so does every turn after it.
    let c = mock_with(|o| {
        o.tokens = 6;
        o.without = vec![MockEndpoint::Responses];
    })
    .await;
    // Codex's own default model, as for Anthropic below: it names no
    // hosted tool, which no chat server could run.
    let gw = gateway(&format!(
        "[server]\napi_keys = [\"sk-client-key-123456\"]\n\n[[models]]\nname = \"gpt-6.2-sol\"\n{}",
        openai("chat-only", &c)
    ))
    .await;
    let r = run_as(&gw, "gpt-6.2-sol", "say hi").await;
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    assert!(!r.stdout.trim().is_empty());
    let r = run_as(&gw, "gpt-6.2-sol", "use exec to run a command").await;
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    let stats = c.stats();
    assert_eq!(
        stats.last_path.as_deref(),
        Some("/v1/chat/completions"),
        "asked through chat"
    );
    let last: serde_json::Value =
        serde_json::from_str(stats.last_body.as_deref().unwrap()).unwrap();
    let result_sent = last["messages"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["role"] == "tool");
    assert!(
        result_sent,
        "the tool's output went back as a tool message: {last}"
    );
}
