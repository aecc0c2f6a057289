//! The mock's OpenAI Responses API over real loopback HTTP: what Codex, the
//! Agents SDK and the gateway's Responses door meet.

use std::time::Duration;

use serde_json::{Value, json};
use switchboard::mock_upstream::{self, MockHandle, MockOptions, MockProvider, Mode};

async fn mock_with(configure: impl FnOnce(&mut MockOptions)) -> MockHandle {
    let mut opts = MockOptions::new("127.0.0.1:0".parse().unwrap());
    opts.tokens = 5;
    configure(&mut opts);
    mock_upstream::spawn(opts).await.expect("the mock starts")
}

/// reqwest's `json` feature is off here: the body read as JSON.
trait JsonBody {
    fn json(self) -> impl std::future::Future<Output = reqwest::Result<Value>>;
}

impl JsonBody for reqwest::Response {
    async fn json(self) -> reqwest::Result<Value> {
        let bytes = self.bytes().await?;
        Ok(serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes))))
    }
}

/// Without the `/v1` of the base URL: the tests name whole paths.
fn root(mock: &MockHandle) -> String {
    mock.base_url().trim_end_matches("/v1").to_string()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn post(mock: &MockHandle, path: &str, body: &Value) -> reqwest::Response {
    client()
        .post(format!("{}{path}", root(mock)))
        .header("content-type", "application/json")
        .header("authorization", "Bearer sk-test")
        .body(body.to_string())
        .send()
        .await
        .expect("the request is answered")
}

/// Codex's body: a fixture captured from the real client.
fn codex(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/agents/codex/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let capture: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    serde_json::from_str(capture["body"].as_str().unwrap()).unwrap()
}

/// `(event name, data)` of every SSE event; checks that each data's
/// `type` is the event's name and that `sequence_number` counts from 0.
fn events(body: &[u8]) -> Vec<(String, Value)> {
    let text = std::str::from_utf8(body).unwrap();
    let mut out = Vec::new();
    for frame in text.split("\n\n").filter(|f| !f.is_empty()) {
        let name = frame
            .lines()
            .find_map(|l| l.strip_prefix("event: "))
            .unwrap_or_else(|| panic!("an event line: {frame:?}"));
        let data = frame
            .lines()
            .find_map(|l| l.strip_prefix("data: "))
            .unwrap();
        let data: Value = serde_json::from_str(data).unwrap();
        assert_eq!(data["type"], name, "{frame}");
        assert_eq!(data["sequence_number"], out.len(), "{frame}");
        out.push((name.to_string(), data));
    }
    out
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(n, _)| n.as_str()).collect()
}

