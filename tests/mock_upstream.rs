//! The mock upstream over real loopback HTTP, as the gateway and the
//! benchmarks see it.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use switchboard::mock_upstream::{self, MockHandle, MockOptions, MockStats, Mode};

/// How long a test waits to decide that a hanging answer hangs.
const HANG_PROBE: Duration = Duration::from_millis(300);

async fn mock_with(configure: impl FnOnce(&mut MockOptions)) -> MockHandle {
    let mut opts = MockOptions::new("127.0.0.1:0".parse().unwrap());
    configure(&mut opts);
    mock_upstream::spawn(opts).await.expect("the mock starts")
}

async fn mock() -> MockHandle {
    mock_with(|_| {}).await
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

fn chat(content: &str) -> Value {
    json!({"model": "gpt-4o", "messages": [{"role": "user", "content": content}]})
}

async fn post(mock: &MockHandle, path: &str, body: &Value) -> reqwest::Response {
    post_raw(mock, path, body.to_string()).await
}

async fn post_raw(mock: &MockHandle, path: &str, body: String) -> reqwest::Response {
    client()
        .post(format!("{}{path}", mock.base_url()))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("the request is answered")
}

async fn json_of(response: reqwest::Response) -> Value {
    let bytes = response.bytes().await.expect("a complete body");
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

/// The `data:` payloads of an SSE body, in order.
fn sse_data(body: &[u8]) -> Vec<String> {
    let text = std::str::from_utf8(body).unwrap();
    assert!(
        text.is_empty() || text.ends_with("\n\n"),
        "frames end with a blank line: {text:?}"
    );
    text.split_terminator("\n\n")
        .map(|frame| {
            frame
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not a data frame: {frame:?}"))
                .to_string()
        })
        .collect()
}

fn parse_all(frames: &[String]) -> Vec<Value> {
    frames
        .iter()
        .map(|f| serde_json::from_str(f).unwrap_or_else(|e| panic!("{e}: {f}")))
        .collect()
}

/// Reads a body to its end or its first error.
async fn read_until_error(response: reqwest::Response) -> (Vec<u8>, Option<reqwest::Error>) {
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => body.extend_from_slice(&bytes),
            Err(e) => return (body, Some(e)),
        }
    }
    (body, None)
}

fn assert_openai_error(body: &Value, kind: &str) {
    let error = &body["error"];
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert_eq!(error["type"], kind, "{body}");
    let fields: Vec<&str> = error
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for field in ["message", "type", "param", "code"] {
        assert!(fields.contains(&field), "{field} missing in {body}");
    }
}

/// Polls a condition that another task makes true; fails after 5 s.
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// ---------------------------------------------------------------------------
// Answers

#[tokio::test]
async fn chat_completion_has_openai_shape_and_usage() {
    let mock = mock_with(|o| o.tokens = 5).await;
    let body = json!({"model": "gpt-4o-mini", "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Say hi"},
    ]});
    let response = post(&mock, "/chat/completions", &body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-type"), Some("application/json"));
    assert!(header(&response, "x-request-id").is_some_and(|id| id.starts_with("req_")));
    let v = json_of(response).await;
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"), "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert!(v["created"].as_u64().unwrap() > 1_700_000_000);
    assert_eq!(v["model"], "gpt-4o-mini", "the request's model is echoed");
    assert!(v["system_fingerprint"].is_string());
    let choices = v["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 1);
    assert_eq!(choices[0]["index"], 0);
    assert_eq!(choices[0]["finish_reason"], "stop");
    assert_eq!(choices[0]["message"]["role"], "assistant");
    assert_eq!(choices[0]["message"]["refusal"], Value::Null);
    let content = choices[0]["message"]["content"].as_str().unwrap();
    assert_eq!(
        content.split(' ').count(),
        5,
        "one word per token: {content:?}"
    );
    // 14 + 6 characters -> 5 tokens, plus 3 per message.
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16})
    );
}

