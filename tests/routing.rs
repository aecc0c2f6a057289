//! The routing rules of the contract, through real HTTP: a gateway on loopback
//! in front of mock upstreams.

mod common;

use std::collections::HashMap;

use common::*;
use serde_json::json;
use switchboard::mock_upstream::Mode;

async fn tally(gw: &TestGateway, n: usize) -> HashMap<String, usize> {
    served_by(gw, "m", n).await
}

#[tokio::test]
async fn traffic_follows_tpm_limits_exactly() {
    let (a, b) = (mock().await, mock().await);
    let gw = gateway(&one_model(
        "",
        &[
            deployment("big", &a, "tpm_limit = 300000"),
            deployment("small", &b, "tpm_limit = 100000"),
        ],
    ))
    .await;
    let counts = tally(&gw, 8).await;
    assert_eq!((counts["big"], counts["small"]), (6, 2));
    assert_eq!(a.stats().requests, 6);
}

#[tokio::test]
async fn deployments_without_limits_rotate_evenly() {
    let (a, b, c) = (mock().await, mock().await, mock().await);
    let gw = gateway(&one_model(
        "",
        &[
            deployment("a", &a, ""),
            deployment("b", &b, ""),
            deployment("c", &c, ""),
        ],
    ))
    .await;
    let counts = tally(&gw, 9).await;
    assert_eq!((counts["a"], counts["b"], counts["c"]), (3, 3, 3));
}

#[tokio::test]
async fn a_mixed_set_weighs_unlimited_as_the_largest_limit() {
    let (a, b, c) = (mock().await, mock().await, mock().await);
    let gw = gateway(&one_model(
        "",
        &[
            deployment("l100", &a, "tpm_limit = 100000"),
            deployment("l300", &b, "tpm_limit = 300000"),
            deployment("unlimited", &c, ""),
        ],
    ))
    .await;
    let counts = tally(&gw, 7).await;
    assert_eq!(
        (counts["l100"], counts["l300"], counts["unlimited"]),
        (1, 3, 3)
    );
}

#[tokio::test]
async fn disabled_deployments_get_no_traffic() {
    let (a, b) = (mock().await, mock().await);
    let gw = gateway(&one_model(
        "",
        &[
            deployment("on", &a, ""),
            deployment("off", &b, "enabled = false"),
        ],
    ))
    .await;
    let counts = tally(&gw, 4).await;
    assert_eq!(counts.get("off"), None);
    assert_eq!(b.stats().requests, 0);
}

