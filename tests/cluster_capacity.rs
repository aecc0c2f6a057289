//! Capacity limits across three `switchboard serve` processes sharing one
//! private Redis, checked where it counts: at the mock upstream behind
//! them. Requests a minute and output tokens a minute hold across the
//! instances; `max_in_flight` holds under a concurrent burst through all
//! three; and the leases of an instance killed mid-stream come free within
//! `lease_ttl_s` (2 s here, so that the test does not wait the default 30).

mod common;
mod fleet;
mod redis;
mod serve;

use std::time::{Duration, Instant};

use common::mock_with;
use fleet::*;
use redis::Redis;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_and_output_windows_hold_across_three_instances() {
    let redis = Redis::start();
    // Each answer writes what it may (max_tokens 20): estimates and usage agree.
    let (r, o) = (
        mock_with(|o| o.tokens = 20).await,
        mock_with(|o| o.tokens = 20).await,
    );
    let models = format!(
        "{}\n[[models]]\nname = \"o\"\n\n{}",
        model(&[deployment("r", &r, "rpm_limit = 10")]),
        deployment("o", &o, "output_tpm_limit = 100")
    );
    let cluster = fleet(3, Some(&redis), &models);
    let statuses = burst(&cluster, 30, 6, 20).await;
    assert_eq!(
        r.stats().requests,
        10,
        "one window of requests: {statuses:?}"
    );
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 10);
    assert!(statuses.iter().all(|s| *s == 200 || *s == 429));

    let client = reqwest::Client::new();
    let mut admitted = 0;
    for i in 0..15 {
        let status = client
            .post(format!("{}/v1/chat/completions", cluster.url(i)))
            .header("content-type", "application/json")
            .body(r#"{"model":"o","max_tokens":20,"messages":[{"role":"user","content":"hi"}]}"#)
            .send()
            .await
            .unwrap()
            .status();
        admitted += usize::from(status == 200);
    }
    // 100 output tokens a minute, 20 a request, whichever instance.
    assert_eq!((admitted, o.stats().requests), (5, 5));
    assert_eq!(o.stats().completion_tokens, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_in_flight_holds_under_a_burst_through_three_instances() {
    let redis = Redis::start();
    let m = mock_with(|o| o.latency_ms = 300).await;
    let cluster = fleet(
        3,
        Some(&redis),
        &model(&[deployment("a", &m, "max_in_flight = 2")]),
    );
    let statuses = burst(&cluster, 36, 12, 8).await;
    let stats = m.stats();
    assert_eq!(
        stats.max_in_flight_seen, 2,
        "never more than 2 at once across the cluster, and 2 used: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "{statuses:?}"
    );
    let ok = statuses.iter().filter(|s| **s == 200).count() as u64;
    assert_eq!(stats.requests, ok);
    assert!(ok >= 2, "{statuses:?}");
    // Every lease released once its request ended.
    wait_until("no request in flight in the cluster's view", || {
        cluster.deployment(1, "a")["in_flight"] == 0
    });
}

/// A streamed request to instance `i` of the fleet, held open.
async fn stream(fleet: &Fleet, i: usize) -> reqwest::Response {
    let r = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", fleet.url(i)))
        .header("content-type", "application/json")
        .body(r#"{"model":"m","max_tokens":100,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r
}

async fn status_of(fleet: &Fleet, i: usize) -> (u16, String) {
    let r = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", fleet.url(i)))
        .header("content-type", "application/json")
        .body(r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), common::header(&r, "retry-after"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leases_of_an_instance_killed_mid_stream_come_free_within_the_lease_ttl() {
    let redis = Redis::start();
    // Streams of 100 chunks 200 ms apart: 20 s, far longer than a lease's TTL.
    let m = mock_with(|o| {
        o.tokens = 100;
        o.chunk_delay_ms = 200;
    })
    .await;
    let ttl = Duration::from_secs(2);
    let mut cluster = fleet_with(
        3,
        Some(&redis),
        &format!("lease_ttl_s = {}", ttl.as_secs()),
        &model(&[deployment("a", &m, "max_in_flight = 2")]),
    );
    let held = [stream(&cluster, 0).await, stream(&cluster, 0).await];
    // Past the TTL, renewed by their instance: the places are still taken.
    tokio::time::sleep(ttl + Duration::from_millis(500)).await;
    assert_eq!(m.stats().in_flight, 2);
    for i in 1..3 {
        assert_eq!(
            status_of(&cluster, i).await,
            (429, "1".into()),
            "instance {i}"
        );
    }
    assert_eq!(cluster.deployment(2, "a")["in_flight"], 2);

    // Killed mid-stream: nothing releases its leases, they expire.
    cluster.instances[0].kill();
    let killed = Instant::now();
    assert_eq!(
        status_of(&cluster, 1).await.0,
        429,
        "not before they expire"
    );
    loop {
        let (status, _) = status_of(&cluster, 1 + killed.elapsed().as_millis() as usize % 2).await;
        if status == 200 {
            break;
        }
        assert!(
            killed.elapsed() < ttl + Duration::from_secs(1),
            "the killed instance's leases still hold after {:?}",
            killed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let freed = killed.elapsed();
    assert!(
        freed > ttl / 3,
        "freed by their expiry (renewed every third of the TTL), not at once: {freed:?}"
    );
    drop(held);
}
