//! The Messages door to Claude on Bedrock (InvokeModel) and Vertex
//! (rawPredict), natively: the body as the platform wants it (version,
//! betas filtered by allowlist), the answer as Anthropic's, a stream
//! byte-equal in events to the direct path, count_tokens by each one's API.

mod common;

use common::claude::*;
use common::*;
use serde_json::{Value, json};
use switchboard::mock_upstream::MockHandle;

const BETAS: &str = "claude-code-20250219,interleaved-thinking-2025-05-14,prompt-caching-scope-2026-01-05,context-management-2025-06-27";

fn ask(stream: bool) -> Value {
    json!({
        "model": "m",
        "max_tokens": 64,
        "stream": stream,
        "system": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hello", "cache_control": {"type": "ephemeral"}}]}],
        "metadata": {"user_id": "u-1"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "high"},
    })
}

async fn messages(gw: &TestGateway, body: &Value) -> reqwest::Response {
    gw.client
        .post(gw.url("/v1/messages?beta=true"))
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-beta", BETAS)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

fn sent(m: &MockHandle) -> (Value, std::collections::BTreeMap<String, String>, String) {
    let s = m.stats();
    (
        serde_json::from_str(s.last_body.as_deref().unwrap()).unwrap(),
        s.last_headers,
        s.last_path.unwrap_or_default(),
    )
}

/// The events of a stream with their payloads as sent, minus ids and
/// the model, which differ per platform by design.
async fn event_shapes(r: reqwest::Response) -> Vec<(String, Value)> {
    let text = r.text().await.unwrap();
    text.split("\n\n")
        .filter(|f| !f.trim().is_empty())
        .map(|f| {
            let name = f
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or_default();
            let mut data: Value =
                serde_json::from_str(f.lines().find_map(|l| l.strip_prefix("data: ")).unwrap())
                    .unwrap();
            if let Some(m) = data.get_mut("message") {
                m["id"] = json!("-");
                m["model"] = json!("-");
            }
            (name.to_string(), data)
        })
        .filter(|(n, _)| n != "ping")
        .collect()
}

#[tokio::test]
async fn bedrock_gets_invoke_model_with_its_version_and_only_the_betas_it_takes() {
    let b = bedrock_mock().await;
    let gw = gateway(&one_model("", &[bedrock("bedrock", &b)])).await;
    let r = messages(&gw, &ask(false)).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let dropped = header(&r, "x-switchboard-dropped-betas");
    assert!(dropped.contains("claude-code-20250219"), "{dropped}");
    assert!(dropped.contains("prompt-caching-scope-2026-01-05"));
    let v = json(r).await;
    assert_eq!(v["type"], "message");
    let (body, _, path) = sent(&b);
    assert!(path.ends_with("/invoke"), "{path}");
    assert_eq!(body["anthropic_version"], "bedrock-2023-05-31");
    assert_eq!(
        body["anthropic_beta"],
        json!([
            "interleaved-thinking-2025-05-14",
            "context-management-2025-06-27"
        ])
    );
    assert!(body.get("model").is_none() && body.get("stream").is_none());
    // output_config needs the effort beta, which the client did not send.
    assert!(body.get("output_config").is_none());
    assert!(body.get("context_management").is_some());
    // Cache markers go as written.
    assert_eq!(
        body["messages"][0]["content"][0]["cache_control"]["type"],
        "ephemeral"
    );
    let r = messages(&gw, &ask(true)).await;
    assert_eq!(r.status(), 200);
    assert!(sent(&b).2.ends_with("/invoke-with-response-stream"));
    let ev = event_shapes(r).await;
    assert_eq!(ev.first().unwrap().0, "message_start");
    assert_eq!(
        ev.last().unwrap(),
        &("message_stop".to_string(), json!({"type": "message_stop"}))
    );
}

#[tokio::test]
async fn vertex_gets_raw_predict_with_its_version_and_the_betas_as_a_header() {
    let (v, _dir, creds) = vertex_mock().await;
    let gw = gateway(&one_model("", &[vertex("vertex", &v, &creds)])).await;
    let r = messages(&gw, &ask(true)).await;
    assert_eq!(r.status(), 200);
    let ev = event_shapes(r).await;
    assert_eq!(ev.last().unwrap().0, "message_stop");
    let (body, headers, path) = sent(&v);
    assert!(path.ends_with(":streamRawPredict"), "{path}");
    assert_eq!(body["anthropic_version"], "vertex-2023-10-16");
    assert_eq!(body["stream"], true);
    assert!(body.get("model").is_none());
    let betas = headers.get("anthropic-beta").cloned().unwrap_or_default();
    assert_eq!(
        betas,
        "interleaved-thinking-2025-05-14,context-management-2025-06-27"
    );
}

#[tokio::test]
async fn anthropic_gets_the_clients_version_and_betas_as_sent() {
    let a = anthropic_mock().await;
    let gw = gateway(&one_model("", &[anthropic("anthropic", &a)])).await;
    let r = messages(&gw, &ask(false)).await;
    assert_eq!(r.status(), 200);
    assert!(header(&r, "x-switchboard-dropped-betas").is_empty());
    let (body, headers, path) = sent(&a);
    assert_eq!(path, "/v1/messages");
    assert_eq!(headers["anthropic-beta"], BETAS);
    assert_eq!(headers["anthropic-version"], "2023-06-01");
    assert_eq!(body["model"], "claude-sonnet-4-5-20250929");
    assert_eq!(body["output_config"]["effort"], "high");
}

#[tokio::test]
async fn the_same_stream_comes_out_alike_from_anthropic_bedrock_and_vertex() {
    let a = anthropic_mock().await;
    let b = bedrock_mock().await;
    let (v, _dir, creds) = vertex_mock().await;
    let mut shapes = Vec::new();
    for deployment in [
        anthropic("x", &a),
        bedrock("x", &b),
        vertex("x", &v, &creds),
    ] {
        let gw = gateway(&one_model("", &[deployment])).await;
        shapes.push(event_shapes(messages(&gw, &ask(true)).await).await);
    }
    assert_eq!(shapes[0], shapes[1], "anthropic vs bedrock");
    assert_eq!(shapes[0], shapes[2], "anthropic vs vertex");
}

#[tokio::test]
async fn count_tokens_asks_a_deployment_that_can_count_on_each_platform() {
    let body = json!({"model": "m", "system": "be brief", "messages": [{"role": "user", "content": "count these words please"}]});
    let a = anthropic_mock().await;
    let b = bedrock_mock().await;
    let (v, _dir, creds) = vertex_mock().await;
    let mut counts = Vec::new();
    for (deployment, mock, path) in [
        (anthropic("a", &a), &a, "/v1/messages/count_tokens"),
        (bedrock("b", &b), &b, "/count-tokens"),
        (vertex("v", &v, &creds), &v, "count-tokens:rawPredict"),
    ] {
        let gw = gateway(&one_model("", &[deployment])).await;
        let r = gw
            .post("/v1/messages/count_tokens?beta=true", body.clone())
            .await;
        assert_eq!(r.status(), 200);
        assert!(header(&r, "x-switchboard-estimate").is_empty());
        let n = json(r).await["input_tokens"].as_u64().unwrap();
        assert!(n > 0);
        counts.push(n);
        let p = sent(mock).2;
        assert!(p.ends_with(path), "{p}");
    }
}

#[tokio::test]
async fn a_beta_refused_by_bedrock_goes_to_a_platform_that_takes_it() {
    let a = anthropic_mock().await;
    let b = bedrock_mock().await;
    b.set_mode(fail(400, None, Some("invalid beta flag")));
    let gw = gateway(&one_model(
        "",
        &[
            bedrock("bedrock", &b),
            anthropic("anthropic", &a) + "priority = 2\n",
        ],
    ))
    .await;
    let r = messages(&gw, &ask(false)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-switchboard-deployment"), "anthropic");
    assert_eq!(header(&r, "x-switchboard-attempts"), "2");
    // Bedrock is not failing: its health is untouched.
    assert_eq!(gw.deployment("bedrock").await["failures"], 0);
    // Alone, its refusal is the answer, in Anthropic's envelope.
    let gw = gateway(&one_model("", &[bedrock("bedrock", &b)])).await;
    let r = messages(&gw, &ask(false)).await;
    assert_eq!(r.status(), 400);
    assert_eq!(header(&r, "x-should-retry"), "false");
    let v = json(r).await;
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("invalid beta flag"),
        "{v}"
    );
}