#[tokio::test]
async fn the_model_is_rewritten_to_the_deployments_model_id() {
    let a = mock().await;
    let gw = gateway(&one_model("", &[deployment("a", &a, "")])).await;
    let r = gw
        .post(
            "/v1/chat/completions",
            json!({"messages": [{"role":"user","content":"x"}], "model": "m", "temperature": 0.25}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let sent: serde_json::Value = serde_json::from_str(&a.stats().last_body.unwrap()).unwrap();
    assert_eq!(sent["model"], "a-model");
    assert_eq!(sent["temperature"], 0.25);
    assert_eq!(header(&r, "x-switchboard-attempts"), "1");
}

#[tokio::test]
async fn a_failing_deployment_is_skipped_and_cools_down_after_three_failures() {
    let (a, b) = (mock().await, mock().await);
    a.set_mode(Mode::Fail {
        status: 500,
        retry_after_s: None,
        message: None,
    });
    let gw = gateway(&one_model(
        "",
        &[deployment("a", &a, ""), deployment("b", &b, "")],
    ))
    .await;
    let mut saw_failover = false;
    for _ in 0..8 {
        let r = gw.chat("m").await;
        assert_eq!(
            r.status(),
            200,
            "every request is answered by the healthy deployment"
        );
        assert_eq!(header(&r, "x-switchboard-deployment"), "b");
        saw_failover |= header(&r, "x-switchboard-attempts") == "2";
    }
    assert!(saw_failover);
    assert_eq!(
        a.stats().requests,
        3,
        "after three failures `a` is left alone"
    );
    let d = gw.deployment("a").await;
    assert_eq!(d["state"], "cooling_down");
    assert!(d["cooldown_remaining_s"].as_f64().unwrap() > 4.0);
}

#[tokio::test]
async fn keys_and_models_that_belong_to_a_deployment_fail_over() {
    for status in [401, 403, 404, 408, 503] {
        let (a, b) = (mock().await, mock().await);
        a.set_mode(Mode::Fail {
            status,
            retry_after_s: None,
            message: None,
        });
        let gw = gateway(&one_model(
            "",
            &[deployment("a", &a, ""), deployment("b", &b, "")],
        ))
        .await;
        let r = gw.chat("m").await;
        assert_eq!(r.status(), 200, "{status} fails over");
        assert_eq!(header(&r, "x-switchboard-deployment"), "b");
    }
}

#[tokio::test]
async fn a_429_cools_down_for_as_long_as_retry_after_says() {
    let (a, b) = (mock().await, mock().await);
    a.set_mode(Mode::Fail {
        status: 429,
        retry_after_s: Some(42.0),
        message: None,
    });
    let gw = gateway(&one_model(
        "",
        &[deployment("a", &a, ""), deployment("b", &b, "")],
    ))
    .await;
    for _ in 0..4 {
        assert_eq!(gw.chat("m").await.status(), 200);
    }
    assert_eq!(a.stats().requests, 1, "one 429 is enough to keep away");
    let d = gw.deployment("a").await;
    assert_eq!(d["state"], "cooling_down");
    assert_eq!(d["cooldown_cause"], "rate_limited");
    let left = d["cooldown_remaining_s"].as_f64().unwrap();
    assert!((40.0..=42.0).contains(&left), "{left}");
}

#[tokio::test]
async fn client_errors_are_passed_back_and_not_retried() {
    let (a, b, gw) = pair(
        "",
        fail(400, None, Some("bad temperature")),
        fail(400, None, Some("bad temperature")),
    )
    .await;
    let r = gw.chat("m").await;
    assert_eq!(r.status(), 400);
    assert_eq!(header(&r, "x-switchboard-attempts"), "1");
    assert!(!header(&r, "x-switchboard-deployment").is_empty());
    let body = json(r).await;
    assert_eq!(body["error"]["message"], "bad temperature");
    assert_eq!(a.stats().requests + b.stats().requests, 1);
}

#[tokio::test]
async fn when_everything_fails_the_status_says_why() {
    // 502: the deployments tried failed.
    let (_a, _b, gw) = pair(
        "",
        fail(500, None, Some("boom-a")),
        fail(502, None, Some("boom-b")),
    )
    .await;
    let r = gw.chat("m").await;
    assert_eq!(r.status(), 502);
    assert_eq!(header(&r, "x-switchboard-attempts"), "2");
    let body = json(r).await;
    assert_eq!(body["error"]["code"], "all_deployments_failed");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("answered 50"), "{message}");
    assert!(
        !message.contains("boom"),
        "upstream text stays out of client errors: {message}"
    );

    // 504: every attempt timed out.
    let (_a, _b, gw) = pair("first_byte_timeout_s = 0.3", Mode::Hang, Mode::Hang).await;
    let r = gw.chat("m").await;
    assert_eq!(r.status(), 504);

    // 503: none enabled.
    let a = mock().await;
    let gw = gateway(&one_model("", &[deployment("a", &a, "enabled = false")])).await;
    let r = gw.chat("m").await;
    assert_eq!(r.status(), 503);

    // 429 with Retry-After: every deployment rate limited.
    let (a, b, gw) = pair("", fail(429, Some(20.0), None), fail(429, Some(9.0), None)).await;
    let r = gw.chat("m").await;
    assert_eq!(r.status(), 429);
    assert_eq!(header(&r, "retry-after"), "9");
    // And the next request does not even try them.
    let r = gw.chat("m").await;
    assert_eq!(r.status(), 429);
    assert!(header(&r, "x-switchboard-attempts").is_empty());
    assert_eq!(a.stats().requests + b.stats().requests, 2);
}

#[tokio::test]
async fn all_deployments_cooling_after_failures_is_a_503_with_retry_after() {
    let a = mock().await;
    a.set_mode(Mode::Fail {
        status: 500,
        retry_after_s: None,
        message: None,
    });
    let gw = gateway(&one_model("", &[deployment("a", &a, "")])).await;
    for _ in 0..3 {
        assert_eq!(gw.chat("m").await.status(), 502);
    }
    let r = gw.chat("m").await;
    assert_eq!(r.status(), 503);
    assert_eq!(header(&r, "retry-after"), "5");
}

#[tokio::test]
async fn a_full_tpm_window_is_skipped_and_then_refused_with_retry_after() {
    let (a, b) = (mock().await, mock().await);
    let gw = gateway(&one_model(
        "",
        &[
            deployment("a", &a, "tpm_limit = 1000"),
            deployment("b", &b, "tpm_limit = 1000"),
        ],
    ))
    .await;
    let big =
        json!({"model": "m", "max_tokens": 800, "messages": [{"role":"user","content":"hi"}]});
    let mut who = Vec::new();
    for _ in 0..2 {
        let r = gw.post("/v1/chat/completions", big.clone()).await;
        assert_eq!(r.status(), 200);
        who.push(header(&r, "x-switchboard-deployment"));
    }
    who.sort();
    assert_eq!(who, ["a", "b"]);
    // The mock's usage replaced the 800-token estimate; a request that fits
    // the remaining room still goes through.
    let used = gw.deployment("a").await["tpm_used"].as_u64().unwrap();
    assert_eq!(used, a.stats().prompt_tokens + a.stats().completion_tokens);
    let r = gw
        .post(
            "/v1/chat/completions",
            json!({"model": "m", "max_tokens": 1200, "messages": []}),
        )
        .await;
    assert_eq!(r.status(), 429, "neither window has room for 1200 more");
    let wait: u64 = header(&r, "retry-after").parse().unwrap();
    assert!((59..=60).contains(&wait), "{wait}");
    assert_eq!(json(r).await["error"]["code"], "rate_limit_exceeded");
}

#[tokio::test]
async fn tokens_are_counted_from_the_upstreams_usage() {
    let a = mock_with(|o| o.tokens = 7).await;
    let gw = gateway(&one_model("", &[deployment("a", &a, "tpm_limit = 100000")])).await;
    let r = gw.chat("m").await;
    let body = json(r).await;
    let total = body["usage"]["total_tokens"].as_u64().unwrap();
    assert_eq!(
        body["usage"]["completion_tokens"], 5,
        "max_tokens caps the mock"
    );
    assert_eq!(
        gw.deployment("a").await["tpm_used"].as_u64().unwrap(),
        total
    );
}

#[tokio::test]
async fn a_body_that_is_not_json_from_upstream_fails_over() {
    let (_a, b, gw) = pair("", Mode::Garbage, Mode::Garbage).await;
    let r = gw.chat("m").await;
    assert_eq!(r.status(), 502);
    b.set_mode(Mode::Normal);
    let mut ok = 0;
    for _ in 0..4 {
        let r = gw.chat("m").await;
        assert_eq!(r.status(), 200);
        ok += 1;
    }
    assert_eq!(ok, 4);
}

#[tokio::test]
async fn a_connection_refused_fails_over() {
    let b = mock().await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let config = format!(
        "[[models]]\nname = \"m\"\n[[models.deployments]]\nname = \"dead\"\napi_base = \"http://{dead}/v1\"\nmodel_id = \"x\"\n{}",
        deployment("b", &b, "")
    );
    let gw = gateway(&config).await;
    for _ in 0..3 {
        let r = gw.chat("m").await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-switchboard-deployment"), "b");
    }
}

#[tokio::test]
async fn an_upstream_that_stalls_after_its_headers_is_a_timeout_and_fails_over() {
    let (a, b) = (mock().await, mock().await);
    a.set_mode(Mode::HangAfterHeaders);
    let gw = gateway(&one_model(
        "first_byte_timeout_s = 0.3",
        &[deployment("a", &a, ""), deployment("b", &b, "")],
    ))
    .await;
    let r = gw.chat("m").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-switchboard-deployment"), "b");
    assert_eq!(header(&r, "x-switchboard-attempts"), "2");
}

async fn embed(gw: &TestGateway) -> reqwest::Response {
    gw.post("/v1/embeddings", json!({"model": "m", "input": "hello"}))
        .await
}

#[tokio::test]
async fn an_endpoint_no_deployment_offers_is_their_404_and_harms_no_other_endpoint() {
    use switchboard::mock_upstream::MockEndpoint;
    let a = mock_with(|o| o.without = vec![MockEndpoint::Embeddings]).await;
    let b = mock_with(|o| o.without = vec![MockEndpoint::Embeddings]).await;
    let gw = gateway(&one_model(
        "",
        &[deployment("a", &a, ""), deployment("b", &b, "")],
    ))
    .await;
    for _ in 0..5 {
        let r = embed(&gw).await;
        assert_eq!(r.status(), 404, "the upstreams' answer");
        assert_eq!(header(&r, "x-switchboard-attempts"), "2");
        assert!(["a", "b"].contains(&header(&r, "x-switchboard-deployment").as_str()));
        let e = json(r).await;
        assert_eq!(e["error"]["message"], "Invalid URL (POST /v1/embeddings)");
    }
    // Not failures: nothing cools down, chat is served as before.
    for name in ["a", "b"] {
        let d = gw.deployment(name).await;
        assert_eq!(d["state"], "healthy", "{d}");
        assert_eq!(
            (d["failures"].as_u64(), d["consecutive_failures"].as_u64()),
            (Some(0), Some(0))
        );
        assert_eq!(d["tpm_used"], 0);
        assert_eq!(
            d["last_minute"]["failures"], 0,
            "not a failure in the figures: {d}"
        );
        assert_eq!(d["last_minute"]["attempts"], 5);
    }
    let metrics = gw
        .client
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"outcome="not_offered"} 5"#) && !metrics.contains(r#"outcome="404""#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"switchboard_failovers_total{model="m"} 0"#),
        "{metrics}"
    );
    let mut served = HashMap::new();
    for _ in 0..4 {
        let r = gw.chat("m").await;
        assert_eq!(r.status(), 200);
        *served
            .entry(header(&r, "x-switchboard-deployment"))
            .or_insert(0) += 1;
    }
    assert_eq!(served.len(), 2, "both still take chat traffic: {served:?}");
}

