//! Deployments of different providers serving one model: failover and
//! cooldowns across them, each provider's own rate-limit signals, streams
//! that break before and after their first byte, endpoints a provider does
//! not offer.

mod common;

use common::*;
use serde_json::json;
use switchboard::mock_upstream::{MockHandle, MockProvider, Mode};

async fn anthropic_mock() -> MockHandle {
    mock_with(|o| {
        o.provider = MockProvider::Anthropic;
        o.api_key = Some("sk-ant-test-0123456789".into());
        o.tokens = 4;
    })
    .await
}

fn anthropic(name: &str, m: &MockHandle) -> String {
    format!(
        "\n[[models.deployments]]\nname = \"{name}\"\nprovider = \"anthropic\"\napi_base = \"{}\"\napi_key = \"sk-ant-test-0123456789\"\nmodel_id = \"claude-sonnet-4-5\"\n",
        m.base_url()
    )
}

async fn mixed() -> (MockHandle, MockHandle, TestGateway) {
    let a = anthropic_mock().await;
    let o = mock_with(|o| o.tokens = 4).await;
    let gw = gateway(&one_model(
        "",
        &[anthropic("claude", &a), deployment("openai", &o, "")],
    ))
    .await;
    (a, o, gw)
}

#[tokio::test]
async fn an_overloaded_anthropic_fails_over_to_openai_and_cools_down() {
    let (a, o, gw) = mixed().await;
    a.set_mode(fail(529, None, Some("Overloaded")));
    for _ in 0..8 {
        let r = gw.chat("m").await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-switchboard-deployment"), "openai");
    }
    let d = gw.deployment("claude").await;
    // One 529 cools it down as a 429 does, not three failures in a row.
    assert_eq!(d["state"], "cooling_down", "{d}");
    assert_eq!(d["cooldown_cause"], "rate_limited", "{d}");
    assert_eq!(d["failures"], 0, "an overload is not a failure: {d}");
    assert_eq!(a.stats().requests, 1, "not asked while cooling down");
    assert!(o.stats().ok >= 8);
}

#[tokio::test]
async fn anthropics_retry_after_and_reset_times_cool_it_down_for_as_long() {
    let (a, _o, gw) = mixed().await;
    a.set_mode(fail(429, Some(40.0), None));
    // Until it answers 429 once, it takes its share; after, it waits.
    let mut saw_429 = false;
    for _ in 0..4 {
        let r = gw.chat("m").await;
        assert_eq!(r.status(), 200);
        saw_429 |= header(&r, "x-switchboard-attempts") == "2";
    }
    assert!(saw_429);
    let d = gw.deployment("claude").await;
    assert_eq!(d["cooldown_cause"], "rate_limited", "{d}");
    let left = d["cooldown_remaining_s"].as_f64().unwrap();
    assert!((35.0..=40.0).contains(&left), "retry-after 40 s: {left}");
}

#[tokio::test]
async fn the_mocks_own_tpm_limit_is_read_from_anthropics_headers() {
    let a = mock_with(|o| {
        o.provider = MockProvider::Anthropic;
        o.tpm_limit = Some(30);
        o.tokens = 8;
    })
    .await;
    let o = mock().await;
    let claude = anthropic("claude", &a).replace("api_key = \"sk-ant-test-0123456789\"\n", "");
    let gw = gateway(&one_model("", &[claude, deployment("openai", &o, "")])).await;
    let mut limited = false;
    for _ in 0..16 {
        assert_eq!(gw.chat("m").await.status(), 200);
        let d = gw.deployment("claude").await;
        if d["cooldown_cause"] == "rate_limited" {
            limited = true;
            assert!(
                d["cooldown_remaining_s"].as_f64().unwrap() > 5.0,
                "the reset time, not the 5 s default: {d}"
            );
            break;
        }
    }
    assert!(limited, "the mock's 429 cooled the deployment down");
}

