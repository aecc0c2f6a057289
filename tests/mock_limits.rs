//! The mock upstream's capacity limits over real loopback HTTP: requests
//! per minute and per slice, input and output tokens, requests in flight,
//! each with its provider's 429 and headers, and the counts in
//! `GET /mock/stats`. The official SDKs' view is in the last test (needs
//! `python3 -m pip install openai anthropic`; outside CI it says so and
//! passes without them).

mod common;

use std::time::{Duration, SystemTime};

use common::sdk::{python, sdk_available};
use futures_util::StreamExt;
use serde_json::{Value, json};
use switchboard::mock_upstream::{MockHandle, MockProvider, MockStats};

async fn mock_with(
    configure: impl FnOnce(&mut switchboard::mock_upstream::MockOptions),
) -> MockHandle {
    common::mock_with(configure).await
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

fn chat() -> Value {
    json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hello"}]})
}

fn message(max_tokens: u64, stream: bool) -> Value {
    json!({"model": "claude-sonnet-4-5", "max_tokens": max_tokens, "stream": stream,
           "messages": [{"role": "user", "content": "hello there"}]})
}

async fn post(mock: &MockHandle, path: &str, body: &Value) -> reqwest::Response {
    let mut request = client()
        .post(format!("{}{path}", mock.base_url()))
        .header("content-type", "application/json")
        .header("anthropic-version", "2023-06-01");
    if path.ends_with("/messages") {
        request = request.header("x-api-key", "sk-ant-test");
    }
    request
        .body(body.to_string())
        .send()
        .await
        .expect("the request is answered")
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

fn number(response: &reqwest::Response, name: &str) -> u64 {
    header(response, name)
        .unwrap_or_else(|| panic!("no {name} in {:?}", response.headers()))
        .parse()
        .unwrap()
}

/// OpenAI's `x-ratelimit-reset-*` notation ("59.99s", "1m0s", "250ms").
fn openai_duration(text: &str) -> Duration {
    if let Some(ms) = text.strip_suffix("ms") {
        return Duration::from_secs_f64(ms.parse::<f64>().unwrap() / 1000.0);
    }
    fn split(text: &str, unit: char) -> (f64, &str) {
        text.split_once(unit)
            .map_or((0.0, text), |(n, rest)| (n.parse().unwrap(), rest))
    }
    let (h, rest) = split(text, 'h');
    let (m, rest) = split(rest, 'm');
    let s: f64 = rest.strip_suffix('s').unwrap().parse().unwrap();
    Duration::from_secs_f64(h * 3600.0 + m * 60.0 + s)
}

/// Seconds from now until an Anthropic reset time (RFC 3339, `Z`).
fn until(rfc3339: &str) -> f64 {
    let b = rfc3339.as_bytes();
    assert_eq!((b.len(), b[10], b[19]), (20, b'T', b'Z'), "{rfc3339}");
    let n = |r: std::ops::Range<usize>| rfc3339[r].parse::<i64>().unwrap();
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    // Days since 1970 (Howard Hinnant's days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let at = days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19);
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    at as f64 - now
}

async fn json_of(response: reqwest::Response) -> Value {
    let bytes = response.bytes().await.expect("a complete body");
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
}

async fn stats_over_http(mock: &MockHandle) -> Value {
    let url = format!("http://{}/mock/stats", mock.addr);
    json_of(client().get(url).send().await.unwrap()).await
}

/// Polls the stats until `condition` holds; fails after 5 s.
async fn eventually(mock: &MockHandle, what: &str, condition: impl Fn(&MockStats) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !condition(&mock.stats()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {:?}",
            mock.stats()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// ---------------------------------------------------------------------------
// Requests per minute

#[tokio::test]
async fn the_rpm_limit_answers_openai_429s_with_request_headers() {
    let mock = mock_with(|o| o.rpm_limit = Some(3)).await;
    for left in [2, 1, 0] {
        let r = post(&mock, "/chat/completions", &chat()).await;
        assert_eq!(r.status(), 200);
        assert_eq!(number(&r, "x-ratelimit-limit-requests"), 3);
        assert_eq!(number(&r, "x-ratelimit-remaining-requests"), left);
        let reset = openai_duration(header(&r, "x-ratelimit-reset-requests").unwrap());
        assert!(reset > Duration::from_secs(59) && reset <= Duration::from_secs(60));
        assert!(
            header(&r, "x-ratelimit-limit-tokens").is_none(),
            "no TPM limit"
        );
    }
    let r = post(&mock, "/chat/completions", &chat()).await;
    assert_eq!(r.status(), 429);
    assert_eq!(number(&r, "x-ratelimit-limit-requests"), 3);
    assert_eq!(number(&r, "x-ratelimit-remaining-requests"), 0);
    let reset = openai_duration(header(&r, "x-ratelimit-reset-requests").unwrap());
    assert!(
        reset > Duration::from_secs(59) && reset <= Duration::from_secs(60),
        "the first request leaves a minute after it came: {reset:?}"
    );
    assert_eq!(number(&r, "retry-after"), 60);
    assert_eq!(number(&r, "retry-after-ms").div_ceil(1000), 60);
    let v = json_of(r).await;
    assert_eq!(v["error"]["type"], "requests", "{v}");
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    let text = v["error"]["message"].as_str().unwrap();
    assert!(text.contains("requests per min (RPM): Limit 3"), "{text}");

    let stats = mock.stats();
    assert_eq!((stats.requests, stats.ok, stats.rate_limited), (4, 3, 1));
    assert_eq!(stats.rate_limited_by.requests, 1);
    assert_eq!(stats.rate_limited_by.tokens, 0);
}

#[tokio::test]
async fn azure_slices_refuse_a_burst_the_minute_allows() {
    // 120 a minute in 1 s slices: 2 a second.
    let mock = mock_with(|o| {
        o.provider = MockProvider::Azure;
        o.rpm_limit = Some(120);
        o.rpm_slice_s = Some(1);
    })
    .await;
    let path = "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21";
    let first = post(&mock, path, &chat()).await;
    assert_eq!(first.status(), 200);
    assert_eq!(number(&first, "x-ratelimit-limit-requests"), 120);
    assert_eq!(
        number(&first, "x-ratelimit-remaining-requests"),
        1,
        "the slice's remaining, the lesser"
    );
    assert_eq!(post(&mock, path, &chat()).await.status(), 200);
    let refused = post(&mock, path, &chat()).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(number(&refused, "x-ratelimit-remaining-requests"), 0);
    assert_eq!(number(&refused, "retry-after"), 1);
    let wait = openai_duration(header(&refused, "x-ratelimit-reset-requests").unwrap());
    assert!(wait <= Duration::from_secs(1), "{wait:?}");
    let text = json_of(refused).await["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(text.contains("requests per 1s: Limit 2"), "{text}");
    // The slice frees in time; the minute still has room.
    tokio::time::sleep(wait).await;
    let again = post(&mock, path, &chat()).await;
    assert_eq!(again.status(), 200);
    assert_eq!(mock.stats().rate_limited_by.requests, 1);
}

#[tokio::test]
async fn anthropic_reports_requests_in_its_headers() {
    let mock = mock_with(|o| {
        o.provider = MockProvider::Anthropic;
        o.rpm_limit = Some(2);
    })
    .await;
    let r = post(&mock, "/v1/messages", &message(50, false)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(number(&r, "anthropic-ratelimit-requests-limit"), 2);
    assert_eq!(number(&r, "anthropic-ratelimit-requests-remaining"), 1);
    let reset = until(header(&r, "anthropic-ratelimit-requests-reset").unwrap());
    assert!((58.0..=61.0).contains(&reset), "{reset}");
    for absent in ["tokens", "input-tokens", "output-tokens"] {
        let name = format!("anthropic-ratelimit-{absent}-limit");
        assert!(header(&r, &name).is_none(), "{name}: no such limit");
    }
    assert_eq!(
        post(&mock, "/v1/messages", &message(50, true))
            .await
            .status(),
        200
    );
    let r = post(&mock, "/v1/messages", &message(50, false)).await;
    assert_eq!(r.status(), 429);
    assert_eq!(number(&r, "anthropic-ratelimit-requests-remaining"), 0);
    let reset = until(header(&r, "anthropic-ratelimit-requests-reset").unwrap());
    assert!((58.0..=61.0).contains(&reset), "{reset}");
    assert_eq!(number(&r, "retry-after"), 60);
    let v = json_of(r).await;
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "rate_limit_error", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("2 requests per minute")
    );
    assert_eq!(mock.stats().rate_limited_by.requests, 1);
}

#[tokio::test]
async fn bedrock_throttles_over_the_request_limit() {
    let mock = mock_with(|o| {
        o.provider = MockProvider::Bedrock;
        o.rpm_limit = Some(1);
    })
    .await;
    let body = json!({"messages": [{"role": "user", "content": [{"text": "hi"}]}]});
    let path = "/model/anthropic.claude-sonnet-4-5-20250929-v1:0/converse";
    assert_eq!(post(&mock, path, &body).await.status(), 200);
    let r = post(&mock, path, &body).await;
    assert_eq!(r.status(), 429);
    assert!(header(&r, "x-amzn-errortype").is_some_and(|t| t.starts_with("ThrottlingException")));
    assert_eq!(
        json_of(r).await["message"],
        "Too many requests, please wait before trying again."
    );
}

// ---------------------------------------------------------------------------
// Input and output tokens

#[tokio::test]
async fn anthropic_input_and_output_run_out_apart() {
    // "hello there" is 3 input tokens; each answer writes 5 of max_tokens.
    let mock = mock_with(|o| {
        o.provider = MockProvider::Anthropic;
        o.tokens = 5;
        o.input_tpm_limit = Some(8);
        o.output_tpm_limit = Some(150);
    })
    .await;
    let r = post(&mock, "/v1/messages", &message(100, false)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(number(&r, "anthropic-ratelimit-input-tokens-limit"), 8);
    assert_eq!(number(&r, "anthropic-ratelimit-input-tokens-remaining"), 5);
    assert_eq!(number(&r, "anthropic-ratelimit-output-tokens-limit"), 150);
    assert_eq!(
        number(&r, "anthropic-ratelimit-output-tokens-remaining"),
        50,
        "max_tokens is reserved at admission"
    );
    let v = json_of(r).await;
    assert_eq!(v["usage"]["output_tokens"], 5);
    // The answer has ended: its output counts 5, not 100, so 100 fit again.
    let r = post(&mock, "/v1/messages", &message(100, false)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        number(&r, "anthropic-ratelimit-output-tokens-remaining"),
        45
    );
    assert_eq!(number(&r, "anthropic-ratelimit-input-tokens-remaining"), 2);

    // Both: 200 more output does not fit, and input has 2 left of 3.
    let out = post(&mock, "/v1/messages", &message(200, false)).await;
    assert_eq!(out.status(), 429);
    assert_eq!(
        number(&out, "anthropic-ratelimit-output-tokens-remaining"),
        0
    );
    assert_eq!(
        number(&out, "anthropic-ratelimit-input-tokens-remaining"),
        0
    );
    // Input alone: ask for little output after input ran out.
    let r = post(&mock, "/v1/messages", &message(1, false)).await;
    assert_eq!(r.status(), 429);
    assert_eq!(number(&r, "anthropic-ratelimit-input-tokens-remaining"), 0);
    assert_eq!(
        number(&r, "anthropic-ratelimit-output-tokens-remaining"),
        140,
        "output did not run out: what it really has left"
    );
    let input_reset = until(header(&r, "anthropic-ratelimit-input-tokens-reset").unwrap());
    assert!((58.0..=61.0).contains(&input_reset), "{input_reset}");
    assert!(number(&r, "retry-after") >= 59);
    let v = json_of(r).await;
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("8 input tokens per minute"),
        "{v}"
    );
    let by = mock.stats().rate_limited_by;
    assert_eq!((by.input, by.output, by.tokens), (2, 1, 0), "{by:?}");
}

#[tokio::test]
async fn anthropic_output_only_runs_out_with_its_own_headers() {
    let mock = mock_with(|o| {
        o.provider = MockProvider::Anthropic;
        o.tokens = 5;
        o.input_tpm_limit = Some(1000);
        o.output_tpm_limit = Some(150);
    })
    .await;
    assert_eq!(
        post(&mock, "/v1/messages", &message(100, false))
            .await
            .status(),
        200
    );
    let r = post(&mock, "/v1/messages", &message(146, false)).await;
    assert_eq!(r.status(), 429, "5 used + 146 > 150");
    assert_eq!(number(&r, "anthropic-ratelimit-output-tokens-remaining"), 0);
    assert_eq!(number(&r, "anthropic-ratelimit-output-tokens-limit"), 150);
    assert_eq!(
        number(&r, "anthropic-ratelimit-input-tokens-remaining"),
        997,
        "input is not used up: what it really has left"
    );
    let reset = until(header(&r, "anthropic-ratelimit-output-tokens-reset").unwrap());
    assert!((58.0..=61.0).contains(&reset), "{reset}");
    let v = json_of(r).await;
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("150 output tokens per minute"),
        "{v}"
    );
    assert_eq!(mock.stats().rate_limited_by.output, 1);
    assert_eq!(mock.stats().rate_limited_by.input, 0);
}

#[tokio::test]
async fn a_stream_holds_its_output_reservation_until_it_ends() {
    let mock = mock_with(|o| {
        o.provider = MockProvider::Anthropic;
        o.tokens = 5;
        o.chunk_delay_ms = 40;
        o.output_tpm_limit = Some(150);
    })
    .await;
    let stream = post(&mock, "/v1/messages", &message(100, true)).await;
    assert_eq!(stream.status(), 200);
    assert_eq!(
        number(&stream, "anthropic-ratelimit-output-tokens-remaining"),
        50
    );
    let during = post(&mock, "/v1/messages", &message(100, false)).await;
    assert_eq!(during.status(), 429, "100 still reserved by the stream");
    let body = stream.bytes().await.unwrap();
    assert!(String::from_utf8_lossy(&body).contains("message_stop"));
    // Hyper drops the body, and with it the reservation, after the last
    // frame: by the time the client has it all, or very soon after.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let after = post(&mock, "/v1/messages", &message(100, false)).await;
        if after.status() == 200 {
            assert_eq!(
                number(&after, "anthropic-ratelimit-output-tokens-remaining"),
                45
            );
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never settled");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn openai_input_limits_say_which_in_the_error() {
    let mock = mock_with(|o| {
        o.input_tpm_limit = Some(6);
        o.output_tpm_limit = Some(1000);
    })
    .await;
    // "hello" costs 5 prompt tokens.
    let r = post(&mock, "/chat/completions", &chat()).await;
    assert_eq!(r.status(), 200);
    assert!(
        header(&r, "x-ratelimit-limit-tokens").is_none(),
        "OpenAI has no input or output headers"
    );
    let r = post(&mock, "/chat/completions", &chat()).await;
    assert_eq!(r.status(), 429);
    assert!((59..=60).contains(&number(&r, "retry-after")));
    let v = json_of(r).await;
    assert_eq!(v["error"]["type"], "input_tokens", "{v}");
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("input tokens per min (ITPM): Limit 6, Used 5, Requested 5")
    );
    // max_tokens is reserved against the output limit.
    let mut big = chat();
    big["max_tokens"] = json!(1001);
    let fresh = mock_with(|o| o.output_tpm_limit = Some(1000)).await;
    let r = post(&fresh, "/chat/completions", &big).await;
    assert_eq!(r.status(), 429);
    let v = json_of(r).await;
    assert_eq!(v["error"]["type"], "output_tokens", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Request too large")
    );
}

// ---------------------------------------------------------------------------
// Requests in flight

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_burst_never_gets_past_max_in_flight() {
    let mock = mock_with(|o| {
        o.max_in_flight = Some(4);
        // Long enough that the whole burst arrives while the first are served.
        o.latency_ms = 800;
    })
    .await;
    let http = client();
    let url = format!("{}/chat/completions", mock.base_url());
    let burst = (0..24).map(|_| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let r = http
                .post(&url)
                .body(chat().to_string())
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let retry_after = header(&r, "retry-after").map(String::from);
            let body = r.bytes().await.unwrap();
            (status, retry_after, body)
        }
    });
    let answers = futures_util::future::join_all(burst).await;
    let ok = answers.iter().filter(|(s, ..)| *s == 200).count();
    let limited: Vec<_> = answers.iter().filter(|(s, ..)| *s == 429).collect();
    assert_eq!(ok + limited.len(), 24, "only 200s and 429s");
    assert!((1..=4).contains(&ok), "{ok} served at once");
    for (_, retry_after, body) in &limited {
        assert_eq!(retry_after.as_deref(), Some("1"));
        let v: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(v["error"]["code"], "rate_limit_exceeded", "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("concurrent requests: Limit 4")
        );
    }
    let stats = mock.stats();
    assert!(stats.max_in_flight_seen <= 4, "{stats:?}");
    assert_eq!(stats.rate_limited_by.in_flight, limited.len() as u64);
    assert_eq!(stats.rate_limited, limited.len() as u64);
    eventually(&mock, "every slot back", |s| s.in_flight == 0).await;
}

#[tokio::test]
async fn a_stream_is_in_flight_until_its_last_byte_or_its_client_leaves() {
    let mock = mock_with(|o| {
        o.provider = MockProvider::Anthropic;
        o.max_in_flight = Some(1);
        o.tokens = 5;
        o.chunk_delay_ms = 50;
    })
    .await;
    let stream = post(&mock, "/v1/messages", &message(50, true)).await;
    assert_eq!(stream.status(), 200);
    assert_eq!(mock.stats().in_flight, 1);
    let refused = post(&mock, "/v1/messages", &message(50, false)).await;
    assert_eq!(refused.status(), 429, "Anthropic's 429, not its 529");
    assert_eq!(number(&refused, "retry-after"), 1);
    let v = json_of(refused).await;
    assert_eq!(v["error"]["type"], "rate_limit_error", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1 concurrent requests")
    );
    stream.bytes().await.unwrap();
    eventually(&mock, "the stream's slot back", |s| s.in_flight == 0).await;
    assert_eq!(
        post(&mock, "/v1/messages", &message(50, false))
            .await
            .status(),
        200
    );

    // A client that leaves mid-stream gives its slot back.
    let stream = post(&mock, "/v1/messages", &message(50, true)).await;
    let mut chunks = stream.bytes_stream();
    chunks.next().await.unwrap().unwrap();
    assert_eq!(mock.stats().in_flight, 1);
    drop(chunks);
    eventually(&mock, "the slot of a client gone", |s| s.in_flight == 0).await;
    assert_eq!(mock.stats().max_in_flight_seen, 1);
    assert_eq!(mock.stats().rate_limited_by.in_flight, 1);
}

#[tokio::test]
async fn a_request_waiting_for_its_headers_is_in_flight() {
    let mock = mock_with(|o| {
        o.max_in_flight = Some(1);
        o.latency_ms = 400;
    })
    .await;
    let slow = tokio::spawn({
        let url = format!("{}/chat/completions", mock.base_url());
        async move { client().post(url).body(chat().to_string()).send().await }
    });
    eventually(&mock, "the first in flight", |s| s.in_flight == 1).await;
    let r = post(&mock, "/chat/completions", &chat()).await;
    assert_eq!(r.status(), 429);
    // Listings are not limited.
    let models = client()
        .get(format!("{}/models", mock.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(models.status(), 200);
    assert_eq!(slow.await.unwrap().unwrap().status(), 200);
}

// ---------------------------------------------------------------------------
// Stats

#[tokio::test]
async fn mock_stats_count_429s_by_limit() {
    let mock = mock_with(|o| {
        o.tpm_limit = Some(40);
        o.rpm_limit = Some(2);
    })
    .await;
    // 5 prompt + 16 completion = 21 tokens each.
    assert_eq!(
        post(&mock, "/chat/completions", &chat()).await.status(),
        200
    );
    let r = post(&mock, "/chat/completions", &chat()).await;
    assert_eq!(r.status(), 429, "tokens ran out first");
    assert_eq!(number(&r, "x-ratelimit-remaining-tokens"), 19);
    assert_eq!(
        number(&r, "x-ratelimit-remaining-requests"),
        1,
        "requests did not run out"
    );
    assert_eq!(json_of(r).await["error"]["type"], "tokens");
    let mut small = chat();
    small["max_tokens"] = json!(1);
    assert_eq!(post(&mock, "/chat/completions", &small).await.status(), 200);
    let r = post(&mock, "/chat/completions", &small).await;
    assert_eq!(r.status(), 429, "requests ran out");
    assert_eq!(number(&r, "x-ratelimit-remaining-requests"), 0);

    let v = stats_over_http(&mock).await;
    assert_eq!(v["requests"], 4, "{v}");
    assert_eq!(v["rate_limited"], 2);
    assert_eq!(
        v["rate_limited_by"],
        json!({"tokens": 1, "requests": 1, "input": 0, "output": 0, "in_flight": 0})
    );
    assert_eq!(v["in_flight"], 0);
    assert_eq!(v["max_in_flight_seen"], 1);
}

// ---------------------------------------------------------------------------
// The official SDKs

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdks_raise_rate_limit_errors_with_the_headers() {
    if !sdk_available("openai") || !sdk_available("anthropic") {
        return;
    }
    let openai = mock_with(|o| o.rpm_limit = Some(1)).await;
    let anthropic = mock_with(|o| {
        o.provider = MockProvider::Anthropic;
        o.tokens = 5;
        o.chunk_delay_ms = 200;
        o.input_tpm_limit = Some(10_000);
        o.output_tpm_limit = Some(150);
    })
    .await;
    let seen = python(
        "rate_limits_mock.py",
        vec![openai.base_url(), anthropic.base_url()],
    )
    .await;
    assert_eq!(seen["openai_ok"]["remaining"], "0", "{seen}");
    let o = &seen["openai"];
    assert_eq!(o["class"], "RateLimitError", "{seen}");
    assert_eq!(o["status"], 429);
    assert_eq!(o["code"], "rate_limit_exceeded");
    assert_eq!(o["limit"], "1");
    assert_eq!(o["remaining"], "0");
    assert_eq!(o["retry_after"], "60");
    assert!(o["reset"].as_str().unwrap().ends_with('s'), "{seen}");

    assert_eq!(seen["anthropic_ok"]["output_remaining"], "50", "{seen}");
    let a = &seen["anthropic"];
    assert_eq!(a["class"], "RateLimitError", "{seen}");
    assert_eq!(a["status"], 429);
    assert_eq!(a["type"], "rate_limit_error");
    assert_eq!(a["output_limit"], "150");
    assert_eq!(a["output_remaining"], "0");
    assert_ne!(a["input_remaining"], "0", "{seen}");
    let reset = until(a["output_reset"].as_str().unwrap());
    assert!((58.0..=61.0).contains(&reset), "{seen}");
    assert!(a["retry_after"].as_str().unwrap().parse::<u64>().unwrap() >= 59);
}
