//! Tiers, fallback models, sessions and timeouts across three `switchboard
//! serve` processes sharing one private Redis: what one instance decides,
//! the others decide the same.

mod common;
mod fleet;
mod redis;
mod serve;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::{fail, mock_with};
use fleet::*;
use redis::Redis;
use switchboard::mock_upstream::{MockHandle, Mode};

async fn mock() -> MockHandle {
    mock_with(|_| {}).await
}

/// One chat request to instance `i`, with extra headers; its status and
/// the deployment and model that served.
async fn chat(
    fleet: &Fleet,
    i: usize,
    model: &str,
    headers: &[(&str, &str)],
) -> (u16, String, String) {
    let mut req = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", fleet.url(i)))
        .header("content-type", "application/json")
        .body(format!(
            r#"{{"model":"{model}","max_tokens":5,"messages":[{{"role":"user","content":"hi"}}]}}"#
        ))
        .timeout(Duration::from_secs(10));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    let h = |name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    (
        r.status().as_u16(),
        h("x-switchboard-deployment"),
        h("x-switchboard-model"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiers_spill_and_return_the_same_way_on_every_instance() {
    let redis = Redis::start();
    let (ptu, a, b) = (mock().await, mock().await, mock().await);
    let cluster = fleet(
        3,
        Some(&redis),
        &model(&[
            deployment("ptu", &ptu, "priority = 1"),
            deployment("paygo-a", &a, "priority = 2\ntpm_limit = 200000"),
            deployment("paygo-b", &b, "priority = 2\ntpm_limit = 100000"),
        ]),
    );
    for i in 0..6 {
        assert_eq!(chat(&cluster, i, "m", &[]).await.1, "ptu");
    }
    // A 429 seen through one instance cools it down for all of them.
    ptu.set_mode(fail(429, Some(60.0), None));
    assert_eq!(chat(&cluster, 0, "m", &[]).await.1, "paygo-a");
    let mut counts: HashMap<String, usize> = HashMap::new();
    for i in 0..6 {
        *counts
            .entry(chat(&cluster, i, "m", &[]).await.1)
            .or_default() += 1;
    }
    // One shared round robin over tier 2: 2:1 across the instances.
    assert_eq!((counts["paygo-a"], counts["paygo-b"]), (4, 2), "{counts:?}");
    assert_eq!(ptu.stats().requests, 7, "none went to the cooling ptu");
    for i in 0..3 {
        assert_eq!(cluster.state(i)["models"][0]["spilling"], 2, "instance {i}");
    }
    // Re-enabled through one instance: back on tier 1 everywhere.
    ptu.set_mode(Mode::Normal);
    for enabled in ["false", "true"] {
        let r = reqwest::Client::new()
            .put(format!(
                "{}/admin/models/m/deployments/ptu/enabled",
                cluster.url(1)
            ))
            .header("authorization", format!("Bearer {ADMIN}"))
            .body(enabled)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    wait_until("every instance has ptu enabled again", || {
        (0..3).all(|i| cluster.deployment(i, "ptu")["state"] == "healthy")
    });
    for i in 0..3 {
        assert_eq!(chat(&cluster, i, "m", &[]).await.1, "ptu", "instance {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_keeps_its_deployment_through_any_instance() {
    let redis = Redis::start();
    let (a, b, c) = (mock().await, mock().await, mock().await);
    let cluster = fleet(
        3,
        Some(&redis),
        &model(&[
            deployment("a", &a, ""),
            deployment("b", &b, ""),
            deployment("c", &c, ""),
        ]),
    );
    let mut homes = HashSet::new();
    for (n, header) in [
        "x-switchboard-session",
        "X-Claude-Code-Session-Id",
        "session-id",
    ]
    .iter()
    .enumerate()
    {
        let id = format!("conversation-{n}");
        let first = chat(&cluster, n, "m", &[(header, &id)]).await.1;
        for turn in 1..7 {
            // Unkeyed traffic in between, on every instance.
            chat(&cluster, turn, "m", &[]).await;
            let (status, at, _) = chat(&cluster, turn, "m", &[(header, &id)]).await;
            assert_eq!(
                (status, at.as_str()),
                (200, first.as_str()),
                "{header} turn {turn}"
            );
        }
        homes.insert(first);
    }
    assert!(!homes.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_with_nothing_left_falls_back_on_every_instance() {
    let redis = Redis::start();
    let (big, mini) = (mock().await, mock().await);
    let models = format!(
        "[[models]]\nname = \"gpt-4o\"\nfallbacks = [\"gpt-4o-mini\"]\n\n{}\n[[models]]\nname = \"gpt-4o-mini\"\n\n{}",
        deployment("big", &big, ""),
        deployment("mini", &mini, "")
    );
    let cluster = fleet(3, Some(&redis), &models);
    big.set_mode(fail(503, None, None));
    for i in 0..6 {
        let (status, at, served) = chat(&cluster, i, "gpt-4o", &[]).await;
        assert_eq!(
            (status, at.as_str(), served.as_str()),
            (200, "mini", "gpt-4o-mini"),
            "instance {i}"
        );
    }
    // Three failures through three instances: one shared cooldown, so the
    // rest went straight to the fallback.
    assert_eq!(big.stats().requests, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_first_byte_fails_over_on_every_instance() {
    let redis = Redis::start();
    let (slow, quick) = (mock().await, mock().await);
    slow.set_mode(Mode::SlowFirstByte { delay_ms: 3_000 });
    let cluster = fleet(
        3,
        Some(&redis),
        &model(&[
            deployment("slow", &slow, "priority = 1\nfirst_byte_timeout_s = 0.2"),
            deployment("quick", &quick, "priority = 2"),
        ]),
    );
    for i in 0..3 {
        let (status, at, _) = chat(&cluster, i, "m", &[]).await;
        assert_eq!((status, at.as_str()), (200, "quick"), "instance {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_seen_by_different_instances_are_probed_back_within_the_interval() {
    let redis = Redis::start();
    let (ptu, backup) = (mock().await, mock().await);
    ptu.set_mode(fail(503, None, None));
    let cluster = fleet(
        3,
        Some(&redis),
        &format!(
            "[routing]\ncooldown_s = 120\nprobe_interval_s = 0.2\n\n{}",
            model(&[
                deployment("ptu", &ptu, "priority = 1"),
                deployment("backup", &backup, "priority = 2"),
            ])
        ),
    );
    // One failure through each instance: three in the shared count, one
    // in each instance's own.
    for i in 0..3 {
        assert_eq!(chat(&cluster, i, "m", &[]).await.1, "backup");
    }
    wait_until("the shared state cools ptu down", || {
        cluster.deployment(0, "ptu")["state"] == "cooling_down"
    });
    ptu.set_mode(Mode::Normal);
    // A 120 s cooldown, ended by a probe within a few intervals.
    wait_until("ptu is healthy again everywhere", || {
        (0..3).all(|i| cluster.deployment(i, "ptu")["state"] == "healthy")
    });
    assert_eq!(chat(&cluster, 1, "m", &[]).await.1, "ptu");
}