#[tokio::test]
async fn a_response_has_openai_shape_and_is_counted() {
    let mock = mock_with(|_| {}).await;
    let r = post(
        &mock,
        "/v1/responses",
        &json!({"model": "gpt-5", "input": "Say hi", "instructions": "Be brief."}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["object"], "response");
    assert_eq!(v["status"], "completed");
    assert!(v["id"].as_str().unwrap().starts_with("resp_"));
    assert_eq!(v["model"], "gpt-5");
    assert_eq!(v["instructions"], "Be brief.");
    let item = &v["output"][0];
    assert_eq!(item["type"], "message");
    assert_eq!(item["role"], "assistant");
    assert_eq!(
        item["content"][0]["text"], "The quick brown fox jumps",
        "{v}"
    );
    let u = &v["usage"];
    assert_eq!(u["output_tokens"], 5);
    let input = u["input_tokens"].as_u64().unwrap();
    assert!(input > 0);
    assert_eq!(u["total_tokens"], input + 5);
    assert_eq!(u["input_tokens_details"]["cached_tokens"], 0);
    assert_eq!(u["output_tokens_details"]["reasoning_tokens"], 0);
    let stats = mock.stats();
    assert_eq!(
        (stats.prompt_tokens, stats.completion_tokens),
        (input, 5),
        "{stats:?}"
    );
    assert_eq!(stats.last_path.as_deref(), Some("/v1/responses"));
    assert_eq!(stats.last_model.as_deref(), Some("gpt-5"));
    assert_eq!(
        stats.last_headers.get("authorization").map(String::as_str),
        Some("Bearer sk-test")
    );

    // Kept: GET answers it, DELETE forgets it, then 404 in OpenAI's shape.
    let id = v["id"].as_str().unwrap();
    let url = format!("{}/v1/responses/{id}", root(&mock));
    let got: Value = client()
        .get(&url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got, v);
    let deleted: Value = client()
        .delete(&url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(deleted["deleted"], true);
    let gone = client().get(&url).send().await.unwrap();
    assert_eq!(gone.status(), 404);
    let gone: Value = gone.json().await.unwrap();
    assert_eq!(
        gone["error"]["message"],
        format!("Response with id '{id}' not found.")
    );
    assert_eq!(gone["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn previous_response_id_must_be_one_the_mock_kept() {
    let mock = mock_with(|_| {}).await;
    let first: Value = post(&mock, "/v1/responses", &json!({"model": "m", "input": "a"}))
        .await
        .json()
        .await
        .unwrap();
    let next = json!({"model": "m", "input": "b", "previous_response_id": first["id"]});
    assert_eq!(post(&mock, "/v1/responses", &next).await.status(), 200);
    let unknown = json!({"model": "m", "input": "b", "previous_response_id": "resp_nope"});
    let r = post(&mock, "/v1/responses", &unknown).await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "previous_response_not_found");
    // store: false keeps nothing.
    let unstored: Value = post(
        &mock,
        "/v1/responses",
        &json!({"model": "m", "input": "a", "store": false}),
    )
    .await
    .json()
    .await
    .unwrap();
    let url = format!(
        "{}/v1/responses/{}",
        root(&mock),
        unstored["id"].as_str().unwrap()
    );
    assert_eq!(client().get(url).send().await.unwrap().status(), 404);
}

#[tokio::test]
async fn codex_streams_get_every_event_in_order() {
    let mock = mock_with(|_| {}).await;
    let r = post(&mock, "/v1/responses", &codex("oneshot")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let ev = events(&r.bytes().await.unwrap());
    assert_eq!(
        names(&ev),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    assert_eq!(ev[0].1["response"]["status"], "in_progress");
    let text: String = ev
        .iter()
        .filter(|(n, _)| n == "response.output_text.delta")
        .map(|(_, d)| d["delta"].as_str().unwrap())
        .collect();
    assert_eq!(text, "The quick brown fox jumps");
    assert_eq!(ev[9].1["text"], text);
    let done = &ev[12].1["response"];
    assert_eq!(done["status"], "completed");
    assert_eq!(done["store"], false);
    assert_eq!(done["output"][0]["content"][0]["text"], text);
    assert_eq!(done["usage"]["output_tokens"], 5);
    assert_eq!(
        done["usage"]["total_tokens"].as_u64().unwrap(),
        mock.stats().prompt_tokens + 5
    );
    // store: false: nothing kept.
    let url = format!(
        "{}/v1/responses/{}",
        root(&mock),
        done["id"].as_str().unwrap()
    );
    assert_eq!(client().get(url).send().await.unwrap().status(), 404);
}

#[tokio::test]
async fn a_named_function_tool_is_called_and_its_output_answered_in_text() {
    let mock = mock_with(|_| {}).await;
    let tools = json!([
        {"type": "function", "name": "get_weather", "strict": true,
         "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                        "required": ["city"], "additionalProperties": false}},
        {"type": "web_search"},
        {"type": "namespace", "name": "functions", "tools": [
            {"type": "custom", "name": "exec", "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"}}]}
    ]);
    let body = json!({"model": "m", "stream": true, "tools": tools,
        "input": [{"role": "user", "content": "Use get_weather for Paris"}]});
    let ev = events(
        &post(&mock, "/v1/responses", &body)
            .await
            .bytes()
            .await
            .unwrap(),
    );
    assert_eq!(
        names(&ev),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    let added = &ev[2].1["item"];
    assert_eq!(added["type"], "function_call");
    assert_eq!(added["name"], "get_weather");
    assert_eq!(added["status"], "in_progress");
    let args: String = ev[3..5]
        .iter()
        .map(|(_, d)| d["delta"].as_str().unwrap())
        .collect();
    assert_eq!(args, r#"{"city":"Paris"}"#);
    assert_eq!(ev[5].1["arguments"], args);
    let call = &ev[7].1["response"]["output"][0];
    assert_eq!(call["status"], "completed");
    assert_eq!(call["arguments"], args);
    assert_eq!(ev[7].1["response"]["status"], "completed");

    // The tool's output comes back: the answer is text.
    let follow = json!({"model": "m", "tools": tools, "input": [
        {"role": "user", "content": "Use get_weather for Paris"},
        call,
        {"type": "function_call_output", "call_id": call["call_id"], "output": "sunny"}]});
    let v: Value = post(&mock, "/v1/responses", &follow)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["output"][0]["type"], "message", "{v}");

    // A custom tool in a namespace: a custom_tool_call, namespace kept.
    let custom = json!({"model": "m", "tools": tools, "parallel_tool_calls": false,
        "input": [{"type": "message", "id": "msg_1", "role": "user",
                   "content": [{"type": "input_text", "text": "run exec please"}]}]});
    let v: Value = post(&mock, "/v1/responses", &custom)
        .await
        .json()
        .await
        .unwrap();
    let call = &v["output"][0];
    assert_eq!(call["type"], "custom_tool_call", "{v}");
    assert_eq!(call["name"], "exec");
    assert_eq!(call["namespace"], "functions");
    assert!(call["input"].as_str().unwrap().contains("echo mock"));
}

#[tokio::test]
async fn codex_tool_turns_from_the_fixtures_are_accepted() {
    let mock = mock_with(|_| {}).await;
    for name in [
        "tool_turn1",
        "tool_turn2_custom_tool_call_output",
        "tool_turn3_resume",
        "unknown_model_turn1",
        "unknown_model_turn2_function_call_output",
    ] {
        let r = post(&mock, "/v1/responses", &codex(name)).await;
        assert_eq!(r.status(), 200, "{name}");
        let ev = events(&r.bytes().await.unwrap());
        assert_eq!(ev.last().unwrap().0, "response.completed", "{name}");
    }
    // Codex's code-mode turn: "exec" in the last user text calls it.
    let mut body = codex("tool_turn1");
    let last = body["input"].as_array_mut().unwrap().last_mut().unwrap();
    last["content"][0]["text"] = json!("run exec: echo hi");
    let ev = events(
        &post(&mock, "/v1/responses", &body)
            .await
            .bytes()
            .await
            .unwrap(),
    );
    let item = &ev[2].1["item"];
    assert_eq!(item["type"], "custom_tool_call", "{item}");
    assert_eq!(item["namespace"], "functions");
    assert!(names(&ev).contains(&"response.custom_tool_call_input.delta"));
}

#[tokio::test]
async fn max_output_tokens_makes_it_incomplete() {
    let mock = mock_with(|_| {}).await;
    let body = json!({"model": "m", "input": "hi", "max_output_tokens": 2, "stream": true});
    let ev = events(
        &post(&mock, "/v1/responses", &body)
            .await
            .bytes()
            .await
            .unwrap(),
    );
    let (last, data) = ev.last().unwrap();
    assert_eq!(last, "response.incomplete");
    assert_eq!(data["response"]["status"], "incomplete");
    assert_eq!(
        data["response"]["incomplete_details"]["reason"],
        "max_output_tokens"
    );
}

#[tokio::test]
async fn fault_modes_apply_to_responses() {
    let mock = mock_with(|_| {}).await;
    let stream = json!({"model": "m", "input": "hi", "stream": true});

    mock.set_mode(Mode::Fail {
        status: 429,
        retry_after_s: Some(2.0),
        message: None,
    });
    let r = post(&mock, "/v1/responses", &stream).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "2");
    assert_eq!(r.headers()["retry-after-ms"], "2000");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");

    mock.set_mode(Mode::ErrorMidStream {
        after_chunks: 5,
        exception: None,
    });
    let ev = events(
        &post(&mock, "/v1/responses", &stream)
            .await
            .bytes()
            .await
            .unwrap(),
    );
    assert_eq!(ev.len(), 6);
    let (name, failed) = &ev[5];
    assert_eq!(name, "response.failed");
    assert_eq!(failed["response"]["status"], "failed");
    assert_eq!(failed["response"]["error"]["code"], "server_error");
    assert!(!names(&ev).contains(&"response.completed"));

    mock.set_mode(Mode::TruncatedStream { after_chunks: 4 });
    let ev = events(
        &post(&mock, "/v1/responses", &stream)
            .await
            .bytes()
            .await
            .unwrap(),
    );
    assert_eq!(ev.len(), 4);

    mock.set_mode(Mode::ResetMidStream { after_chunks: 3 });
    let r = post(&mock, "/v1/responses", &stream).await;
    assert!(r.bytes().await.is_err(), "the body ends abnormally");

    mock.set_mode(Mode::ResetBeforeHeaders);
    let sent = client()
        .post(format!("{}/v1/responses", root(&mock)))
        .body(stream.to_string())
        .send()
        .await;
    assert!(sent.is_err());

    mock.set_mode(Mode::HangAfterHeaders);
    let r = post(&mock, "/v1/responses", &stream).await;
    assert_eq!(r.status(), 200);
    let body = tokio::time::timeout(Duration::from_millis(300), r.bytes()).await;
    assert!(body.is_err(), "the body never comes");

    mock.set_mode(Mode::Hang);
    let hung = tokio::time::timeout(
        Duration::from_millis(300),
        post(&mock, "/v1/responses", &stream),
    )
    .await;
    assert!(hung.is_err(), "no answer");
}

#[tokio::test]
async fn azure_serves_responses_on_its_paths() {
    let mock = mock_with(|o| o.provider = MockProvider::Azure).await;
    let body = json!({"model": "my-deployment", "input": "hi"});
    for path in [
        "/openai/v1/responses",
        "/openai/responses?api-version=2025-04-01-preview",
        "/openai/deployments/my-deployment/responses?api-version=2025-04-01-preview",
    ] {
        let r = post(&mock, path, &body).await;
        assert_eq!(r.status(), 200, "{path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["object"], "response", "{path}");
    }
    // The classic paths without api-version: Azure's 404.
    let r = post(&mock, "/openai/deployments/my-deployment/responses", &body).await;
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn without_responses_is_a_chat_only_server() {
    let mock = mock_with(|o| o.without = vec![mock_upstream::MockEndpoint::Responses]).await;
    let r = post(
        &mock,
        "/v1/responses",
        &json!({"model": "m", "input": "hi"}),
    )
    .await;
    assert_eq!(r.status(), 404);
}