#[tokio::test]
async fn the_configured_model_replaces_the_requested_one() {
    let mock = mock_with(|o| o.model = Some("gpt-4o-2024-08-06".into())).await;
    let v = json_of(post(&mock, "/chat/completions", &chat("hi")).await).await;
    assert_eq!(v["model"], "gpt-4o-2024-08-06");
    assert_eq!(
        mock.stats().last_model.as_deref(),
        Some("gpt-4o"),
        "stats keep what was asked"
    );
    let models = json_of(
        client()
            .get(format!("{}/models", mock.base_url()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], "gpt-4o-2024-08-06");
    assert_eq!(models["data"][0]["object"], "model");
}

#[tokio::test]
async fn max_tokens_caps_the_completion() {
    let mock = mock_with(|o| o.tokens = 10).await;
    let mut body = chat("hi");
    body["max_tokens"] = json!(3);
    let v = json_of(post(&mock, "/chat/completions", &body).await).await;
    assert_eq!(v["usage"]["completion_tokens"], 3);
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .split(' ')
            .count(),
        3
    );

    let mut body = chat("hi");
    body["max_completion_tokens"] = json!(4);
    let v = json_of(post(&mock, "/chat/completions", &body).await).await;
    assert_eq!(v["usage"]["completion_tokens"], 4);

    // A cap above the configured count changes nothing.
    let mut body = chat("hi");
    body["max_tokens"] = json!(100);
    let v = json_of(post(&mock, "/chat/completions", &body).await).await;
    assert_eq!(v["usage"]["completion_tokens"], 10);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn a_stream_without_usage() {
    let mock = mock_with(|o| o.tokens = 4).await;
    let mut body = chat("hello there");
    body["stream"] = json!(true);
    let response = post(&mock, "/chat/completions", &body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-type"), Some("text/event-stream"));
    assert!(header(&response, "x-request-id").is_some());
    let frames = sse_data(&response.bytes().await.unwrap());
    assert_eq!(frames.len(), 1 + 4 + 1 + 1, "{frames:?}");
    assert_eq!(frames.last().unwrap(), "[DONE]");
    let chunks = parse_all(&frames[..frames.len() - 1]);
    let id = &chunks[0]["id"];
    for chunk in &chunks {
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(&chunk["id"], id, "one id per stream");
        assert_eq!(chunk["model"], "gpt-4o");
        assert!(
            chunk.get("usage").is_none(),
            "no usage key unless asked: {chunk}"
        );
        assert_eq!(chunk["choices"].as_array().unwrap().len(), 1);
    }
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(chunks[0]["choices"][0]["delta"]["content"], "");
    let text: String = chunks[1..5]
        .iter()
        .map(|c| c["choices"][0]["delta"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(text.split(' ').count(), 4, "{text:?}");
    for chunk in &chunks[..5] {
        assert_eq!(chunk["choices"][0]["finish_reason"], Value::Null);
    }
    assert_eq!(chunks[5]["choices"][0]["delta"], json!({}));
    assert_eq!(chunks[5]["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn a_stream_with_usage() {
    let mock = mock_with(|o| o.tokens = 3).await;
    let mut body = chat("12345678");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let frames = sse_data(
        &post(&mock, "/chat/completions", &body)
            .await
            .bytes()
            .await
            .unwrap(),
    );
    assert_eq!(frames.len(), 1 + 3 + 1 + 1 + 1, "{frames:?}");
    assert_eq!(frames.last().unwrap(), "[DONE]");
    let chunks = parse_all(&frames[..frames.len() - 1]);
    let (usage_chunk, others) = chunks.split_last().unwrap();
    for chunk in others {
        assert!(chunk.as_object().unwrap().contains_key("usage"), "{chunk}");
        assert_eq!(chunk["usage"], Value::Null, "{chunk}");
    }
    assert_eq!(
        others.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(
        usage_chunk["usage"],
        json!({"prompt_tokens": 2 + 3, "completion_tokens": 3, "total_tokens": 8})
    );
}

#[tokio::test]
async fn stream_chunks_are_sent_one_by_one_with_the_delay() {
    let gap = Duration::from_millis(40);
    let mock = mock_with(|o| {
        o.tokens = 2;
        o.chunk_delay_ms = 40;
    })
    .await;
    let mut body = chat("hi");
    body["stream"] = json!(true);
    let response = post(&mock, "/chat/completions", &body).await;
    let mut stream = response.bytes_stream();
    let mut body = Vec::new();
    let mut arrivals = Vec::new();
    while let Some(chunk) = stream.next().await {
        body.extend_from_slice(&chunk.unwrap());
        arrivals.push(Instant::now());
    }
    let frames = sse_data(&body);
    assert_eq!(frames.len(), 5, "role, 2 tokens, finish, [DONE]");
    // Four gaps separate the first frame from the last; only a lower bound,
    // so a slow machine cannot make this fail.
    let spread = *arrivals.last().unwrap() - arrivals[0];
    assert!(spread >= gap * 4, "the frames came {spread:?} apart");
    assert!(arrivals.len() >= 2, "the frames were not sent separately");
}

#[tokio::test]
async fn latency_delays_the_headers() {
    let mock = mock_with(|o| o.latency_ms = 120).await;
    let started = Instant::now();
    let response = post(&mock, "/chat/completions", &chat("hi")).await;
    // Only a lower bound: a slow machine may take longer, never shorter.
    assert!(
        started.elapsed() >= Duration::from_millis(120),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn text_completions_answer_and_stream() {
    let mock = mock_with(|o| o.tokens = 3).await;
    let body = json!({"model": "gpt-3.5-turbo-instruct", "prompt": "Once upon"});
    let v = json_of(post(&mock, "/completions", &body).await).await;
    assert_eq!(v["object"], "text_completion");
    assert!(v["id"].as_str().unwrap().starts_with("cmpl-"));
    assert_eq!(
        v["choices"][0]["text"].as_str().unwrap().split(' ').count(),
        3
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6})
    );

    let body = json!({"model": "m", "prompt": "Once upon", "stream": true, "stream_options": {"include_usage": true}});
    let frames = sse_data(
        &post(&mock, "/completions", &body)
            .await
            .bytes()
            .await
            .unwrap(),
    );
    assert_eq!(frames.len(), 3 + 1 + 1 + 1, "{frames:?}");
    let chunks = parse_all(&frames[..5]);
    assert!(chunks.iter().all(|c| c["object"] == "text_completion"));
    assert_eq!(chunks[3]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks[4]["choices"], json!([]));
    assert_eq!(chunks[4]["usage"]["total_tokens"], 6);
    assert_eq!(frames[5], "[DONE]");
}

#[tokio::test]
async fn embeddings_answer_one_vector_per_input() {
    let mock = mock().await;
    let body = json!({"model": "text-embedding-3-small", "input": ["hello world", "abc"]});
    let response = post(&mock, "/embeddings", &body).await;
    assert_eq!(response.status(), 200);
    let v = json_of(response).await;
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], "text-embedding-3-small");
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    for (i, item) in data.iter().enumerate() {
        assert_eq!(item["object"], "embedding");
        assert_eq!(item["index"], i);
        let vector = item["embedding"].as_array().unwrap();
        assert_eq!(vector.len(), 8);
        assert!(vector.iter().all(Value::is_f64));
    }
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 3 + 1, "total_tokens": 4})
    );

    let single = json_of(
        post(
            &mock,
            "/embeddings",
            &json!({"model": "e", "input": "hello world"}),
        )
        .await,
    )
    .await;
    assert_eq!(
        single["data"][0]["embedding"], data[0]["embedding"],
        "the same text embeds the same"
    );
    let b64 = json!({"model": "e", "input": "x", "encoding_format": "base64"});
    let v = json_of(post(&mock, "/embeddings", &b64).await).await;
    assert_eq!(
        v["data"][0]["embedding"].as_str().unwrap().len(),
        44,
        "8 f32 in base64"
    );
}

#[tokio::test]
async fn health_models_and_unknown_routes() {
    let mock = mock().await;
    let http = client();
    let addr = mock.addr;
    let health = http
        .get(format!("http://{addr}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert!(header(&health, "x-request-id").is_some());
    let models = json_of(
        http.get(format!("{}/models", mock.base_url()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(!models["data"].as_array().unwrap().is_empty());
    let missing = http
        .post(format!("{}/nothing", mock.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_openai_error(&json_of(missing).await, "invalid_request_error");
    let wrong = http
        .get(format!("{}/chat/completions", mock.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 405);
    // Azure's deployment paths work too.
    let azure = http
        .post(format!(
            "http://{addr}/openai/deployments/gpt4/chat/completions?api-version=2024-10-21"
        ))
        .body(chat("hi").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(azure.status(), 200);
    assert_eq!(
        mock.stats().requests,
        2,
        "only the models and the Azure call reached an API route"
    );
}

// ---------------------------------------------------------------------------
// Client errors

#[tokio::test]
async fn a_wrong_or_missing_key_is_401() {
    let mock = mock_with(|o| o.api_key = Some("sk-mock-123".into())).await;
    let url = format!("{}/chat/completions", mock.base_url());
    let http = client();
    let send = |auth: Option<(&'static str, &'static str)>| {
        let mut request = http.post(&url).body(chat("hi").to_string());
        if let Some((name, value)) = auth {
            request = request.header(name, value);
        }
        request.send()
    };
    for auth in [
        None,
        Some(("authorization", "Bearer sk-wrong")),
        Some(("api-key", "sk-wrong")),
    ] {
        let response = send(auth).await.unwrap();
        assert_eq!(response.status(), 401, "{auth:?}");
        assert_eq!(header(&response, "content-type"), Some("application/json"));
        let v = json_of(response).await;
        assert_openai_error(&v, "invalid_request_error");
        assert_eq!(v["error"]["code"], "invalid_api_key");
        assert!(
            !v["error"]["message"].as_str().unwrap().contains("sk-wrong"),
            "the key is not echoed"
        );
    }
    assert_eq!(
        send(Some(("authorization", "Bearer sk-mock-123")))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        send(Some(("api-key", "sk-mock-123")))
            .await
            .unwrap()
            .status(),
        200
    );
    let health = http
        .get(format!("http://{}/health", mock.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "health needs no key");
}

#[tokio::test]
async fn malformed_bodies_are_400() {
    let mock = mock().await;
    for body in [
        "{not json",
        r#"{"messages":[{"role":"user","content":"x"}]}"#,
        r#"{"model":42}"#,
    ] {
        let response = post_raw(&mock, "/chat/completions", body.to_string()).await;
        assert_eq!(response.status(), 400, "{body}");
        assert_eq!(header(&response, "content-type"), Some("application/json"));
        let v = json_of(response).await;
        assert_openai_error(&v, "invalid_request_error");
    }
    let v = json_of(post_raw(&mock, "/chat/completions", "{not json".into()).await).await;
    assert_eq!(v["error"]["param"], Value::Null);
    assert_eq!(v["error"]["code"], Value::Null);
    let response = post(&mock, "/embeddings", &json!({"input": "x"})).await;
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn fail_rate_answers_500() {
    let mock = mock_with(|o| o.fail_rate = 1.0).await;
    let response = post(&mock, "/chat/completions", &chat("hi")).await;
    assert_eq!(response.status(), 500);
    let v = json_of(response).await;
    assert_openai_error(&v, "server_error");
    assert_eq!(
        v["error"]["message"],
        "The server had an error while processing your request."
    );
}

#[tokio::test]
async fn seeded_fail_rates_repeat() {
    let run = || async {
        let mock = mock_with(|o| {
            o.fail_rate = 0.5;
            o.seed = Some(7);
        })
        .await;
        let mut statuses = Vec::new();
        for _ in 0..20 {
            statuses.push(
                post(&mock, "/chat/completions", &chat("hi"))
                    .await
                    .status()
                    .as_u16(),
            );
        }
        statuses
    };
    let first = run().await;
    assert_eq!(first, run().await);
    assert!(first.contains(&200) && first.contains(&500), "{first:?}");
}

#[tokio::test]
async fn invalid_options_are_refused() {
    let mut opts = MockOptions::new("127.0.0.1:0".parse().unwrap());
    opts.fail_rate = 1.5;
    assert_eq!(
        mock_upstream::spawn(opts).await.unwrap_err().kind(),
        std::io::ErrorKind::InvalidInput
    );
    let mut opts = MockOptions::new("127.0.0.1:0".parse().unwrap());
    opts.tpm_limit = Some(0);
    assert!(mock_upstream::spawn(opts).await.is_err());
}

// ---------------------------------------------------------------------------
// TPM limit

#[tokio::test]
async fn the_tpm_limit_answers_429_with_retry_signals() {
    // Each request costs 5 prompt + 16 completion = 21 tokens.
    let mock = mock_with(|o| o.tpm_limit = Some(100)).await;
    for expected_remaining in [79, 58, 37, 16] {
        let response = post(&mock, "/chat/completions", &chat("hello")).await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "x-ratelimit-limit-tokens"), Some("100"));
        assert_eq!(
            header(&response, "x-ratelimit-remaining-tokens"),
            Some(expected_remaining.to_string().as_str())
        );
    }
    let response = post(&mock, "/chat/completions", &chat("hello")).await;
    assert_eq!(response.status(), 429);
    assert_eq!(header(&response, "content-type"), Some("application/json"));
    let retry_after: u64 = header(&response, "retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let retry_ms: u64 = header(&response, "retry-after-ms")
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        retry_ms > 0 && retry_ms <= 60_000 && retry_ms.div_ceil(1000) == retry_after,
        "{retry_ms}"
    );
    assert_eq!(header(&response, "x-ratelimit-limit-tokens"), Some("100"));
    assert_eq!(
        header(&response, "x-ratelimit-remaining-tokens"),
        Some("16")
    );
    let reset = header(&response, "x-ratelimit-reset-tokens")
        .unwrap()
        .to_string();
    assert!(
        reset.ends_with('s') && reset.chars().next().unwrap().is_ascii_digit(),
        "{reset}"
    );
    let v = json_of(response).await;
    assert_openai_error(&v, "tokens");
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");

    // A request small enough for what remains still fits.
    let mut small = chat("hello");
    small["max_tokens"] = json!(5);
    assert_eq!(post(&mock, "/chat/completions", &small).await.status(), 200);
    let stats = mock.stats();
    assert_eq!(
        (stats.requests, stats.ok, stats.rate_limited, stats.errors),
        (6, 5, 1, 0)
    );
    assert_eq!(
        stats.prompt_tokens + stats.completion_tokens,
        84 + 10,
        "refused tokens are not counted"
    );
}

#[tokio::test]
async fn a_request_over_the_whole_limit_is_429() {
    let mock = mock_with(|o| o.tpm_limit = Some(10)).await;
    let response = post(&mock, "/chat/completions", &chat("hello")).await;
    assert_eq!(response.status(), 429);
    assert!(
        header(&response, "retry-after")
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
}

// ---------------------------------------------------------------------------
// Modes

#[tokio::test]
async fn fail_mode_answers_the_status_with_retry_headers() {
    let mock = mock().await;
    mock.set_mode(Mode::Fail {
        status: 503,
        retry_after_s: Some(2.0),
        message: None,
    });
    let response = post(&mock, "/chat/completions", &chat("hi")).await;
    assert_eq!(response.status(), 503);
    assert_eq!(header(&response, "retry-after"), Some("2"));
    assert_eq!(header(&response, "retry-after-ms"), Some("2000"));
    assert!(
        header(&response, "x-ratelimit-reset-tokens").is_none(),
        "only for 429"
    );
    assert_openai_error(&json_of(response).await, "server_error");

    mock.set_mode(Mode::Fail {
        status: 429,
        retry_after_s: Some(1.5),
        message: Some("slow down".into()),
    });
    let response = post(&mock, "/embeddings", &json!({"model": "e", "input": "x"})).await;
    assert_eq!(response.status(), 429);
    assert_eq!(header(&response, "retry-after"), Some("2"));
    assert_eq!(header(&response, "retry-after-ms"), Some("1500"));
    assert_eq!(header(&response, "x-ratelimit-reset-tokens"), Some("1.5s"));
    let v = json_of(response).await;
    assert_eq!(v["error"]["message"], "slow down");
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");

    mock.set_mode(Mode::Fail {
        status: 429,
        retry_after_s: None,
        message: None,
    });
    let response = post(&mock, "/chat/completions", &chat("hi")).await;
    assert_eq!(response.status(), 429);
    assert!(header(&response, "retry-after").is_none());
    assert!(header(&response, "retry-after-ms").is_none());

    mock.set_mode(Mode::Normal);
    assert_eq!(
        post(&mock, "/chat/completions", &chat("hi")).await.status(),
        200
    );
    let stats = mock.stats();
    assert_eq!(
        (stats.requests, stats.ok, stats.errors, stats.rate_limited),
        (4, 1, 1, 2)
    );
}

#[tokio::test]
async fn hang_never_answers() {
    let mock = mock().await;
    mock.set_mode(Mode::Hang);
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(HANG_PROBE)
        .build()
        .unwrap();
    let error = http
        .post(format!("{}/chat/completions", mock.base_url()))
        .body(chat("hi").to_string())
        .send()
        .await
        .unwrap_err();
    assert!(error.is_timeout(), "{error:?}");
    let stats = mock.stats();
    assert_eq!((stats.requests, stats.ok, stats.errors), (1, 0, 0));
}

#[tokio::test]
async fn hang_after_headers_sends_headers_and_no_body() {
    let mock = mock().await;
    mock.set_mode(Mode::HangAfterHeaders);
    for stream in [false, true] {
        let mut body = chat("hi");
        body["stream"] = json!(stream);
        let response = post(&mock, "/chat/completions", &body).await;
        assert_eq!(response.status(), 200);
        let expected = if stream {
            "text/event-stream"
        } else {
            "application/json"
        };
        assert_eq!(header(&response, "content-type"), Some(expected));
        let mut chunks = response.bytes_stream();
        let first = tokio::time::timeout(HANG_PROBE, chunks.next()).await;
        assert!(
            first.is_err(),
            "no body byte may come (stream: {stream}): {first:?}"
        );
    }
}

#[tokio::test]
async fn garbage_is_not_json() {
    let mock = mock().await;
    mock.set_mode(Mode::Garbage);
    let response = post(&mock, "/chat/completions", &chat("hi")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-type"), Some("application/json"));
    let body = response.bytes().await.unwrap();
    assert!(!body.is_empty());
    assert!(serde_json::from_slice::<Value>(&body).is_err());

    let mut body = chat("hi");
    body["stream"] = json!(true);
    let response = post(&mock, "/chat/completions", &body).await;
    assert_eq!(header(&response, "content-type"), Some("text/event-stream"));
    let frames = sse_data(&response.bytes().await.unwrap());
    assert!(!frames.is_empty());
    assert!(
        frames
            .iter()
            .all(|f| serde_json::from_str::<Value>(f).is_err() && f != "[DONE]"),
        "{frames:?}"
    );
}

#[tokio::test]
async fn reset_before_headers_is_a_connection_error() {
    let mock = mock().await;
    mock.set_mode(Mode::ResetBeforeHeaders);
    let http = client();
    for _ in 0..2 {
        let result = http
            .post(format!("{}/chat/completions", mock.base_url()))
            .body(chat("hi").to_string())
            .send()
            .await;
        let error = result.expect_err("no response may come");
        assert!(!error.is_timeout() && !error.is_status(), "{error:?}");
    }
    let stats = mock.stats();
    assert_eq!((stats.requests, stats.ok, stats.errors), (2, 0, 2));
    assert_eq!(
        stats.last_body,
        Some(chat("hi").to_string()),
        "the request was read first"
    );
    mock.set_mode(Mode::Normal);
    assert_eq!(
        post(&mock, "/chat/completions", &chat("hi")).await.status(),
        200
    );
}

#[tokio::test]
async fn reset_mid_stream_cuts_the_body_abnormally() {
    let mock = mock_with(|o| o.tokens = 8).await;
    mock.set_mode(Mode::ResetMidStream { after_chunks: 3 });
    let mut body = chat("hi");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let response = post(&mock, "/chat/completions", &body).await;
    assert_eq!(response.status(), 200);
    let (received, error) = read_until_error(response).await;
    assert!(error.is_some(), "the body must not end cleanly");
    let frames = sse_data(&received);
    assert_eq!(frames.len(), 3, "{frames:?}");
    parse_all(&frames);

    // Non-streams: half the body, then the cut.
    let response = post(&mock, "/chat/completions", &chat("hi")).await;
    assert_eq!(response.status(), 200);
    let (received, error) = read_until_error(response).await;
    assert!(error.is_some(), "the body must not end cleanly");
    assert!(serde_json::from_slice::<Value>(&received).is_err());
}

#[tokio::test]
async fn a_truncated_stream_ends_cleanly_without_done() {
    let mock = mock_with(|o| o.tokens = 8).await;
    mock.set_mode(Mode::TruncatedStream { after_chunks: 4 });
    let mut body = chat("hi");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let response = post(&mock, "/chat/completions", &body).await;
    let (received, error) = read_until_error(response).await;
    assert!(error.is_none(), "{error:?}");
    let frames = sse_data(&received);
    assert_eq!(frames.len(), 4);
    for chunk in parse_all(&frames) {
        assert_eq!(chunk["usage"], Value::Null);
        assert_eq!(chunk["choices"][0]["finish_reason"], Value::Null);
    }
    // More chunks than the stream has: every chunk, still no usage nor [DONE].
    mock.set_mode(Mode::TruncatedStream { after_chunks: 100 });
    let frames = sse_data(
        &post(&mock, "/chat/completions", &body)
            .await
            .bytes()
            .await
            .unwrap(),
    );
    assert_eq!(frames.len(), 1 + 8 + 1);
    assert!(frames.iter().all(|f| f != "[DONE]"));
}

// ---------------------------------------------------------------------------
// Control API, stats, lifecycle

#[tokio::test]
async fn the_control_api_sets_and_reports_the_mode() {
    let mock = mock().await;
    let http = client();
    let mode_url = format!("http://{}/mock/mode", mock.addr);
    let put = |body: &str| http.put(&mode_url).body(body.to_string()).send();

    let response = put(r#"{"mode":"fail","status":503}"#).await.unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(
        mock.mode(),
        Mode::Fail {
            status: 503,
            retry_after_s: None,
            message: None
        }
    );
    assert_eq!(
        post(&mock, "/chat/completions", &chat("hi")).await.status(),
        503
    );

    let response = put(r#"{"mode":"reset_mid_stream","after_chunks":2}"#)
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let got = http.get(&mode_url).send().await.unwrap();
    assert_eq!(got.status(), 200);
    let got: Mode = serde_json::from_value(json_of(got).await).unwrap();
    assert_eq!(got, Mode::ResetMidStream { after_chunks: 2 });

    for bad in [
        "{",
        r#"{"mode":"sideways"}"#,
        r#"{"mode":"fail","status":200}"#,
        r#"{"mode":"fail"}"#,
    ] {
        let response = put(bad).await.unwrap();
        assert_eq!(response.status(), 400, "{bad}");
        assert_openai_error(&json_of(response).await, "invalid_request_error");
    }
    assert_eq!(
        mock.mode(),
        Mode::ResetMidStream { after_chunks: 2 },
        "a bad PUT changes nothing"
    );

    assert_eq!(put(r#"{"mode":"normal"}"#).await.unwrap().status(), 204);
    assert_eq!(
        post(&mock, "/chat/completions", &chat("hi")).await.status(),
        200
    );

    let stats = http
        .get(format!("http://{}/mock/stats", mock.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(stats.status(), 200);
    let stats: MockStats = serde_json::from_value(json_of(stats).await).unwrap();
    assert_eq!(stats, mock.stats());
    assert_eq!(
        (stats.requests, stats.ok, stats.errors),
        (2, 1, 1),
        "control calls are not counted"
    );
}

#[tokio::test]
async fn stats_count_requests_outcomes_and_tokens() {
    let mock = mock_with(|o| {
        o.api_key = Some("k".into());
        o.tokens = 7;
    })
    .await;
    let http = client();
    let url = format!("{}/chat/completions", mock.base_url());
    let body = chat("12345678");
    for _ in 0..2 {
        let response = http
            .post(&url)
            .bearer_auth("k")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let embed = json!({"model": "emb", "input": "abcd"});
    let response = http
        .post(format!("{}/embeddings", mock.base_url()))
        .bearer_auth("k")
        .body(embed.to_string())
        .send()
        .await;
    assert_eq!(response.unwrap().status(), 200);
    let bad = http
        .post(&url)
        .bearer_auth("k")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let unauthorized = http.post(&url).body(body.to_string()).send().await.unwrap();
    assert_eq!(unauthorized.status(), 401);

    let stats = mock.stats();
    assert_eq!(stats.requests, 5);
    assert_eq!(stats.ok, 3);
    assert_eq!(stats.errors, 2);
    assert_eq!(stats.rate_limited, 0);
    assert_eq!(stats.prompt_tokens, 2 * (2 + 3) + 1);
    assert_eq!(stats.completion_tokens, 2 * 7);
    assert_eq!(stats.last_body.as_deref(), Some(body.to_string().as_str()));
    assert_eq!(stats.last_model.as_deref(), Some("gpt-4o"));
}

#[tokio::test]
async fn dropping_the_handle_stops_the_server_and_its_connections() {
    let mock = mock().await;
    let addr = mock.addr;
    mock.set_mode(Mode::Hang);
    let url = format!("{}/chat/completions", mock.base_url());
    let hanging =
        tokio::spawn(async move { client().post(url).body(chat("hi").to_string()).send().await });
    eventually("the hanging request to arrive", || {
        mock.stats().requests == 1
    })
    .await;
    drop(mock);
    let outcome = tokio::time::timeout(Duration::from_secs(5), hanging)
        .await
        .expect("the request ends")
        .unwrap();
    assert!(outcome.is_err(), "the connection is closed, not answered");
    let mut listening = true;
    let deadline = Instant::now() + Duration::from_secs(5);
    while listening && Instant::now() < deadline {
        listening = tokio::net::TcpStream::connect(addr).await.is_ok();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(!listening, "the listener is closed");
}

#[tokio::test]
async fn many_concurrent_requests_over_keep_alive() {
    let mock = mock_with(|o| o.tokens = 4).await;
    let http = client();
    let url = format!("{}/chat/completions", mock.base_url());
    let mut tasks = Vec::new();
    for i in 0..64 {
        let (http, url) = (http.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut body = chat("hi");
            body["stream"] = json!(i % 2 == 0);
            let response = http.post(url).body(body.to_string()).send().await.unwrap();
            assert_eq!(response.status(), 200);
            response.bytes().await.unwrap().len()
        }));
    }
    for task in tasks {
        assert!(task.await.unwrap() > 0);
    }
    let stats = mock.stats();
    assert_eq!(
        (stats.requests, stats.ok, stats.completion_tokens),
        (64, 64, 64 * 4)
    );
}

// ---------------------------------------------------------------------------
// The wire, seen from a raw socket

/// Sends one HTTP/1.1 request and reads until the server closes or errors.
async fn raw_exchange(mock: &MockHandle, body: &Value) -> (Vec<u8>, std::io::Result<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(mock.addr).await.unwrap();
    let body = body.to_string();
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: mock\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match socket.read(&mut buf).await {
            Ok(0) => return (received, Ok(())),
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) => return (received, Err(e)),
        }
    }
}

#[tokio::test]
async fn reset_before_headers_sends_an_rst() {
    let mock = mock().await;
    mock.set_mode(Mode::ResetBeforeHeaders);
    let (received, end) = raw_exchange(&mock, &chat("hi")).await;
    assert!(
        received.is_empty(),
        "{}",
        String::from_utf8_lossy(&received)
    );
    assert_eq!(end.unwrap_err().kind(), std::io::ErrorKind::ConnectionReset);
}

#[tokio::test]
async fn reset_mid_stream_never_sends_the_last_chunk() {
    let mock = mock().await;
    mock.set_mode(Mode::ResetMidStream { after_chunks: 2 });
    let mut body = chat("hi");
    body["stream"] = json!(true);
    let (received, _) = raw_exchange(&mock, &body).await;
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("transfer-encoding: chunked"), "{text}");
    assert_eq!(text.matches("data: ").count(), 2, "{text}");
    assert!(
        !text.ends_with("0\r\n\r\n"),
        "the chunked body must not be terminated: {text}"
    );

    // A clean stream, for contrast, does end with the terminating chunk.
    mock.set_mode(Mode::TruncatedStream { after_chunks: 2 });
    let (received, end) = raw_exchange(&mock, &body).await;
    assert!(end.is_ok());
    assert!(String::from_utf8_lossy(&received).ends_with("0\r\n\r\n"));
}