#[tokio::test]
async fn an_anthropic_error_before_the_first_byte_fails_over_and_after_it_ends_the_stream() {
    let (a, _o, gw) = mixed().await;
    let stream =
        json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    // An error as the first event: nothing reached the client, so another deployment answers.
    a.set_mode(Mode::ErrorMidStream {
        after_chunks: 0,
        exception: None,
    });
    for _ in 0..3 {
        let r = gw.post("/v1/chat/completions", stream.clone()).await;
        assert_eq!(r.status(), 200);
        let deployment = header(&r, "x-switchboard-deployment");
        let frames = sse_data(r).await;
        assert_eq!(frames.last().unwrap(), "[DONE]", "{deployment}: {frames:?}");
    }
    // After the first events: the client hears an error event, not a clean end.
    a.set_mode(Mode::ErrorMidStream {
        after_chunks: 4,
        exception: None,
    });
    let gw2 = gateway(&one_model("", &[anthropic("claude", &a)])).await;
    let r = gw2.post("/v1/chat/completions", stream).await;
    assert_eq!(r.status(), 200);
    let frames = sse_data(r).await;
    assert!(frames[0].contains("\"role\":\"assistant\""), "{frames:?}");
    let last = frames.last().unwrap();
    assert!(
        last.contains("\"error\"") && last.contains("overloaded_error"),
        "{frames:?}"
    );
    assert!(!frames.iter().any(|f| f == "[DONE]"));
}

#[tokio::test]
async fn a_parameter_anthropic_cannot_honour_goes_to_the_deployments_that_can() {
    let (a, o, gw) = mixed().await;
    let before = a.stats().requests;
    for _ in 0..3 {
        let r = gw
            .post(
                "/v1/chat/completions",
                json!({"model": "m", "n": 2, "messages": [{"role": "user", "content": "hi"}]}),
            )
            .await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-switchboard-deployment"), "openai");
    }
    assert_eq!(a.stats().requests, before, "never sent to Anthropic");
    assert_eq!(gw.deployment("claude").await["failures"], 0);
    assert!(o.stats().ok >= 3);
    // Only Anthropic: the client hears which parameter.
    let only = gateway(&one_model("", &[anthropic("claude", &a)])).await;
    let r = only
        .post(
            "/v1/chat/completions",
            json!({"model": "m", "n": 2, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(r.status(), 400);
    let e = json(r).await;
    assert_eq!(e["error"]["param"], "n", "{e}");
    assert_eq!(e["error"]["code"], "unsupported_parameter");
}

#[tokio::test]
async fn embeddings_skip_anthropic_deployments() {
    let (a, o, gw) = mixed().await;
    let r = gw
        .post("/v1/embeddings", json!({"model": "m", "input": "x"}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-switchboard-deployment"), "openai");
    assert_eq!(a.stats().requests, 0);
    assert_eq!(o.stats().ok, 1);
    let only = gateway(&one_model("", &[anthropic("claude", &a)])).await;
    let r = only
        .post("/v1/embeddings", json!({"model": "m", "input": "x"}))
        .await;
    assert_eq!(r.status(), 404);
    let e = json(r).await;
    assert_eq!(e["error"]["code"], "endpoint_not_supported");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/embeddings"),
        "{e}"
    );
}

#[tokio::test]
async fn anthropics_client_errors_come_back_in_openais_shape_and_keys_stay_home() {
    let a = anthropic_mock().await;
    let gw = gateway(&one_model(
        "api_keys = [\"sk-client-0123456789\"]",
        &[anthropic("claude", &a)],
    ))
    .await;
    // temperature 1.5 is OpenAI's range, not Anthropic's: the upstream's 400.
    let r = gw
        .client
        .post(gw.url("/v1/chat/completions"))
        .header("authorization", "Bearer sk-client-0123456789")
        .header("content-type", "application/json")
        .body(json!({"model": "m", "temperature": 1.5, "messages": [{"role": "user", "content": "hi"}]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(header(&r, "x-switchboard-deployment"), "claude");
    let e = json(r).await;
    assert_eq!(e["error"]["type"], "invalid_request_error", "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("temperature")
    );
    assert_eq!(
        gw.deployment("claude").await["failures"],
        0,
        "the client's mistake"
    );
    let body = a.stats().last_body.unwrap();
    assert!(
        !body.contains("sk-client"),
        "the client's key never travels upstream"
    );
}
