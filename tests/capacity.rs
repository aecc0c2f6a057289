//! Capacity through real HTTP: places in flight, the queue that waits for
//! room instead of a 429, and the `x-ratelimit-*` headers clients back off
//! by. A gateway on loopback in front of mock upstreams; the waits are
//! watched through `/admin/state`, never guessed with sleeps.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// Polls `/admin/state` until `ok` holds for model `m` (bounded).
async fn until(gw: &TestGateway, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let state = gw.state().await;
        let model = state["models"][0].clone();
        if ok(&model) {
            return model;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "never: {what}; last state {model}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn queued(m: &Value) -> u64 {
    m["queue"]["length"].as_u64().unwrap()
}

fn in_flight(m: &Value) -> u64 {
    m["deployments"][0]["in_flight"].as_u64().unwrap()
}

/// A request sent in the background; yields its status, queued-ms header
/// and when it finished.
fn send(gw: &TestGateway) -> tokio::task::JoinHandle<(u16, Option<u64>, Instant)> {
    let (client, url) = (gw.client.clone(), gw.url("/v1/chat/completions"));
    tokio::spawn(async move {
        let r = client
            .post(url)
            .header("content-type", "application/json")
            .body(r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#)
            .send()
            .await
            .unwrap();
        let queued = r
            .headers()
            .get("x-switchboard-queued-ms")
            .map(|v| v.to_str().unwrap().parse().unwrap());
        let status = r.status().as_u16();
        let _ = r.bytes().await;
        (status, queued, Instant::now())
    })
}

#[tokio::test]
async fn a_full_deployment_makes_requests_wait_in_order_instead_of_429() {
    let slow = mock_with(|o| o.latency_ms = 300).await;
    let gw = gateway(&one_model(
        "max_wait_s = 10",
        &[deployment("vllm", &slow, "max_in_flight = 1")],
    ))
    .await;
    let a = send(&gw);
    until(&gw, "a in flight", |m| in_flight(m) == 1).await;
    let b = send(&gw);
    until(&gw, "b waits", |m| queued(m) == 1).await;
    let c = send(&gw);
    let m = until(&gw, "c waits behind b", |m| queued(m) == 2).await;
    assert!(m["queue"]["oldest_ms"].as_u64().is_some(), "{m}");
    let (a, b, c) = (a.await.unwrap(), b.await.unwrap(), c.await.unwrap());
    assert_eq!((a.0, b.0, c.0), (200, 200, 200));
    assert_eq!(a.1, None, "a did not wait");
    let (qb, qc) = (b.1.unwrap(), c.1.unwrap());
    assert!(qb >= 200 && qc >= qb + 200, "b waited {qb} ms, c {qc} ms");
    assert!(b.2 < c.2, "first in, first out");
    assert_eq!(slow.stats().requests, 3);
    let m = until(&gw, "the line is empty", |m| {
        queued(m) == 0 && in_flight(m) == 0
    })
    .await;
    assert_eq!(m["queue"]["oldest_ms"], Value::Null);
}

#[tokio::test]
async fn the_line_is_bounded_and_a_full_line_answers_429_at_once() {
    let slow = mock_with(|o| o.latency_ms = 500).await;
    let gw = gateway(&format!(
        "[server]\nmax_wait_s = 10\n\n[[models]]\nname = \"m\"\nmax_queue = 1\n{}",
        deployment("vllm", &slow, "max_in_flight = 1")
    ))
    .await;
    let a = send(&gw);
    until(&gw, "a in flight", |m| in_flight(m) == 1).await;
    let b = send(&gw);
    until(&gw, "b waits", |m| queued(m) == 1).await;
    let started = Instant::now();
    let r = gw.chat("m").await;
    assert_eq!(r.status(), 429);
    assert!(!header(&r, "retry-after").is_empty());
    assert!(started.elapsed() < Duration::from_millis(400), "at once");
    assert_eq!(a.await.unwrap().0, 200);
    assert_eq!(b.await.unwrap().0, 200);
}

#[tokio::test]
async fn a_client_that_goes_away_leaves_the_line() {
    let slow = mock_with(|o| o.latency_ms = 1500).await;
    let gw = gateway(&one_model(
        "max_wait_s = 20",
        &[deployment("vllm", &slow, "max_in_flight = 1")],
    ))
    .await;
    let a = send(&gw);
    until(&gw, "a in flight", |m| in_flight(m) == 1).await;
    let impatient = send(&gw);
    until(&gw, "the impatient one waits", |m| queued(m) == 1).await;
    impatient.abort();
    let m = until(&gw, "it left the line", |m| queued(m) == 0).await;
    assert_eq!(in_flight(&m), 1, "while a is still in flight");
    let c = send(&gw);
    until(&gw, "c waits", |m| queued(m) == 1).await;
    assert_eq!(a.await.unwrap().0, 200);
    assert_eq!(c.await.unwrap().0, 200);
    // Only a and c reached the upstream.
    assert_eq!(slow.stats().requests, 2);
}

#[tokio::test]
async fn room_due_later_than_max_wait_is_answered_at_once() {
    let m = mock().await;
    let gw = gateway(&one_model(
        "max_wait_s = 2",
        &[deployment("azure", &m, "rpm_limit = 1")],
    ))
    .await;
    assert_eq!(gw.chat("m").await.status(), 200);
    let started = Instant::now();
    let r = gw.chat("m").await;
    assert_eq!(r.status(), 429);
    let retry: u64 = header(&r, "retry-after").parse().unwrap();
    assert!(retry > 2, "the minute's request leaves in ~60 s: {retry}");
    assert!(started.elapsed() < Duration::from_millis(500), "not waited");
}

#[tokio::test]
async fn a_waiting_request_wakes_when_a_cooldown_ends() {
    let m = mock().await;
    let gw = gateway(&one_model("max_wait_s = 5", &[deployment("d", &m, "")])).await;
    // A 429 with Retry-After 1 s cools the only deployment for a second.
    m.set_mode(fail(429, Some(1.0), None));
    assert_eq!(gw.chat("m").await.status(), 429);
    m.set_mode(switchboard::mock_upstream::Mode::Normal);
    let r = gw.chat("m").await;
    assert_eq!(r.status(), 200, "waited for the cooldown instead of a 429");
    let waited: u64 = header(&r, "x-switchboard-queued-ms").parse().unwrap();
    assert!((300..=1500).contains(&waited), "waited {waited} ms");
    assert_eq!(m.stats().requests, 2);
}

#[tokio::test]
async fn answers_say_what_the_model_has_left() {
    let (a, b) = (mock().await, mock().await);
    let gw = gateway(&one_model(
        "",
        &[
            deployment("a", &a, "tpm_limit = 10000\nrpm_limit = 10"),
            deployment("b", &b, "tpm_limit = 5000\nenabled = false"),
        ],
    ))
    .await;
    let r = gw.chat("m").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-ratelimit-remaining-requests"), "9");
    let tokens: u64 = header(&r, "x-ratelimit-remaining-tokens").parse().unwrap();
    assert!(
        (9_000..10_000).contains(&tokens),
        "{tokens}: the disabled one adds nothing"
    );
    for reset in ["x-ratelimit-reset-requests", "x-ratelimit-reset-tokens"] {
        let v = header(&r, reset);
        assert!(
            v.ends_with('s')
                && v.trim_end_matches(['m', 's', '.'])
                    .chars()
                    .all(|c| c.is_ascii_digit() || c == '.' || c == 'm'),
            "{reset}: {v}"
        );
    }
    // A model with no limit at all says nothing of its own.
    let free = mock().await;
    let gw = gateway(&one_model("", &[deployment("f", &free, "")])).await;
    let r = gw.chat("m").await;
    assert!(r.headers().get("x-switchboard-queued-ms").is_none());
    assert_eq!(header(&r, "x-ratelimit-remaining-requests"), "");
}
