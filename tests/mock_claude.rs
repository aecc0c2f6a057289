//! The mocks of Claude's three homes, faithful enough for the official
//! clients: `mock-upstream --provider anthropic` answers count_tokens and
//! takes what Claude Code sends; `--provider bedrock` answers InvokeModel,
//! its stream and CountTokens for the anthropic SDK's `AnthropicBedrock`
//! and boto3; `--provider vertex` answers count-tokens for
//! `AnthropicVertex`. The SDK tests run the Python SDKs (tests/sdk/);
//! without them they say so and pass (in CI they fail).
//!
//! Needs `python3 -m pip install anthropic boto3 google-auth`; .ci/run
//! installs them.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use common::sdk::{python, sdk_available};
use common::*;
use serde_json::{Value, json};
use switchboard::mock_upstream::{MockHandle, MockProvider, Mode};

const KEY_ID: &str = "AKIDSWITCHBOARDTEST";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYzSWITCH";
const ANTHROPIC_KEY: &str = "sk-ant-test-0123456789";

/// The real binary: `switchboard mock-upstream --listen 127.0.0.1:0 ARGS`,
/// killed when dropped; its base URL from the banner.
struct MockProcess {
    child: Child,
    url: String,
}

impl Drop for MockProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mock_process(args: &[&str]) -> MockProcess {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["mock-upstream", "--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    // "mock-upstream listening on http://127.0.0.1:PORT (bedrock)"
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in the banner {line:?}"))
        .to_string();
    MockProcess { child, url }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_bedrock_and_boto3_accept_the_bedrock_mock() {
    if !sdk_available("anthropic") || !sdk_available("boto3") {
        return;
    }
    let m = mock_process(&[
        "--provider",
        "bedrock",
        "--tokens",
        "8",
        "--aws-access-key-id",
        KEY_ID,
        "--aws-secret-access-key",
        SECRET,
    ]);
    let seen = python(
        "claude_bedrock.py",
        vec![m.url.clone(), KEY_ID.into(), SECRET.into()],
    )
    .await;
    let create = &seen["create"];
    assert_eq!(
        create["text"], "The quick brown fox jumps over the lazy",
        "{seen}"
    );
    assert_eq!(create["stop_reason"], "end_turn");
    assert_eq!(create["model"], "claude-3-5-sonnet-20240620");
    assert!(create["id"].as_str().unwrap().starts_with("msg_bdrk_"));
    let stream = &seen["stream"];
    assert_eq!(stream["text"], create["text"], "{seen}");
    assert_eq!(stream["final_text"], create["text"]);
    assert_eq!(stream["stop_reason"], "end_turn");
    assert_eq!(stream["output_tokens"], 8);
    assert_eq!(
        seen["stream_tools"],
        json!({"stop_reason": "tool_use", "inputs": [{"city": "Paris"}]}),
        "tool input assembled from the SDK's decoding of the mock's frames"
    );
    assert_eq!(seen["beta_ok"], "end_turn");
    assert_eq!(seen["beta_refused"][0], 400, "{seen}");
    assert!(
        seen["beta_refused"][1]
            .as_str()
            .unwrap()
            .contains("invalid beta flag")
    );
    assert_eq!(seen["wrong_secret"], 403);
    let invoke = &seen["invoke"];
    assert_eq!(invoke["type"], "message", "{seen}");
    assert_eq!(invoke["text"], create["text"]);
    assert_eq!(
        invoke["input_header"].as_str().unwrap(),
        invoke["input_tokens"].to_string()
    );
    let events = seen["invoke_stream"]["events"].as_array().unwrap();
    assert_eq!(events.first().unwrap(), "message_start", "{seen}");
    assert_eq!(events.last().unwrap(), "message_stop");
    assert!(!events.contains(&json!("ping")));
    assert_eq!(seen["invoke_stream"]["text"], create["text"]);
    assert_eq!(seen["invoke_stream"]["metrics"]["outputTokenCount"], 8);
    assert_eq!(seen["invoke_refused"][0], "ValidationException");
    assert!(
        seen["invoke_refused"][1]
            .as_str()
            .unwrap()
            .contains("extraneous key [model]")
    );
    if seen.get("count_tokens").is_some() {
        assert!(seen["count_tokens"].as_u64().unwrap() > 1, "{seen}");
        assert!(seen["count_converse"].as_u64().unwrap() >= 1);
        assert_eq!(seen["count_refused"], "ValidationException");
    } else {
        eprintln!("SKIPPED: this boto3 has no bedrock-runtime count_tokens");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_vertex_accepts_the_vertex_mock_count_tokens_included() {
    if !sdk_available("anthropic") || !sdk_available("google.auth") {
        return;
    }
    let m = mock_with(|o| {
        o.provider = MockProvider::Vertex;
        o.tokens = 6;
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vertex-sa.json");
    std::fs::write(&path, m.credentials_json()).unwrap();
    let seen = python(
        "claude_vertex.py",
        vec![m.base_url(), path.display().to_string()],
    )
    .await;
    assert_eq!(
        seen["create"],
        json!({"text": "The quick brown fox jumps over", "stop_reason": "end_turn"}),
        "{seen}"
    );
    assert_eq!(seen["stream"]["text"], seen["create"]["text"]);
    assert_eq!(seen["stream"]["final_text"], seen["create"]["text"]);
    assert!(seen["count_tokens"].as_u64().unwrap() > 10, "{seen}");
    assert_eq!(seen["count_refused"], 400, "a conversation the API refuses");
    let last = m.stats();
    assert_eq!(
        last.last_path.as_deref(),
        Some(
            "/v1/projects/mock-project/locations/us-east5/publishers/anthropic/models/count-tokens:rawPredict"
        )
    );
    let sent: Value = serde_json::from_str(&last.last_body.unwrap()).unwrap();
    // The SDK 2.x sends its dated API version; Vertex takes it.
    assert!(sent["anthropic_version"].is_string(), "{sent}");
    assert_eq!(sent["model"], "claude-sonnet-4-5@20250929");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_anthropic_sdk_counts_tokens_on_the_anthropic_mock() {
    if !sdk_available("anthropic") {
        return;
    }
    let m = mock_with(|o| {
        o.provider = MockProvider::Anthropic;
        o.api_key = Some(ANTHROPIC_KEY.into());
    })
    .await;
    let seen = python("claude_count.py", vec![m.base_url(), ANTHROPIC_KEY.into()]).await;
    let plain = seen["plain"].as_u64().unwrap();
    assert!(plain >= 1, "{seen}");
    assert_eq!(seen["again"], plain, "the same body, the same count");
    assert!(seen["with_tools"].as_u64().unwrap() > plain + 10);
    assert_eq!(seen["beta"], plain);
    assert_eq!(seen["empty"], "invalid_request_error");
    assert_eq!(seen["wrong_key"], 401);
}

async fn json(r: reqwest::Response) -> Value {
    serde_json::from_slice(&r.bytes().await.unwrap()).unwrap()
}

/// A Claude Code capture: its method, path, headers and body.
fn capture(name: &str) -> (String, Vec<(String, String)>, String) {
    let path = format!(
        "{}/tests/fixtures/agents/claude_code/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let headers = v["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h[0].as_str().unwrap().to_string(),
                h[1].as_str().unwrap().to_string(),
            )
        })
        .filter(|(k, _)| {
            !["host", "content-length", "connection", "accept-encoding"]
                .contains(&k.to_lowercase().as_str())
        })
        .collect();
    (
        v["path"].as_str().unwrap().to_string(),
        headers,
        v["body"].as_str().unwrap_or_default().to_string(),
    )
}

#[tokio::test]
async fn every_claude_code_request_is_answered_and_its_headers_are_kept() {
    let m = mock_with(|o| {
        o.provider = MockProvider::Anthropic;
        o.api_key = Some("REDACTED".into());
    })
    .await;
    let client = reqwest::Client::new();
    let dir = format!(
        "{}/tests/fixtures/agents/claude_code",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != "head_probe.json")
        .collect();
    names.sort();
    assert!(names.len() > 15);
    for name in names {
        let (path, headers, body) = capture(&name);
        let mut req = client
            .post(format!("{}{path}", m.base_url()))
            .body(body.clone());
        for (k, v) in &headers {
            req = req.header(k, v);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 200, "{name}: {}", r.text().await.unwrap());
        let text = r.text().await.unwrap();
        if path.contains("count_tokens") {
            let n: Value = serde_json::from_str(&text).unwrap();
            assert!(n["input_tokens"].as_u64().unwrap() >= 1, "{name}: {text}");
        } else if body.contains("\"stream\": true") || body.contains("\"stream\":true") {
            assert!(text.starts_with("event: message_start"), "{name}");
            assert!(
                text.trim_end()
                    .ends_with("data: {\"type\":\"message_stop\"}"),
                "{name}"
            );
        } else {
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["type"], "message", "{name}");
        }
        let stats = m.stats();
        assert_eq!(stats.last_path.as_deref(), Some(path.as_str()), "{name}");
        let beta = headers
            .iter()
            .find(|(k, _)| k == "anthropic-beta")
            .map(|(_, v)| v.as_str());
        assert_eq!(
            stats.last_headers.get("anthropic-beta").map(String::as_str),
            beta
        );
        assert_eq!(stats.last_headers["anthropic-version"], "2023-06-01");
        assert_eq!(stats.last_body.as_deref(), Some(body.as_str()));
    }
}

#[tokio::test]
async fn count_tokens_is_deterministic_grows_with_the_body_and_refuses_like_the_api() {
    let m = mock_with(|o| {
        o.provider = MockProvider::Anthropic;
        o.api_key = Some(ANTHROPIC_KEY.into());
    })
    .await;
    let client = reqwest::Client::new();
    let count = |body: Value, key: &'static str| {
        client
            .post(format!(
                "{}/v1/messages/count_tokens?beta=true",
                m.base_url()
            ))
            .header("x-api-key", key)
            .header("anthropic-version", "2023-06-01")
            .header("anthropic-beta", "token-counting-2024-11-01")
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    let small = json!({"model": "claude-x", "messages": [{"role": "user", "content": "hi"}]});
    let big = json!({"model": "claude-x", "system": "You are a careful assistant.",
        "tools": [{"name": "Bash", "description": "Run a command", "defer_loading": true,
                   "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}}],
        "messages": [{"role": "user", "content": "hi"}, {"role": "system", "content": "Mid-conversation note."}]});
    let n = |v: Value| v["input_tokens"].as_u64().unwrap();
    let a = n(json(count(small.clone(), ANTHROPIC_KEY).await.unwrap()).await);
    let b = n(json(count(small.clone(), ANTHROPIC_KEY).await.unwrap()).await);
    let c = n(json(count(big, ANTHROPIC_KEY).await.unwrap()).await);
    assert_eq!(a, b);
    assert!(c > a + 20, "{a} {c}");
    let r = count(small.clone(), "wrong").await.unwrap();
    assert_eq!(r.status(), 401);
    let e: Value = json(r).await;
    assert_eq!(
        e,
        json!({"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}})
    );
    let mut with_max = small.clone();
    with_max["max_tokens"] = json!(5);
    let r = count(with_max, ANTHROPIC_KEY).await.unwrap();
    assert_eq!(r.status(), 400, "count_tokens takes no max_tokens");
    m.set_mode(fail(529, None, None));
    let r = count(small, ANTHROPIC_KEY).await.unwrap();
    assert_eq!(r.status(), 529);
    let e: Value = json(r).await;
    assert_eq!(e["error"]["type"], "overloaded_error");
}

/// The frames of an event stream, decoded with aws-smithy-eventstream
/// (CRCs checked): each frame's `:event-type` / `:exception-type` and
/// payload, chunk payloads unwrapped from their base64.
fn decode_frames(mut bytes: &[u8]) -> Vec<(String, Value)> {
    use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
    let mut decoder = MessageFrameDecoder::new();
    let mut out = Vec::new();
    while let DecodedFrame::Complete(message) =
        decoder.decode_frame(&mut bytes).expect("a valid frame")
    {
        let header = |name: &str| {
            message
                .headers()
                .iter()
                .find(|h| h.name().as_str() == name)
                .and_then(|h| h.value().as_string().ok())
                .map(|s| s.as_str().to_string())
        };
        let kind = header(":event-type")
            .or_else(|| header(":exception-type"))
            .unwrap();
        let mut payload: Value = serde_json::from_slice(message.payload()).unwrap();
        if let Some(b64) = payload.get("bytes").and_then(Value::as_str) {
            let raw = aws_smithy_types::base64::decode(b64).unwrap();
            payload = serde_json::from_slice(&raw).unwrap();
        }
        out.push((kind, payload));
    }
    out
}

async fn invoke(m: &MockHandle, op: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!(
            "{}/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0/{op}",
            m.base_url()
        ))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_bedrock_invoke_stream_keeps_every_fault_mode() {
    let m = mock_with(|o| {
        o.provider = MockProvider::Bedrock;
        o.tokens = 4;
        o.tpm_limit = Some(40);
    })
    .await;
    let body = json!({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 50,
        "messages": [{"role": "user", "content": "Hello"}]});
    let r = invoke(&m, "invoke-with-response-stream", &body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "content-type"),
        "application/vnd.amazon.eventstream"
    );
    let frames = decode_frames(&r.bytes().await.unwrap());
    let kinds: Vec<&str> = frames
        .iter()
        .map(|(_, p)| p["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert!(frames.iter().all(|(k, _)| k == "chunk"));
    assert_eq!(
        frames[8].1["amazon-bedrock-invocationMetrics"]["outputTokenCount"],
        4
    );

    m.set_mode(Mode::ErrorMidStream {
        after_chunks: 3,
        exception: Some("throttlingException".into()),
    });
    let frames = decode_frames(
        &invoke(&m, "invoke-with-response-stream", &body)
            .await
            .bytes()
            .await
            .unwrap(),
    );
    assert_eq!(frames.len(), 4);
    assert_eq!(frames[3].0, "throttlingException");
    assert!(
        frames[3].1["message"]
            .as_str()
            .unwrap()
            .contains("Too many tokens")
    );

    m.set_mode(fail(503, None, None));
    let r = invoke(&m, "invoke", &body).await;
    assert_eq!(r.status(), 503);
    assert!(header(&r, "x-amzn-errortype").starts_with("ServiceUnavailableException"));

    // Over the TPM limit: ThrottlingException, for count-tokens too? No: counting is free.
    m.set_mode(Mode::Normal);
    let mut throttled = 0;
    for _ in 0..20 {
        let r = invoke(&m, "invoke", &body).await;
        if r.status() == 429 {
            assert!(header(&r, "x-amzn-errortype").starts_with("ThrottlingException"));
            throttled += 1;
        }
    }
    assert!(throttled > 0, "the TPM window throttles InvokeModel");
    let counted = json!({"input": {"invokeModel": {"body": aws_smithy_types::base64::encode(body.to_string())}}});
    let r = invoke(&m, "count-tokens", &counted).await;
    assert_eq!(r.status(), 200);
    let n: Value = json(r).await;
    assert!(n["inputTokens"].as_u64().unwrap() >= 1, "{n}");
}
