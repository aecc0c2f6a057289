//! The official OpenAI Python SDK against a real gateway: what users run.
//! Needs `python3 -m pip install openai`; .ci/run installs it. Outside CI the
//! test says so and passes when the SDK is missing; in CI (CI=true) it fails.

mod common;

use common::*;

fn sdk_available() -> bool {
    std::process::Command::new("python3")
        .args(["-c", "import openai"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_python_sdk_works_through_the_gateway() {
    if !sdk_available() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have the openai SDK installed"
        );
        eprintln!(
            "SKIPPED: the openai Python SDK is not installed (python3 -m pip install openai)"
        );
        return;
    }
    let (a, b) = (
        mock_with(|o| o.tokens = 5).await,
        mock_with(|o| o.tokens = 5).await,
    );
    a.set_mode(switchboard::mock_upstream::Mode::Fail {
        status: 503,
        retry_after_s: None,
        message: None,
    });
    let gw = gateway(&one_model(
        "",
        &[deployment("a", &a, ""), deployment("b", &b, "")],
    ))
    .await;
    let url = gw.url("/v1");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/openai_client.py");
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .args([script, &url])
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(seen["chat"]["deployment"], "b", "{seen}");
    assert_eq!(
        seen["chat"]["attempts"], "2",
        "the failing deployment was tried first: {seen}"
    );
    assert!(!seen["chat"]["content"].as_str().unwrap().is_empty());
    assert_eq!(seen["float_counts"]["completion_tokens"], 5, "{seen}");
    assert_eq!(seen["float_counts"]["deployment"], "b", "{seen}");
    assert_eq!(seen["stream"]["usage_chunks"], 0, "{seen}");
    assert!(!seen["stream"]["text"].as_str().unwrap().is_empty());
    assert!(seen["stream_with_usage"].as_u64().unwrap() > 0);
    assert_eq!(seen["embeddings"], 2);
    assert_eq!(seen["models"], serde_json::json!(["m"]));
    assert_eq!(seen["unknown_model"], "model_not_found");
}

/// The SDK reads a stream that ended without `[DONE]` after its finish, and
/// one with a malformed chunk in the middle, as whole answers: no exception.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_gets_whole_answers_from_streams_without_done_or_with_a_bad_chunk() {
    if !common::sdk::sdk_available("openai") {
        return;
    }
    let (no_done, malformed, normal) = (
        mock_with(|o| o.tokens = 5).await,
        mock_with(|o| o.tokens = 5).await,
        mock_with(|o| o.tokens = 5).await,
    );
    no_done.set_mode(switchboard::mock_upstream::Mode::NoDone);
    malformed.set_mode(switchboard::mock_upstream::Mode::MalformedChunk { after_chunks: 3 });
    let model = |name: &str, m: &switchboard::mock_upstream::MockHandle| {
        format!("[[models]]\nname = \"{name}\"\n{}", deployment(name, m, ""))
    };
    let gw = gateway(
        &[
            model("no-done", &no_done),
            model("malformed", &malformed),
            model("normal", &normal),
        ]
        .concat(),
    )
    .await;
    let seen = common::sdk::python(
        "openai_stream_ends.py",
        vec![
            gw.url("/v1"),
            "no-done".into(),
            "malformed".into(),
            "normal".into(),
        ],
    )
    .await;
    for model in ["no-done", "malformed"] {
        assert_eq!(seen[model]["error"], serde_json::Value::Null, "{seen}");
        assert_eq!(seen[model]["text"], seen["normal"]["text"], "{seen}");
        assert_eq!(seen[model]["finish_reason"], "stop", "{seen}");
        assert_eq!(seen[model]["usage"], 5, "{seen}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_turn_conversation_stays_on_one_deployment_and_a_fallback_reads_as_asked() {
    if !common::sdk::sdk_available("openai") {
        return;
    }
    let (a, b, c, mini) = (mock().await, mock().await, mock().await, mock().await);
    let gw = gateway(&format!(
        "[[models]]\nname = \"m\"\n{}{}{}\n[[models]]\nname = \"gone\"\nfallbacks = [\"m\"]\n{}",
        deployment("a", &a, ""),
        deployment("b", &b, ""),
        deployment("c", &c, ""),
        deployment("off", &mini, "enabled = false"),
    ))
    .await;
    let seen = common::sdk::python("openai_sessions.py", vec![gw.url("/v1")]).await;
    for key in ["header", "cache_key"] {
        let turns = seen[key].as_array().unwrap();
        assert_eq!(turns.len(), 2);
        assert_eq!(turns[0], turns[1], "{key}: {seen}");
    }
    assert_eq!(seen["fallback"]["model_header"], "m", "{seen}");
    assert_eq!(seen["fallback"]["body_model"], "gone", "{seen}");
}