#[tokio::test]
async fn a_deployment_without_an_endpoint_is_skipped_for_it_and_then_tried_last() {
    use switchboard::mock_upstream::MockEndpoint;
    let a = mock_with(|o| o.without = vec![MockEndpoint::Embeddings]).await;
    let b = mock().await;
    let gw = gateway(&one_model(
        "",
        &[deployment("a", &a, ""), deployment("b", &b, "")],
    ))
    .await;
    for _ in 0..6 {
        let r = embed(&gw).await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-switchboard-deployment"), "b");
    }
    assert!(
        a.stats().requests <= 1,
        "a is asked once, then remembered: {}",
        a.stats().requests
    );
    assert_eq!(gw.deployment("a").await["failures"], 0);
    // With b cooling down, a is tried after all, and the client hears that
    // the deployment that may offer embeddings is unavailable, not a 404.
    b.set_mode(fail(500, None, None));
    for _ in 0..3 {
        assert_eq!(embed(&gw).await.status(), 502);
    }
    b.set_mode(Mode::Normal);
    let before = a.stats().requests;
    let r = embed(&gw).await;
    assert_eq!(r.status(), 503, "b cools down; a does not offer embeddings");
    assert!(!header(&r, "retry-after").is_empty());
    assert_eq!(a.stats().requests, before + 1);
    assert_eq!(gw.deployment("a").await["state"], "healthy");
}

