//! Several `switchboard serve` processes and one private `redis-server` on
//! loopback, behind them mock upstreams that count what they served: the
//! cluster's promises as an operator would check them.

mod common;
mod redis;
mod serve;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{fail, mock_with};
use redis::Redis;
use serve::{Serve, free_port};
use switchboard::mock_upstream::MockHandle;

const ADMIN: &str = "adm-cluster-0123456789";

/// `n` instances of one config (the listen port aside), each in its own
/// folder, with `[cluster]` pointing at `redis` when given.
struct Fleet {
    instances: Vec<Serve>,
    configs: Vec<PathBuf>,
    _dir: tempfile::TempDir,
}

fn fleet(n: usize, redis: Option<&Redis>, models: &str) -> Fleet {
    let dir = tempfile::tempdir().unwrap();
    let mut instances = Vec::new();
    let mut configs = Vec::new();
    for i in 0..n {
        let port = free_port();
        let cluster = redis.map_or(String::new(), |r| {
            format!("[cluster]\nredis_url = \"{}\"\nname = \"test\"\nadvertise = \"http://127.0.0.1:{port}\"\n\n", r.url())
        });
        let folder = dir.path().join(format!("i{i}"));
        std::fs::create_dir_all(&folder).unwrap();
        let path = folder.join("switchboard.toml");
        std::fs::write(&path, format!("{cluster}{models}")).unwrap();
        instances.push(Serve::start(&path, port, ADMIN));
        configs.push(path);
    }
    let fleet = Fleet {
        instances,
        configs,
        _dir: dir,
    };
    if redis.is_some() {
        fleet.wait_for_members(n);
    }
    fleet
}

impl Fleet {
    fn url(&self, i: usize) -> String {
        self.instances[i % self.instances.len()].url()
    }

    fn state(&self, i: usize) -> serde_json::Value {
        let text = std::process::Command::new("curl")
            .args(["-s", &format!("{}/admin/state", self.url(i))])
            .output()
            .unwrap()
            .stdout;
        serde_json::from_slice(&text).unwrap_or_default()
    }

    fn wait_for_members(&self, n: usize) {
        wait_until("every instance sees the others", || {
            (0..self.instances.len()).all(|i| {
                self.state(i)["cluster"]["instances"]
                    .as_array()
                    .is_some_and(|a| a.len() == n)
            })
        });
    }

    fn deployment(&self, i: usize, name: &str) -> serde_json::Value {
        let state = self.state(i);
        state["models"][0]["deployments"]
            .as_array()
            .and_then(|ds| ds.iter().find(|d| d["name"] == name).cloned())
            .unwrap_or_default()
    }
}

fn wait_until(what: &str, mut pred: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !pred() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn deployment(name: &str, m: &MockHandle, extra: &str) -> String {
    format!(
        "[[models.deployments]]\nname = \"{name}\"\napi_base = \"{}\"\nmodel_id = \"{name}-model\"\n{extra}\n",
        m.base_url()
    )
}

fn model(deployments: &[String]) -> String {
    format!("[[models]]\nname = \"m\"\n\n{}", deployments.concat())
}

/// `count` chat requests, `parallel` at a time, spread over the instances in turn.
async fn burst(fleet: &Fleet, count: usize, parallel: usize, max_tokens: u32) -> Vec<u16> {
    use futures_util::StreamExt;
    let client = reqwest::Client::new();
    let body = format!(
        r#"{{"model":"m","max_tokens":{max_tokens},"messages":[{{"role":"user","content":"hi"}}]}}"#
    );
    futures_util::stream::iter(0..count)
        .map(|i| {
            let (client, body, url) = (client.clone(), body.clone(), fleet.url(i));
            async move {
                client
                    .post(format!("{url}/v1/chat/completions"))
                    .header("content-type", "application/json")
                    .body(body)
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await
                    .map_or(0, |r| r.status().as_u16())
            }
        })
        .buffer_unordered(parallel)
        .collect()
        .await
}

fn served_tokens(m: &MockHandle) -> u64 {
    let s = m.stats();
    s.prompt_tokens + s.completion_tokens
}

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
