//! A fleet of `switchboard serve` processes sharing one private Redis, for
//! the cluster tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::redis::Redis;
use super::serve::{Serve, free_port};
use switchboard::mock_upstream::MockHandle;

pub const ADMIN: &str = "adm-cluster-0123456789";

/// `n` instances of one config (the listen port aside), each in its own
/// folder, with `[cluster]` pointing at `redis` when given.
pub struct Fleet {
    pub instances: Vec<Serve>,
    pub configs: Vec<PathBuf>,
    pub _dir: tempfile::TempDir,
}

pub fn fleet(n: usize, redis: Option<&Redis>, models: &str) -> Fleet {
    fleet_with(n, redis, "", models)
}

/// As [`fleet`], with more lines for `[cluster]`.
pub fn fleet_with(n: usize, redis: Option<&Redis>, cluster_lines: &str, models: &str) -> Fleet {
    let dir = tempfile::tempdir().unwrap();
    let mut instances = Vec::new();
    let mut configs = Vec::new();
    for i in 0..n {
        let port = free_port();
        let cluster = redis.map_or(String::new(), |r| {
            format!("[cluster]\nredis_url = \"{}\"\nname = \"test\"\nadvertise = \"http://127.0.0.1:{port}\"\n{cluster_lines}\n", r.url())
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
    pub fn url(&self, i: usize) -> String {
        self.instances[i % self.instances.len()].url()
    }

    pub fn state(&self, i: usize) -> serde_json::Value {
        let text = std::process::Command::new("curl")
            .args(["-s", &format!("{}/admin/state", self.url(i))])
            .output()
            .unwrap()
            .stdout;
        serde_json::from_slice(&text).unwrap_or_default()
    }

    pub fn wait_for_members(&self, n: usize) {
        wait_until("every instance sees the others", || {
            (0..self.instances.len()).all(|i| {
                self.state(i)["cluster"]["instances"]
                    .as_array()
                    .is_some_and(|a| a.len() == n)
            })
        });
    }

    pub fn deployment(&self, i: usize, name: &str) -> serde_json::Value {
        let state = self.state(i);
        state["models"][0]["deployments"]
            .as_array()
            .and_then(|ds| ds.iter().find(|d| d["name"] == name).cloned())
            .unwrap_or_default()
    }
}

pub fn wait_until(what: &str, mut pred: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !pred() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn deployment(name: &str, m: &MockHandle, extra: &str) -> String {
    format!(
        "[[models.deployments]]\nname = \"{name}\"\napi_base = \"{}\"\nmodel_id = \"{name}-model\"\n{extra}\n",
        m.base_url()
    )
}

pub fn model(deployments: &[String]) -> String {
    format!("[[models]]\nname = \"m\"\n\n{}", deployments.concat())
}

/// `count` chat requests, `parallel` at a time, spread over the instances in turn.
pub async fn burst(fleet: &Fleet, count: usize, parallel: usize, max_tokens: u32) -> Vec<u16> {
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

pub fn served_tokens(m: &MockHandle) -> u64 {
    let s = m.stats();
    s.prompt_tokens + s.completion_tokens
}
