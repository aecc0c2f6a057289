//! Timeouts that fail over: a deployment's own first-byte and request
//! timeouts, and the stream idle timeout before and after the first byte,
//! each against mock upstreams that stall on purpose.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use switchboard::events::{Event, RequestEvent, RequestOutcome};
use switchboard::mock_upstream::Mode;

fn stream_body() -> serde_json::Value {
    json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]})
}

/// The next request event.
async fn next_request(
    events: &mut tokio::sync::broadcast::Receiver<switchboard::events::Published>,
) -> RequestEvent {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Event::Request(r) = &*events.recv().await.unwrap() {
                return r.clone();
            }
        }
    })
    .await
    .expect("a request event")
}

fn attempts(ev: &RequestEvent) -> Vec<(String, String)> {
    ev.attempts
        .iter()
        .map(|a| (a.deployment.to_string(), a.outcome.label()))
        .collect()
}

#[tokio::test]
async fn a_deployments_first_byte_timeout_fails_over_to_another_one() {
    let (slow, fast) = (mock().await, mock().await);
    slow.set_mode(Mode::SlowFirstByte { delay_ms: 3000 });
    // The server would wait 30 s; the slow deployment's own limit is 0.3 s.
    let gw = gateway(&one_model(
        "first_byte_timeout_s = 30",
        &[
            deployment("slow", &slow, "first_byte_timeout_s = 0.3"),
            deployment("fast", &fast, ""),
        ],
    ))
    .await;
    let mut events = gw.gateway.events().subscribe();
    let mut failed_over = 0;
    for body in [
        stream_body(),
        stream_body(),
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
    ] {
        let started = Instant::now();
        let r = gw.post("/v1/chat/completions", body).await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-switchboard-deployment"), "fast");
        let _ = r.bytes().await.unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        let ev = next_request(&mut events).await;
        let tried = attempts(&ev);
        if tried.len() == 2 {
            failed_over += 1;
            assert_eq!(
                tried,
                [
                    ("slow".into(), "✗timeout".into()),
                    ("fast".into(), "✓".into())
                ]
            );
        }
    }
    assert!(
        failed_over >= 1,
        "the slow deployment was tried first at least once"
    );
}

#[tokio::test]
async fn a_first_byte_timeout_never_tries_the_same_deployment_twice() {
    let slow = mock().await;
    slow.set_mode(Mode::SlowFirstByte { delay_ms: 3000 });
    let gw = gateway(&one_model(
        "request_timeout_s = 20",
        &[deployment("slow", &slow, "first_byte_timeout_s = 0.3")],
    ))
    .await;
    let started = Instant::now();
    let r = gw.post("/v1/chat/completions", stream_body()).await;
    // Its one deployment timed out: the request is over, not retried on it.
    assert_eq!(r.status(), 504);
    assert_eq!(header(&r, "x-switchboard-attempts"), "1");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(slow.stats().requests, 1);
}

#[tokio::test]
async fn a_deployments_request_timeout_ends_its_attempt_and_the_next_gets_the_rest() {
    let (stalling, good) = (mock().await, mock().await);
    // Headers and half the body, then silence: only a request timeout ends it.
    stalling.set_mode(Mode::StallMidStream { after_chunks: 0 });
    let gw = gateway(&one_model(
        "request_timeout_s = 30",
        &[
            deployment("stalling", &stalling, "request_timeout_s = 0.4"),
            deployment("good", &good, ""),
        ],
    ))
    .await;
    let mut events = gw.gateway.events().subscribe();
    for _ in 0..2 {
        let started = Instant::now();
        let r = gw.chat("m").await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-switchboard-deployment"), "good");
        assert!(started.elapsed() < Duration::from_secs(3));
        let ev = next_request(&mut events).await;
        if ev.attempts.len() == 2 {
            assert_eq!(ev.attempts[0].outcome.label(), "✗timeout");
        }
    }
    assert!(stalling.stats().requests >= 1);
    assert!(
        gw.deployment("stalling").await["failures"]
            .as_u64()
            .unwrap()
            >= 1
    );
}

