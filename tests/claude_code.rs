//! Claude Code itself (npm `@anthropic-ai/claude-code`), in print mode,
//! through the gateway to Claude deployments on mock Anthropic, Bedrock
//! and Vertex upstreams: answers, tool turns, and failover it never sees.

mod common;

use common::agents::{agent, claude};
use common::claude::{bedrock, bedrock_mock, vertex, vertex_mock};
use common::*;
use switchboard::mock_upstream::{MockHandle, MockProvider, Mode};

const KEY: &str = "sk-ant-test-0123456789";

async fn anthropic_mock() -> MockHandle {
    mock_with(|o| {
        o.provider = MockProvider::Anthropic;
        o.api_key = Some(KEY.into());
        o.tokens = 6;
    })
    .await
}

fn anthropic(name: &str, m: &MockHandle) -> String {
    format!(
        "\n[[models.deployments]]\nname = \"{name}\"\nprovider = \"anthropic\"\napi_base = \"{}\"\napi_key = \"{KEY}\"\nmodel_id = \"claude-up-{name}\"\n",
        m.base_url()
    )
}

/// A gateway with model `claude-sonnet-4-5` over `deployments`.
async fn claude_gateway(deployments: &[String]) -> TestGateway {
    gateway(&format!(
        "[server]\napi_keys = [\"sk-client-key-123456\"]\n\n[[models]]\nname = \"claude-sonnet-4-5\"\n{}",
        deployments.concat()
    ))
    .await
}

#[tokio::test]
async fn claude_code_answers_through_the_gateway() {
    let Some(bin) = agent("claude", "@anthropic-ai/claude-code") else {
        return;
    };
    let a = anthropic_mock().await;
    let gw = claude_gateway(&[anthropic("direct", &a)]).await;
    let run = claude(&bin, &gw.url(""), "claude-sonnet-4-5", &["say hi"]).await;
    assert!(run.ok, "stdout: {}\nstderr: {}", run.stdout, run.stderr);
    assert!(!run.stdout.trim().is_empty());
    assert!(a.stats().ok >= 1);
    let s = gw.deployment("direct").await;
    assert!(s["requests"].as_u64().unwrap() >= 1, "{s}");
}

#[tokio::test]
async fn claude_code_never_sees_a_429_or_a_529_of_one_deployment() {
    let Some(bin) = agent("claude", "@anthropic-ai/claude-code") else {
        return;
    };
    for status in [429, 529] {
        let (a, b) = (anthropic_mock().await, anthropic_mock().await);
        a.set_mode(fail(status, Some(30.0), Some("Overloaded")));
        let gw = claude_gateway(&[anthropic("a", &a), anthropic("b", &b)]).await;
        let run = claude(&bin, &gw.url(""), "claude-sonnet-4-5", &["say hi"]).await;
        assert!(run.ok, "{status}: {}\n{}", run.stdout, run.stderr);
        assert!(!run.stdout.contains("API Error"), "{}", run.stdout);
        assert!(b.stats().ok >= 1);
        assert_eq!(gw.deployment("a").await["state"], "cooling_down");
    }
}

#[tokio::test]
async fn claude_code_survives_a_stream_cut_after_its_first_content() {
    let Some(bin) = agent("claude", "@anthropic-ai/claude-code") else {
        return;
    };
    // Tier 1 cuts every answer after its first events; tier 2 is sound.
    let (a, b) = (anthropic_mock().await, anthropic_mock().await);
    a.set_mode(Mode::ResetMidStream { after_chunks: 4 });
    let gw = claude_gateway(&[anthropic("a", &a), anthropic("b", &b) + "priority = 2\n"]).await;
    let run = claude(&bin, &gw.url(""), "claude-sonnet-4-5", &["say hi"]).await;
    assert!(run.ok, "{}\n{}", run.stdout, run.stderr);
    assert!(!run.stdout.contains("API Error"), "{}", run.stdout);
    // The stream was cut after content had reached Claude Code, which
    // asked again without streaming: routed afresh, and answered by b.
    let stats = a.stats();
    assert!(stats.requests >= 2, "{stats:?}");
    assert!(b.stats().ok >= 1);
}