#[tokio::test]
async fn a_missing_model_still_counts_against_the_deployment_and_chat_404s_always_do() {
    use switchboard::mock_upstream::MockEndpoint;
    // A 404 that names the model (OpenAI's model_not_found) is the
    // deployment's, on every endpoint: it fails over and counts.
    let (a, _b, gw) = pair("", fail(404, None, None), Mode::Normal).await;
    for _ in 0..2 {
        let r = embed(&gw).await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-switchboard-deployment"), "b");
    }
    assert!(gw.deployment("a").await["failures"].as_u64().unwrap() >= 1);
    drop((a, gw));
    // A 404 for chat completions is always a failure, whatever it says:
    // three of them cool the deployment down.
    let a = mock_with(|o| o.without = vec![MockEndpoint::Chat]).await;
    let b = mock().await;
    let gw = gateway(&one_model(
        "",
        &[deployment("a", &a, ""), deployment("b", &b, "")],
    ))
    .await;
    for _ in 0..6 {
        let r = gw.chat("m").await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-switchboard-deployment"), "b");
    }
    let d = gw.deployment("a").await;
    assert_eq!(d["state"], "cooling_down", "{d}");
    assert_eq!(d["failures"], 3);
}

#[tokio::test]
async fn a_vllm_style_not_found_for_completions_is_an_endpoint_not_offered() {
    use axum::routing::post;
    // FastAPI's answer for a route it does not have.
    let base = serve(
        axum::Router::new()
            .route(
                "/v1/chat/completions",
                post(|| async {
                    axum::Json(json!({"id": "x", "object": "chat.completion", "choices": [],
                                      "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}))
                }),
            )
            .fallback(|| async {
                (
                    axum::http::StatusCode::NOT_FOUND,
                    axum::Json(json!({"detail": "Not Found"})),
                )
            }),
    )
    .await;
    let gw = gateway(&one_model("", &[deployment_url("v", &base, "")])).await;
    for _ in 0..4 {
        let r = gw
            .post("/v1/completions", json!({"model": "m", "prompt": "hi"}))
            .await;
        assert_eq!(r.status(), 404);
        assert_eq!(header(&r, "x-switchboard-deployment"), "v");
        assert_eq!(header(&r, "x-switchboard-attempts"), "1");
        assert_eq!(json(r).await, json!({"detail": "Not Found"}));
    }
    assert_eq!(gw.chat("m").await.status(), 200);
    assert_eq!(gw.deployment("v").await["failures"], 0);
}