#[tokio::test]
async fn a_stream_silent_after_its_headers_fails_over_before_its_first_byte() {
    let (silent, good) = (mock().await, mock().await);
    silent.set_mode(Mode::HangAfterHeaders);
    let gw = gateway(&one_model(
        "first_byte_timeout_s = 30\nstream_idle_timeout_s = 0.3",
        &[
            deployment("silent", &silent, ""),
            deployment("good", &good, ""),
        ],
    ))
    .await;
    let mut events = gw.gateway.events().subscribe();
    let mut failed_over = false;
    for _ in 0..2 {
        let started = Instant::now();
        let r = gw.post("/v1/chat/completions", stream_body()).await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-switchboard-deployment"), "good");
        let frames = sse_data(r).await;
        assert_eq!(frames.last().unwrap(), "[DONE]");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "the idle limit, not the 30 s first-byte timeout"
        );
        let ev = next_request(&mut events).await;
        if ev.attempts.len() == 2 {
            failed_over = true;
            assert_eq!(
                attempts(&ev),
                [
                    ("silent".into(), "✗timeout".into()),
                    ("good".into(), "✓".into())
                ]
            );
        }
    }
    assert!(failed_over);
    // The deployment's failure, counted.
    assert_eq!(gw.deployment("silent").await["failures"], 1);
}

#[tokio::test]
async fn a_stream_silent_mid_answer_ends_with_an_error_event_and_counts_as_a_failure() {
    let a = mock_with(|o| o.tokens = 10).await;
    a.set_mode(Mode::StallMidStream { after_chunks: 3 });
    // The deployment's own idle limit; the server has none.
    let gw = gateway(&one_model(
        "",
        &[deployment(
            "a",
            &a,
            "stream_idle_timeout_s = 0.3\ntpm_limit = 100000",
        )],
    ))
    .await;
    let mut events = gw.gateway.events().subscribe();
    let started = Instant::now();
    let r = gw.post("/v1/chat/completions", stream_body()).await;
    assert_eq!(r.status(), 200);
    let frames = sse_data(r).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(frames[0].contains("\"role\":\"assistant\""), "{frames:?}");
    assert!(
        !frames.iter().any(|f| f == "[DONE]"),
        "never a clean end: {frames:?}"
    );
    let err: serde_json::Value = serde_json::from_str(frames.last().unwrap()).unwrap();
    assert_eq!(err["error"]["code"], "stream_idle_timeout", "{err}");
    let ev = next_request(&mut events).await;
    assert_eq!(ev.outcome, RequestOutcome::StreamInterrupted);
    let d = gw.deployment("a").await;
    assert_eq!(d["failures"], 1, "{d}");
    assert!(
        d["tpm_used"].as_u64().unwrap() > 0,
        "what streamed is counted"
    );
}

#[tokio::test]
async fn a_slow_stream_whose_chunks_come_within_the_idle_limit_is_not_cut() {
    let a = mock_with(|o| {
        o.tokens = 5;
        o.chunk_delay_ms = 250;
    })
    .await;
    // The server's 0.1 s would cut it; the deployment's own 1 s lets it through,
    // though the whole stream takes longer than that.
    let gw = gateway(&one_model(
        "stream_idle_timeout_s = 0.1",
        &[deployment("a", &a, "stream_idle_timeout_s = 1")],
    ))
    .await;
    let started = Instant::now();
    let r = gw.post("/v1/chat/completions", stream_body()).await;
    assert_eq!(r.status(), 200);
    let frames = sse_data(r).await;
    assert!(started.elapsed() > Duration::from_secs(1));
    assert_eq!(frames.last().unwrap(), "[DONE]", "{frames:?}");
    assert_eq!(gw.deployment("a").await["failures"], 0);
}

#[tokio::test]
async fn a_finished_stream_whose_upstream_lingers_ends_cleanly_at_the_idle_limit() {
    // The whole answer and [DONE], then the response is held open.
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(|| async {
            let frames = [
                r#"data: {"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}"#,
                r#"data: {"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
                "data: [DONE]",
            ]
            .map(|f| Ok::<_, std::convert::Infallible>(bytes::Bytes::from(format!("{f}\n\n"))));
            let body = futures_util::StreamExt::chain(
                futures_util::stream::iter(frames),
                futures_util::stream::pending(),
            );
            axum::response::Response::builder()
                .header("content-type", "text/event-stream")
                .body(axum::body::Body::from_stream(body))
                .unwrap()
        }),
    );
    let base = serve(app).await;
    let gw = gateway(&one_model(
        "stream_idle_timeout_s = 0.3",
        &[deployment_url("lingers", &base, "")],
    ))
    .await;
    let mut events = gw.gateway.events().subscribe();
    let frames = sse_data(gw.post("/v1/chat/completions", stream_body()).await).await;
    assert_eq!(frames.last().unwrap(), "[DONE]", "{frames:?}");
    assert!(
        !frames.iter().any(|f| f.contains("\"error\"")),
        "{frames:?}"
    );
    assert_eq!(next_request(&mut events).await.outcome, RequestOutcome::Ok);
    assert_eq!(gw.deployment("lingers").await["failures"], 0);
}