#[tokio::test]
async fn claude_code_answers_through_bedrock_and_vertex_and_one_model_on_all_three() {
    let Some(bin) = agent("claude", "@anthropic-ai/claude-code") else {
        return;
    };
    let a = anthropic_mock().await;
    let b = bedrock_mock().await;
    let (v, _dir, creds) = vertex_mock().await;
    for (name, deployment) in [
        ("bedrock", bedrock("bedrock", &b)),
        ("vertex", vertex("vertex", &v, &creds)),
    ] {
        let gw = claude_gateway(&[deployment]).await;
        let run = claude(&bin, &gw.url(""), "claude-sonnet-4-5", &["say hi"]).await;
        assert!(run.ok, "{name}: {}\n{}", run.stdout, run.stderr);
        assert!(!run.stdout.trim().is_empty(), "{name}");
        assert!(gw.deployment(name).await["requests"].as_u64().unwrap() >= 1);
    }
    // One model on all three: three sessions in turn, each answered; the
    // first two platforms throttle, and Claude Code never hears of it.
    let gw = claude_gateway(&[
        anthropic("anthropic", &a),
        bedrock("bedrock", &b),
        vertex("vertex", &v, &creds),
    ])
    .await;
    for _ in 0..3 {
        let run = claude(&bin, &gw.url(""), "claude-sonnet-4-5", &["say hi"]).await;
        assert!(run.ok, "{}\n{}", run.stdout, run.stderr);
    }
    a.set_mode(fail(429, Some(30.0), None));
    b.set_mode(fail(429, Some(30.0), None));
    let run = claude(&bin, &gw.url(""), "claude-sonnet-4-5", &["say hi"]).await;
    assert!(run.ok, "{}\n{}", run.stdout, run.stderr);
    assert!(!run.stdout.contains("API Error"), "{}", run.stdout);
}

#[tokio::test]
async fn claude_code_runs_a_tool_turn_through_the_gateway() {
    let Some(bin) = agent("claude", "@anthropic-ai/claude-code") else {
        return;
    };
    // The mock calls the tool the prompt names; Claude Code runs it and
    // sends its result back in a second turn.
    let a = anthropic_mock().await;
    let gw = claude_gateway(&[anthropic("direct", &a)]).await;
    let run = claude(
        &bin,
        &gw.url(""),
        "claude-sonnet-4-5",
        &["use the Glob tool", "--allowedTools", "Glob"],
    )
    .await;
    assert!(run.ok, "{}\n{}", run.stdout, run.stderr);
    let last: serde_json::Value =
        serde_json::from_str(a.stats().last_body.as_deref().unwrap()).unwrap();
    let turns = last["messages"].as_array().unwrap();
    let result = turns
        .iter()
        .flat_map(|t| t["content"].as_array().cloned().unwrap_or_default())
        .any(|b| b["type"] == "tool_result");
    assert!(result, "the tool's result went back: {last}");
}

#[tokio::test]
async fn claude_code_with_a_wrong_key_is_told_at_once() {
    let Some(bin) = agent("claude", "@anthropic-ai/claude-code") else {
        return;
    };
    let a = anthropic_mock().await;
    let gw = gateway(&format!(
        "[server]\napi_keys = [\"another-key-123456\"]\n\n[[models]]\nname = \"claude-sonnet-4-5\"\n{}",
        anthropic("direct", &a)
    ))
    .await;
    let started = std::time::Instant::now();
    let run = claude(&bin, &gw.url(""), "claude-sonnet-4-5", &["say hi"]).await;
    assert!(!run.ok);
    // Without `x-should-retry: false` it retried for about three minutes.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "{:?}: {}{}",
        started.elapsed(),
        run.stdout,
        run.stderr
    );
    assert!(
        (run.stdout.clone() + &run.stderr).contains("API key"),
        "{}{}",
        run.stdout,
        run.stderr
    );
    assert_eq!(a.stats().requests, 0);
}
