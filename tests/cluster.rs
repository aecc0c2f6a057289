//! Several `switchboard serve` processes and one private `redis-server` on
//! loopback, behind them mock upstreams that count what they served: the
//! cluster's promises as an operator would check them.

mod common;
mod fleet;
mod redis;
mod serve;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{fail, mock_with};
use fleet::*;
use redis::Redis;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_holds_across_three_instances_and_alone_each_admits_it_again() {
    let redis = Redis::start();
    // Each answer uses what it asked for, so estimates and usage agree.
    let m = mock_with(|o| o.tokens = 100).await;
    let limit = 3_000;
    let models = model(&[deployment("a", &m, &format!("tpm_limit = {limit}"))]);
    let cluster = fleet(3, Some(&redis), &models);
    let statuses = burst(&cluster, 90, 12, 100).await;
    let admitted = statuses.iter().filter(|s| **s == 200).count();
    let estimate = 100 + 16; // max_tokens and a margin for the prompt
    let served = served_tokens(&m);
    assert!(
        served <= limit + estimate,
        "the cluster admitted {served} tokens against {limit} ({admitted} requests)"
    );
    assert!(
        served >= limit - 2 * estimate,
        "and used its limit: {served}"
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "{statuses:?}"
    );
    drop(cluster);

    // The control: the same three without [cluster] each admit the whole limit.
    let m2 = mock_with(|o| o.tokens = 100).await;
    let alone = fleet(
        3,
        None,
        &model(&[deployment("a", &m2, &format!("tpm_limit = {limit}"))]),
    );
    burst(&alone, 90, 12, 100).await;
    let served = served_tokens(&m2);
    assert!(
        served > 2 * limit,
        "alone, each instance admits the limit: {served}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shares_are_exact_and_a_429_cools_the_deployment_down_everywhere() {
    let redis = Redis::start();
    let (a, b) = (mock_with(|_| {}).await, mock_with(|_| {}).await);
    let models = model(&[
        deployment("a", &a, "tpm_limit = 2000000"),
        deployment("b", &b, "tpm_limit = 1000000"),
    ]);
    let cluster = fleet(3, Some(&redis), &models);
    // One request at a time, over the instances in turn: 2:1 exactly.
    let statuses = burst(&cluster, 30, 1, 8).await;
    assert!(statuses.iter().all(|s| *s == 200));
    assert_eq!(
        (a.stats().requests, b.stats().requests),
        (20, 10),
        "shares held across instances"
    );

    // A 429 seen through one instance moves the others' traffic too.
    a.set_mode(fail(429, Some(30.0), None));
    let before = a.stats().requests;
    let statuses = burst(&cluster, 9, 1, 8).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(
        a.stats().requests,
        before + 1,
        "asked once, then cooling down for everyone"
    );
    for i in 0..3 {
        let d = cluster.deployment(i, "a");
        assert_eq!(d["cooldown_cause"], "rate_limited", "instance {i}: {d}");
        assert!(d["cooldown_remaining_s"].as_f64().unwrap() > 25.0, "{d}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_through_different_instances_add_up_to_one_cooldown() {
    let redis = Redis::start();
    let (a, b) = (mock_with(|_| {}).await, mock_with(|_| {}).await);
    a.set_mode(fail(500, None, None));
    let cluster = fleet(
        3,
        Some(&redis),
        &model(&[deployment("a", &a, ""), deployment("b", &b, "")]),
    );
    // Even rotation: a takes every other first attempt. Three failures, each
    // seen by a different instance, are the threshold.
    burst(&cluster, 12, 1, 8).await;
    let failures = a.stats().requests;
    assert_eq!(
        failures, 3,
        "a was tried until it had failed three times in all"
    );
    assert_eq!(cluster.deployment(2, "a")["state"], "cooling_down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_toggle_on_one_instance_reaches_the_others_within_a_second() {
    let redis = Redis::start();
    let (a, b) = (mock_with(|_| {}).await, mock_with(|_| {}).await);
    let cluster = fleet(
        3,
        Some(&redis),
        &model(&[deployment("a", &a, ""), deployment("b", &b, "")]),
    );
    let client = reqwest::Client::new();
    let r = client
        .put(format!(
            "{}/admin/models/m/deployments/a/enabled",
            cluster.url(0)
        ))
        .body("false")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let started = Instant::now();
    wait_until("every instance has a disabled", || {
        (0..3).all(|i| cluster.deployment(i, "a")["enabled"] == false)
            && cluster.configs.iter().all(|c| {
                std::fs::read_to_string(c)
                    .unwrap()
                    .contains("enabled = false")
            })
    });
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let before = a.stats().requests;
    burst(&cluster, 9, 3, 8).await;
    assert_eq!(a.stats().requests, before, "no instance sends it traffic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_or_restarted_redis_costs_a_request_at_most_the_short_timeout() {
    let mut redis = Redis::start();
    let m = mock_with(|o| o.tokens = 100).await;
    let limit = 3_000;
    let cluster = fleet(
        3,
        Some(&redis),
        &model(&[deployment("a", &m, &format!("tpm_limit = {limit}"))]),
    );
    assert_eq!(burst(&cluster, 3, 3, 100).await, vec![200; 3]);

    // A hung Redis: each request waits at most ~100 ms for it, then the
    // instance decides alone with a third of the limit.
    redis.pause(true);
    let before = served_tokens(&m);
    let started = Instant::now();
    let statuses = burst(&cluster, 90, 6, 100).await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(8), "{took:?}");
    let alone = served_tokens(&m) - before;
    assert!(
        alone <= limit + 3 * 116,
        "each instance held to its share: {alone}"
    );
    assert!(
        statuses.contains(&200) && statuses.contains(&429),
        "{statuses:?}"
    );
    wait_until("the instances say Redis is down", || {
        cluster.state(0)["cluster"]["redis"] == "down"
    });

    // Back: the instances rejoin by themselves.
    redis.pause(false);
    wait_until("Redis is ok again", || {
        (0..3).all(|i| cluster.state(i)["cluster"]["redis"] == "ok")
    });
    // Killed and restarted empty: again, without a restart of the instances.
    redis.restart();
    wait_until("rejoined an empty Redis", || {
        (0..3).all(|i| {
            cluster.state(i)["cluster"]["instances"]
                .as_array()
                .is_some_and(|a| a.len() == 3)
        })
    });
    assert!(burst(&cluster, 6, 2, 8).await.iter().all(|s| *s == 200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_restarts_sees_the_shared_window() {
    let redis = Redis::start();
    let m = mock_with(|o| o.tokens = 100).await;
    let mut cluster = fleet(
        2,
        Some(&redis),
        &model(&[deployment("a", &m, "tpm_limit = 100000")]),
    );
    burst(&cluster, 10, 2, 100).await;
    // The last answers' usage rides along with later writes (within 5 ms):
    // the window to compare is the settled one.
    wait_until("the usage is settled", || {
        cluster.deployment(0, "a")["tpm_used"].as_u64() == Some(served_tokens(&m))
    });
    let used = cluster.deployment(0, "a")["tpm_used"].as_u64().unwrap();
    assert!(used >= 1000, "{used}");
    cluster.instances[1].restart();
    wait_until("the restarted instance is back in", || {
        cluster.state(1)["cluster"]["redis"] == "ok"
    });
    assert_eq!(
        cluster.deployment(1, "a")["tpm_used"].as_u64().unwrap(),
        used,
        "the window is the cluster's"
    );
}

/// Lines of `/admin/events` as they arrive, parsed.
async fn watch_events(url: &str) -> tokio::sync::mpsc::UnboundedReceiver<serde_json::Value> {
    use futures_util::StreamExt;
    let r = reqwest::Client::new()
        .get(format!("{url}/admin/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut body = r.bytes_stream();
        let mut text = String::new();
        while let Some(Ok(chunk)) = body.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = text.find('\n') {
                let line: String = text.drain(..=end).collect();
                if let Some(data) = line.strip_prefix("data: ")
                    && let Ok(v) = serde_json::from_str(data.trim())
                    && tx.send(v).is_err()
                {
                    return;
                }
            }
        }
    });
    rx
}

/// Messages on the cluster's events channel, seen from Redis itself.
fn redis_subscriber(redis: &Redis) -> std::sync::mpsc::Receiver<usize> {
    let client = ::redis::Client::open(redis.url()).unwrap();
    let mut con = client.get_connection().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut pubsub = con.as_pubsub();
        pubsub.subscribe("{sb:test}:events").unwrap();
        while let Ok(msg) = pubsub.get_message() {
            let events: Vec<serde_json::Value> =
                serde_json::from_slice(msg.get_payload_bytes()).unwrap_or_default();
            if tx.send(events.len()).is_err() {
                return;
            }
        }
    });
    rx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_of_one_instance_sees_every_instances_requests_and_only_then_are_they_relayed() {
    let redis = Redis::start();
    let m = mock_with(|_| {}).await;
    let cluster = fleet(2, Some(&redis), &model(&[deployment("a", &m, "")]));
    let other = cluster.state(1)["cluster"]["this"]
        .as_str()
        .unwrap()
        .to_string();
    let relayed = redis_subscriber(&redis);

    // Nobody watches: across two of the instances' one-second checks,
    // nothing goes through Redis.
    for _ in 0..5 {
        assert_eq!(burst(&cluster, 4, 2, 8).await, vec![200; 4]);
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(relayed.try_recv().is_err(), "relayed with nobody watching");

    // A watcher on instance 0 gets instance 1's requests, tagged with it.
    let mut events = watch_events(&cluster.url(0)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let seen = loop {
        assert!(
            Instant::now() < deadline,
            "no event from the other instance"
        );
        assert_eq!(burst(&cluster, 2, 2, 8).await, vec![200; 2]);
        let mut found = None;
        while let Ok(e) = events.try_recv() {
            if e["type"] == "request" && e["instance"] == other.as_str() {
                found = Some(e);
            }
        }
        if let Some(e) = found {
            break e;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(seen["model"], "m");
    assert_eq!(seen["attempts"][0]["deployment"], "a");
    assert!(relayed.try_iter().sum::<usize>() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_on_redis_down_closed_requests_get_503_while_redis_is_away() {
    let mut redis = Redis::start();
    let m = mock_with(|_| {}).await;
    let cluster = fleet_with(
        2,
        Some(&redis),
        "on_redis_down = \"closed\"",
        &model(&[deployment("a", &m, "")]),
    );
    assert_eq!(burst(&cluster, 4, 2, 8).await, vec![200; 4]);
    redis.stop();
    let before = m.stats().requests;
    let started = Instant::now();
    let statuses = burst(&cluster, 6, 2, 8).await;
    assert_eq!(statuses, vec![503; 6], "not one request goes on alone");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(m.stats().requests, before);
    let r = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", cluster.url(0)))
        .body(r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let text = r.text().await.unwrap();
    assert!(text.contains("cannot reach its Redis"), "{text}");
    assert_eq!(cluster.state(0)["cluster"]["on_redis_down"], "closed");
    redis.restart();
    wait_until("serving again", || {
        cluster.state(0)["cluster"]["redis"] == "ok" && cluster.state(1)["cluster"]["redis"] == "ok"
    });
    assert_eq!(burst(&cluster, 4, 2, 8).await, vec![200; 4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_add_with_a_key_reference_reaches_every_instance_and_a_literal_key_stays_put() {
    let redis = Redis::start();
    let (a, b, c) = (
        mock_with(|_| {}).await,
        mock_with(|_| {}).await,
        mock_with(|_| {}).await,
    );
    let cluster = fleet(3, Some(&redis), &model(&[deployment("a", &a, "")]));
    let key_file = cluster._dir.path().join("b.key");
    std::fs::write(&key_file, "sk-from-a-file-123456\n").unwrap();
    let client = reqwest::Client::new();
    let add = |body: serde_json::Value| {
        client
            .post(format!("{}/admin/models/m/deployments", cluster.url(0)))
            .body(body.to_string())
            .send()
    };
    let r = add(
        serde_json::json!({"name": "b", "api_base": b.base_url(), "model_id": "b-model",
        "api_key": format!("file:{}", key_file.display())}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    let answer: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert!(
        answer["cluster"]
            .as_str()
            .unwrap()
            .contains("every instance"),
        "{answer}"
    );
    let started = Instant::now();
    wait_until("every instance has b", || {
        (0..3).all(|i| cluster.deployment(i, "b")["name"] == "b")
    });
    assert!(started.elapsed() < Duration::from_secs(1));
    for path in &cluster.configs {
        let text = std::fs::read_to_string(path).unwrap();
        assert!(
            text.contains("name = \"b\"") && text.contains("file:"),
            "{text}"
        );
    }

    let r = add(
        serde_json::json!({"name": "c", "api_base": c.base_url(), "model_id": "c-model",
        "api_key": "sk-literal-key-654321"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    let answer: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert!(
        answer["cluster"]
            .as_str()
            .unwrap()
            .contains("this instance only"),
        "{answer}"
    );
    assert_eq!(cluster.deployment(0, "c")["name"], "c");
    // Given the others' one-second propagation to go wrong in.
    std::thread::sleep(Duration::from_millis(1500));
    for i in 1..3 {
        assert!(
            cluster.deployment(i, "c").is_null(),
            "c reached instance {i}"
        );
        let text = std::fs::read_to_string(&cluster.configs[i]).unwrap();
        assert!(!text.contains("sk-literal-key-654321"));
    }
    let dump = std::process::Command::new("redis-cli")
        .args(["-p", &redis.port.to_string(), "--no-raw", "keys", "*"])
        .output()
        .unwrap()
        .stdout;
    let keys = String::from_utf8_lossy(&dump).to_string();
    for key in keys.lines() {
        let key = key.trim_matches('"');
        let value = std::process::Command::new("redis-cli")
            .args(["-p", &redis.port.to_string(), "--no-raw", "dump", key])
            .output()
            .unwrap()
            .stdout;
        assert!(
            !String::from_utf8_lossy(&value).contains("654321"),
            "the literal key is in Redis under {key}"
        );
    }
}

/// A config file nobody may write, not even root: as a ConfigMap is.
struct ReadOnly(PathBuf);

impl ReadOnly {
    fn make(path: &std::path::Path) -> ReadOnly {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o444));
        if std::fs::OpenOptions::new().append(true).open(path).is_ok() {
            // Root writes through permissions; not through the immutable flag.
            let ok = std::process::Command::new("chattr")
                .arg("+i")
                .arg(path)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "cannot make {} read-only (chattr +i)", path.display());
        }
        ReadOnly(path.to_path_buf())
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(&self.0)
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_config_is_no_error_in_a_cluster_and_the_state_says_so() {
    let redis = Redis::start();
    let (a, b) = (mock_with(|_| {}).await, mock_with(|_| {}).await);
    let cluster = fleet(
        2,
        Some(&redis),
        &model(&[deployment("a", &a, ""), deployment("b", &b, "")]),
    );
    let frozen = std::fs::read_to_string(&cluster.configs[0]).unwrap();
    let _ro = ReadOnly::make(&cluster.configs[0]);
    let r = reqwest::Client::new()
        .put(format!(
            "{}/admin/models/m/deployments/a/enabled",
            cluster.url(0)
        ))
        .body("false")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    wait_until("both instances have a disabled", || {
        (0..2).all(|i| cluster.deployment(i, "a")["enabled"] == false)
    });
    assert_eq!(cluster.state(0)["cluster"]["config_writable"], false);
    assert_eq!(cluster.state(1)["cluster"]["config_writable"], true);
    assert_eq!(
        std::fs::read_to_string(&cluster.configs[0]).unwrap(),
        frozen
    );
    assert!(
        std::fs::read_to_string(&cluster.configs[1])
            .unwrap()
            .contains("enabled = false")
    );
    let before = a.stats().requests;
    burst(&cluster, 6, 2, 8).await;
    assert_eq!(a.stats().requests, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restarted_empty_keeps_the_toggles_and_starts_the_windows_afresh() {
    let mut redis = Redis::start();
    let (a, b) = (mock_with(|o| o.tokens = 100).await, mock_with(|_| {}).await);
    let cluster = fleet(
        2,
        Some(&redis),
        &model(&[
            deployment("a", &a, "tpm_limit = 100000"),
            deployment("b", &b, ""),
        ]),
    );
    let r = reqwest::Client::new()
        .put(format!(
            "{}/admin/models/m/deployments/b/enabled",
            cluster.url(1)
        ))
        .body("false")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    wait_until("b disabled everywhere", || {
        (0..2).all(|i| cluster.deployment(i, "b")["enabled"] == false)
    });
    assert_eq!(burst(&cluster, 10, 2, 100).await, vec![200; 10]);
    // Settled before the restart: a settle still riding would land in the
    // new Redis (and be right to: those tokens were spent).
    wait_until("the usage is settled", || {
        cluster.deployment(0, "a")["tpm_used"].as_u64() == Some(served_tokens(&a))
    });
    let used = cluster.deployment(0, "a")["tpm_used"].as_u64().unwrap();
    assert!(used >= 1000, "{used}");

    redis.restart();
    wait_until("both heartbeat into the empty Redis", || {
        let n = std::process::Command::new("redis-cli")
            .args(["-p", &redis.port.to_string(), "zcard", "{sb:test}:members"])
            .output()
            .unwrap()
            .stdout;
        String::from_utf8_lossy(&n).trim() == "2"
    });
    assert_eq!(
        cluster.deployment(0, "a")["tpm_used"],
        0,
        "the window is new"
    );
    let before = b.stats().requests;
    assert_eq!(burst(&cluster, 6, 2, 100).await, vec![200; 6]);
    assert_eq!(b.stats().requests, before, "b is still disabled");
    assert!((0..2).all(|i| cluster.deployment(i, "b")["enabled"] == false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_was_admitted_alone_joins_the_shared_window_as_it_was_used_not_as_estimated() {
    let mut redis = Redis::start();
    // Requests ask for up to 200 tokens and use 5: estimates far above use.
    let m = mock_with(|o| o.tokens = 5).await;
    let cluster = fleet(
        2,
        Some(&redis),
        &model(&[deployment("a", &m, "tpm_limit = 100000")]),
    );
    redis.stop();
    assert_eq!(burst(&cluster, 20, 2, 200).await, vec![200; 20]);
    let used_alone = served_tokens(&m);
    assert!(used_alone > 0 && used_alone < 20 * 50, "{used_alone}");
    redis.restart();
    wait_until("both rejoined", || {
        (0..2).all(|i| cluster.state(i)["cluster"]["redis"] == "ok")
    });
    wait_until("what they admitted alone is pushed", || {
        cluster.deployment(0, "a")["tpm_used"].as_u64() == Some(used_alone)
    });
}
